// Package eachlabs is a small client for the each::labs REST API
// (https://api.eachlabs.ai). It creates and reads predictions, lists the
// organisation's executions and reads the delivery history of webhooks;
// every method authenticates with "Authorization: Bearer <API key>". The
// list methods page by offset: [Client.WalkWebhooks] and
// [Client.WalkExecutions] read every page.
//
// Every error from the API matches one sentinel with [errors.Is]:
// [ErrBadRequest] (400), [ErrUnauthorized] (401), [ErrPaymentRequired]
// (402), [ErrForbidden] (403), [ErrNotFound] (404), [ErrRateLimited] (429,
// and also [ErrConcurrencyLimit] when creating a prediction), [ErrServer]
// (5xx) or, for any other status, only [*APIError]. A request that got no answer in time
// matches [ErrTimeout]. [errors.As] with an [*APIError] gives the status code
// and the API's message.
//
// The package imports only the standard library.
package eachlabs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is the API's base URL.
const DefaultBaseURL = "https://api.eachlabs.ai"

// DefaultTimeout bounds each request unless [WithTimeout] says otherwise.
const DefaultTimeout = 30 * time.Second

// maxResponseBytes bounds how much of a response is read.
const maxResponseBytes = 16 << 20

// Client calls the each::labs API. Create it with [NewClient]; it is safe
// for concurrent use.
type Client struct {
	apiKey  string
	baseURL *url.URL
	http    *http.Client
	timeout time.Duration
}

// Option configures a [Client].
type Option func(*Client) error

// WithBaseURL sends requests to base instead of [DefaultBaseURL], such as a
// test server. base must be an absolute http or https URL; a path in it is
// kept as a prefix.
func WithBaseURL(base string) Option {
	return func(c *Client) error {
		u, err := url.Parse(base)
		if err != nil {
			return fmt.Errorf("eachlabs: base URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("eachlabs: base URL %q is not an absolute http(s) URL", base)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		c.baseURL = u
		return nil
	}
}

// WithHTTPClient makes requests with hc. Default: a client of its own with
// the default transport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("eachlabs: nil HTTP client")
		}
		c.http = hc
		return nil
	}
}

// WithTimeout bounds each request, from sending it to reading the whole
// answer. Default [DefaultTimeout] (30s). It must be positive.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("eachlabs: timeout %v <= 0", d)
		}
		c.timeout = d
		return nil
	}
}

// NewClient returns a Client that authenticates with apiKey. It returns an
// error if apiKey is empty or an option is invalid.
func NewClient(apiKey string, opts ...Option) (*Client, error) {
	if strings.TrimSpace(apiKey) == "" {
		return nil, errors.New("eachlabs: empty API key")
	}
	c := &Client{apiKey: apiKey, http: &http.Client{}, timeout: DefaultTimeout}
	if err := WithBaseURL(DefaultBaseURL)(c); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BaseURL returns the base URL requests go to.
func (c *Client) BaseURL() string { return c.baseURL.String() }

// get sends a GET for path (escaped, such as "/v1/webhooks/a%2Fb") with
// query and decodes a 2xx answer's JSON into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, nil, out)
}

// post sends in as a JSON body to path and decodes a 2xx answer's JSON
// into out.
func (c *Client) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("eachlabs: POST %s: encoding the request: %w", path, err)
	}
	return c.do(ctx, http.MethodPost, path, nil, body, out)
}

// do sends one request, with body as JSON unless it is nil, and decodes a
// 2xx answer's JSON into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("eachlabs: %s %s: %w", method, path, err)
	}
	u := *c.baseURL
	u.RawPath = c.baseURL.EscapedPath() + path
	u.Path += unescaped
	u.RawQuery = query.Encode()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("eachlabs: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(ctx, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return c.transportError(ctx, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: errorMessage(data),
			RetryAfter: retryAfter(resp.Header)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("eachlabs: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// transportError wraps an error of a request that got no complete answer,
// marking it with ErrTimeout when the time ran out.
func (c *Client) transportError(ctx context.Context, method, path string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %s %s: no complete answer within %v: %w", ErrTimeout, method, path, c.timeout, err)
	}
	return fmt.Errorf("eachlabs: %s %s: %w", method, path, err)
}

// errorMessage extracts the API's message from an error body: the
// documented {"error": "..."}, a {"message": "..."}, or the text itself.
func errorMessage(body []byte) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return s
		}
		if e.Message != "" {
			return e.Message
		}
		if len(e.Error) > 0 && string(e.Error) != "null" {
			return string(e.Error)
		}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}
