package eachlabs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Attempt statuses of a webhook delivery.
const (
	AttemptPending = "PENDING"
	AttemptSuccess = "SUCCESS"
	AttemptFailed  = "FAILED"
)

// Webhook is a webhook the API sent or will send, with its delivery
// attempts when the API includes them.
type Webhook struct {
	// ExecutionID is the prediction or execution the webhook reports.
	ExecutionID string `json:"execution_id"`
	// URL is the endpoint the webhook is delivered to.
	URL string `json:"url"`
	// Request is the payload sent, as a string.
	Request string `json:"request"`
	// Headers are the headers sent with the payload.
	Headers Headers `json:"headers"`
	// Source is the service that triggered the webhook.
	Source string `json:"source"`
	// CreatedAt is when the webhook was created (ISO 8601, as sent).
	CreatedAt string `json:"created_at"`
	// Attempts are the delivery attempts, oldest first. The list endpoint
	// may leave them out.
	Attempts []Attempt `json:"attempts"`
}

// Attempt is one delivery attempt of a webhook.
type Attempt struct {
	// Status is AttemptPending, AttemptSuccess or AttemptFailed.
	Status string `json:"status"`
	// StatusCode is the HTTP status your endpoint answered, 0 when it gave
	// no answer (the API sends null).
	StatusCode int `json:"status_code"`
	// Response is the body your endpoint answered, if any.
	Response string `json:"response"`
	// ErrorMessage says why the delivery failed, if the API knows.
	ErrorMessage string `json:"error_message"`
	// CreatedAt is when the attempt was made (ISO 8601, as sent).
	CreatedAt string `json:"created_at"`
}

// WebhookPage is one page of [Client.ListWebhooks].
type WebhookPage struct {
	// Webhooks are the webhooks on this page.
	Webhooks []Webhook `json:"webhooks"`
	// Limit and Offset are the values the API applied.
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
	// TotalCount is how many webhooks exist in all, nil when the API
	// does not say.
	TotalCount *int `json:"total_count"`
}

// ListOptions selects a page of [Client.ListWebhooks]. Zero values leave
// the API's defaults (limit 50, offset 0).
type ListOptions struct {
	// Limit is how many webhooks to return, 1 to 100.
	Limit int
	// Offset is how many webhooks to skip.
	Offset int
}

// Headers are a webhook's headers. Decoding accepts a value given as a
// string or as a list of strings (joined with ", ").
type Headers map[string]string

// UnmarshalJSON implements [json.Unmarshaler].
func (h *Headers) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*h = nil
		return nil
	}
	out := make(Headers, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = s
			continue
		}
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return fmt.Errorf("header %q: want a string or a list of strings", k)
		}
		out[k] = strings.Join(list, ", ")
	}
	*h = out
	return nil
}

// GetWebhook returns the webhook of an execution (a prediction id) with
// its delivery attempts: GET /v1/webhooks/{execution_id}. An unknown id
// matches [ErrNotFound], a malformed one [ErrBadRequest].
func (c *Client) GetWebhook(ctx context.Context, executionID string) (*Webhook, error) {
	if executionID == "" {
		return nil, errors.New("eachlabs: empty execution id")
	}
	var w Webhook
	if err := c.get(ctx, "/v1/webhooks/"+url.PathEscape(executionID), nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWebhooks returns a page of the organisation's webhooks:
// GET /v1/webhooks?limit=&offset=.
func (c *Client) ListWebhooks(ctx context.Context, opts ListOptions) (*WebhookPage, error) {
	if opts.Limit < 0 || opts.Offset < 0 {
		return nil, fmt.Errorf("eachlabs: negative limit %d or offset %d", opts.Limit, opts.Offset)
	}
	q := url.Values{}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Offset > 0 {
		q.Set("offset", strconv.Itoa(opts.Offset))
	}
	var p WebhookPage
	if err := c.get(ctx, "/v1/webhooks", q, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// WalkWebhooks calls fn with each of the organisation's webhooks, page
// after page of GET /v1/webhooks (limit per page, 1 to 100; 0 for the
// API's default of 50), until fn returns false or the list ends. It
// advances the offset by the number of webhooks a page held, which may be
// fewer than the limit, and stops at an empty page or once the offset
// reaches the page's total_count. It returns the first error of a
// request; fn has then seen the webhooks of the pages before it.
func (c *Client) WalkWebhooks(ctx context.Context, limit int, fn func(Webhook) bool) error {
	if limit < 0 || limit > 100 {
		return fmt.Errorf("eachlabs: limit %d not between 1 and 100", limit)
	}
	for offset := 0; ; {
		p, err := c.ListWebhooks(ctx, ListOptions{Limit: limit, Offset: offset})
		if err != nil {
			return err
		}
		for _, w := range p.Webhooks {
			if !fn(w) {
				return nil
			}
		}
		offset += len(p.Webhooks)
		if len(p.Webhooks) == 0 || (p.TotalCount != nil && offset >= *p.TotalCount) {
			return nil
		}
	}
}
