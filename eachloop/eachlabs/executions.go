package eachlabs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Execution is one entry of [Client.ListExecutions]: a prediction (or a
// workflow step) of the organisation, in brief.
type Execution struct {
	// ID is the prediction id.
	ID string `json:"id"`
	// Model is the model's slug; RequestedModel the one asked for, when a
	// fallback ran another.
	Model          string `json:"model"`
	RequestedModel string `json:"requested_model"`
	// Status is the prediction's status, such as StatusSuccess,
	// StatusError or StatusCancelled (the list also publishes "failed").
	Status string `json:"status"`
	// Output is the output as listed: its JSON value, or null. A
	// failure's output may be an error object, as in [Prediction.Output].
	Output json.RawMessage `json:"output"`
	// CreatedAt, StartedAt and CompletedAt are times as sent (ISO 8601).
	CreatedAt   string `json:"created_at"`
	StartedAt   string `json:"started_at"`
	CompletedAt string `json:"completed_at"`
	// ExecutionCost is what the execution cost, RunTime how long it ran in
	// seconds (zero when absent).
	ExecutionCost float64 `json:"execution_cost"`
	RunTime       float64 `json:"run_time"`
	// WorkflowID and WorkflowExecutionID name the workflow run the
	// execution belongs to, if any.
	WorkflowID          string `json:"workflow_id"`
	WorkflowExecutionID string `json:"workflow_execution_id"`
	// Raw is the entry as sent.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON implements [json.Unmarshaler]. Only "id" and "status" must
// be strings; a member of an unexpected type is left zero.
func (e *Execution) UnmarshalJSON(b []byte) error {
	var must struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &must); err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = Execution{ID: must.ID, Status: must.Status, Output: m["output"], Raw: bytes.Clone(b)}
	for k, dst := range map[string]any{
		"model": &e.Model, "requested_model": &e.RequestedModel,
		"created_at": &e.CreatedAt, "started_at": &e.StartedAt, "completed_at": &e.CompletedAt,
		"execution_cost": &e.ExecutionCost, "run_time": &e.RunTime,
		"workflow_id": &e.WorkflowID, "workflow_execution_id": &e.WorkflowExecutionID,
	} {
		if v, ok := m[k]; ok {
			_ = json.Unmarshal(v, dst) // another type stays zero
		}
	}
	return nil
}

// Terminal reports whether the execution has finished: its Status is
// StatusSuccess, StatusError, "failed" or StatusCancelled.
func (e *Execution) Terminal() bool {
	switch e.Status {
	case StatusSuccess, StatusError, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// StatusFailed is the failure status the OpenAPI enum and llms.txt
// publish beside StatusError (the polling pages'); both mean the
// prediction failed.
const StatusFailed = "failed"

// ExecutionPage is one page of [Client.ListExecutions].
type ExecutionPage struct {
	// Executions are the executions on this page.
	Executions []Execution `json:"executions"`
	// Limit and Offset are the values the API applied.
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
	// TotalCount is how many executions match, capped by the API when
	// TotalCapped is true: then more may exist than it says.
	TotalCount  int  `json:"total_count"`
	TotalCapped bool `json:"total_capped"`
}

// ExecutionListOptions filters [Client.ListExecutions]. Zero values leave
// the API's defaults (every status, the last 90 days, its page size).
type ExecutionListOptions struct {
	// Status keeps executions with this status, such as StatusSuccess.
	Status string
	// Model keeps executions of this model.
	Model string
	// WorkflowID and WorkflowExecutionID keep the executions of a
	// workflow or of one of its runs.
	WorkflowID, WorkflowExecutionID string
	// ErrorClassification keeps failures of this class, such as
	// "execution_timeout".
	ErrorClassification string
	// From and To bound when the executions were created; sent as
	// RFC 3339 in UTC.
	From, To time.Time
	// Limit is how many executions a page holds at most, 1 to 100.
	Limit int
	// Offset is how many executions to skip.
	Offset int
}

// ListExecutions returns a page of the organisation's executions:
// GET /v1/executions with the filters of opts.
func (c *Client) ListExecutions(ctx context.Context, opts ExecutionListOptions) (*ExecutionPage, error) {
	if opts.Limit < 0 || opts.Limit > 100 || opts.Offset < 0 {
		return nil, fmt.Errorf("eachlabs: limit %d not between 1 and 100, or negative offset %d", opts.Limit, opts.Offset)
	}
	q := url.Values{}
	for k, v := range map[string]string{
		"status": opts.Status, "model": opts.Model, "workflow_id": opts.WorkflowID,
		"workflow_execution_id": opts.WorkflowExecutionID, "error_classification": opts.ErrorClassification,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !opts.From.IsZero() {
		q.Set("from", opts.From.UTC().Format(time.RFC3339))
	}
	if !opts.To.IsZero() {
		q.Set("to", opts.To.UTC().Format(time.RFC3339))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Offset > 0 {
		q.Set("offset", strconv.Itoa(opts.Offset))
	}
	var p ExecutionPage
	if err := c.get(ctx, "/v1/executions", q, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// WalkExecutions reads the executions that opts selects page after page
// from opts.Offset, calling fn with each page, until fn returns false or
// the list ends: at an empty page; once the offset reaches total_count
// when the count is exact; or, when it is capped (total_capped) or absent,
// at a page shorter than its limit. It returns the number of requests it
// made and the first error of one; fn has then seen the pages before it.
func (c *Client) WalkExecutions(ctx context.Context, opts ExecutionListOptions, fn func(*ExecutionPage) bool) (requests int, err error) {
	for {
		p, err := c.ListExecutions(ctx, opts)
		requests++
		if err != nil {
			return requests, err
		}
		if !fn(p) {
			return requests, nil
		}
		opts.Offset += len(p.Executions)
		limit := p.Limit
		if limit <= 0 {
			limit = opts.Limit
		}
		exact := !p.TotalCapped && p.TotalCount > 0
		switch {
		case len(p.Executions) == 0:
			return requests, nil
		case exact && opts.Offset >= p.TotalCount:
			return requests, nil
		case !exact && limit > 0 && len(p.Executions) < limit:
			return requests, nil
		}
	}
}
