package eachhook

// This file owns the payload step: the types a callback receives, how a
// body is classified (its kind, dedupe key and status) and how it is
// decoded, once before the 200 (the envelope) and once on the worker.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Payload errors.
var (
	// ErrMalformedPayload means a verified body is not a JSON object or its
	// kind, id or status cannot be read.
	ErrMalformedPayload = errors.New("eachhook: malformed payload")
	// ErrOutputShape means Output does not have the shape a helper asked for.
	ErrOutputShape = errors.New("eachhook: output has another shape")
)

// Statuses of a terminal webhook. The Handler also routes "error" as failed
// and "cancelled"/"canceled" as failed with [CodeCancelled], and acknowledges
// non-terminal statuses with no callback.
const (
	StatusSuccess   = "success"   // a prediction that succeeded
	statusSucceeded = "succeeded" // a prediction that succeeded (the exec_id form)
	StatusFailed    = "failed"    // a prediction or workflow execution that failed
	StatusCompleted = "completed" // a workflow execution that completed
)

// CodeCancelled is the [Failure] code of a cancelled prediction.
const CodeCancelled = "CANCELLED"

// Metrics are the measurements the sender reports for a prediction.
type Metrics struct {
	PredictTime float64 `json:"predict_time"` // seconds the model ran
	Cost        float64 `json:"cost"`         // in the account's currency
}

// Success is a prediction that finished with an output.
type Success struct {
	ID      string          // the prediction id ("id", else "exec_id"); the dedupe key
	Output  json.RawMessage // as sent; see [Success.URL], [Success.URLs], [Success.Decode]
	Input   json.RawMessage // as sent
	Metrics Metrics         // zero when absent
	Logs    string          // the "logs" field, if any
	Raw     json.RawMessage // the whole verified body
}

// Failure is a prediction that failed.
type Failure struct {
	ID    string          // the prediction id ("id", else "exec_id"); the dedupe key
	Input json.RawMessage // as sent
	Logs  string          // the "logs" field, else the error's message
	// Code is the "error_code" of the first "output" element with an "error",
	// else of "output" or its "error", else of the top-level "error"; empty
	// when none, [CodeCancelled] when cancelled.
	Code      string
	Retryable bool            // the error's "retryable"; false when absent
	Category  string          // the error's "classification": {"category"}, such as "TIMEOUT"
	Output    json.RawMessage // as sent
	Metrics   Metrics         // zero when absent
	Raw       json.RawMessage // the whole verified body
}

// URL returns Output when it is a single JSON string, else an error matching
// [ErrOutputShape].
func (s *Success) URL() (string, error) {
	if isNull(s.Output) {
		return "", fmt.Errorf("%w: want a string, output is null or absent", ErrOutputShape)
	}
	var u string
	if err := json.Unmarshal(s.Output, &u); err != nil {
		return "", fmt.Errorf("%w: want a string: %v", ErrOutputShape, err)
	}
	return u, nil
}

// URLs returns Output when it is an array of strings, or a single string as
// a list of one; else an error matching [ErrOutputShape].
func (s *Success) URLs() ([]string, error) {
	var list []string
	if err := json.Unmarshal(s.Output, &list); err == nil && list != nil {
		return list, nil
	}
	u, err := s.URL()
	if err != nil {
		return nil, fmt.Errorf("%w: want a string or an array of strings", ErrOutputShape)
	}
	return []string{u}, nil
}

// Decode unmarshals Output into v, for models whose output is an object.
func (s *Success) Decode(v any) error {
	if err := json.Unmarshal(s.Output, v); err != nil {
		return fmt.Errorf("%w: %v", ErrOutputShape, err)
	}
	return nil
}

// envelope is the part of a body that is read before the 200: enough to
// route and deduplicate it.
type envelope struct {
	// ID is the dedupe key: the prediction id, or WorkflowKeyPrefix and
	// the workflow execution id.
	ID     string
	Status string
	Kind   kind
	Event  event // the callback it is routed to
}

// decodeEnvelope decodes the identifying fields and the status of a body
// and classifies it (see identity.classify). The body must be a JSON
// object whose identifying fields and "status", when present, are strings
// or null; its other fields are not decoded.
func decodeEnvelope(body []byte) (envelope, error) {
	var p identity
	if err := json.Unmarshal(body, &p); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case !errors.As(err, &te):
			return envelope{}, fmt.Errorf("%w: not JSON", ErrMalformedPayload)
		case te.Field == "":
			return envelope{}, fmt.Errorf("%w: not a JSON object", ErrMalformedPayload)
		}
		return envelope{}, fmt.Errorf("%w: %s is neither a string nor null", ErrMalformedPayload, te.Field)
	}
	return p.envelope()
}

// decode decodes a body for its routing and for its callback at once: the
// request path's one decoding. It refuses exactly what decodeEnvelope
// refuses.
func decode(body []byte) (envelope, *wirePayload, error) {
	p := new(wirePayload)
	if err := json.Unmarshal(body, p); err != nil {
		// Only the identifying fields and the status must have their type:
		// encoding/json reports the first error of any field and decodes
		// the rest, so decodeEnvelope tells whether to refuse.
		if _, err := decodeEnvelope(body); err != nil {
			return envelope{}, nil, err
		}
	}
	env, err := p.envelope()
	if err != nil {
		return envelope{}, nil, err
	}
	return env, p, nil
}

// wirePayload is the union of the documented bodies: the spec page's
// prediction, the exec_id form and the workflow execution. Fields whose
// type varies are kept raw, so that no unexpected shape can reject a
// delivery that was accepted.
type wirePayload struct {
	identity
	Output  json.RawMessage `json:"output"`
	Input   json.RawMessage `json:"input"`
	Metrics Metrics         `json:"metrics"`
	Logs    json.RawMessage `json:"logs"`
	Error   json.RawMessage `json:"error"`

	// Workflow executions.
	BulkID      json.RawMessage `json:"bulk_id"`
	CompletedAt json.RawMessage `json:"completed_at"`
	StartedAt   json.RawMessage `json:"started_at"`
	Inputs      json.RawMessage `json:"inputs"`
	StepOutputs json.RawMessage `json:"step_outputs"`
	ErrorCause  json.RawMessage `json:"error_cause"`
}

// decodePayload decodes a body already accepted by decodeEnvelope. A
// field of an unexpected type is left zero (a metric that is not a number,
// say) and the rest still decodes, as encoding/json does: the delivery was
// already acknowledged, so nothing may reject it now.
func decodePayload(body []byte) *wirePayload {
	p := new(wirePayload)
	_ = json.Unmarshal(body, p)
	return p
}

// dispatch runs the callback of c that the delivery d is routed to, with
// the payload the request path decoded, or else decoded from d.Body. The
// body passed decodeEnvelope before it was accepted, so it classifies the
// same way here.
func dispatch(ctx context.Context, c *callbacks, d *Delivery) error {
	p, body := d.payload, d.Body
	if p == nil {
		p = decodePayload(body)
	}
	k, id, err := p.classify()
	if err != nil {
		return err
	}
	switch eventOf(k, p.Status) {
	case eventSuccess:
		if c.success != nil {
			return c.success(ctx, p.success(id, body))
		}
	case eventFailed:
		if c.failed != nil {
			return c.failed(ctx, p.failure(id, body))
		}
	case eventWorkflowCompleted:
		if c.workflowCompleted != nil {
			return c.workflowCompleted(ctx, p.workflowRun(body))
		}
	case eventWorkflowFailed:
		if c.workflowFailed != nil {
			return c.workflowFailed(ctx, p.workflowRun(body))
		}
	}
	return fmt.Errorf("%w: %q", errNoCallback, p.Status)
}

// text returns a JSON string's value, other JSON as its text, and "" for
// null or an absent field.
func text(raw json.RawMessage) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func (p *wirePayload) logs() string { return text(p.Logs) }

// execError is the error object of a failure: the exec_id form's
// {"error_code", "error_message"}, which the poll envelope extends with
// "retryable" and "classification": {"category"}.
type execError struct {
	Code           json.RawMessage `json:"error_code"`
	Message        json.RawMessage `json:"error_message"`
	Retryable      json.RawMessage `json:"retryable"`
	Classification json.RawMessage `json:"classification"`
}

// failInfo is what a failure's error says.
type failInfo struct {
	code, message, category string
	retryable               bool
}

// failureError returns what the failure's error says: from the first
// element of output whose error is set; else from output when it is an
// error object itself, or from its "error" member; else from the
// top-level error. Each is an error object or a string.
func (p *wirePayload) failureError() failInfo {
	if len(p.Output) > 0 && p.Output[0] == '[' {
		var steps []struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(p.Output, &steps) == nil {
			for _, s := range steps {
				if !isNull(s.Error) {
					return splitError(s.Error)
				}
			}
		}
	}
	if len(p.Output) > 0 && p.Output[0] == '{' {
		if f, ok := errorObject(p.Output); ok {
			return f
		}
		var o struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(p.Output, &o) == nil && len(o.Error) > 0 && o.Error[0] == '{' {
			if f, ok := errorObject(o.Error); ok {
				return f
			}
		}
	}
	return splitError(p.Error)
}

// errorObject decodes raw as an error object with an error_code or an
// error_message.
func errorObject(raw json.RawMessage) (failInfo, bool) {
	var e execError
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil || (isNull(e.Code) && isNull(e.Message)) {
		return failInfo{}, false
	}
	f := failInfo{code: text(e.Code), message: text(e.Message)}
	_ = json.Unmarshal(e.Retryable, &f.retryable) // another type: not retryable
	var c struct {
		Category json.RawMessage `json:"category"`
	}
	if len(e.Classification) > 0 && e.Classification[0] == '{' && json.Unmarshal(e.Classification, &c) == nil {
		f.category = text(c.Category)
	}
	return f, true
}

func splitError(raw json.RawMessage) failInfo {
	if isNull(raw) {
		return failInfo{}
	}
	if f, ok := errorObject(raw); ok {
		return f
	}
	return failInfo{message: text(raw)}
}

// success and failure build a prediction's callback value; id is the id
// classify returned.
func (p *wirePayload) success(id string, body []byte) *Success {
	return &Success{ID: id, Output: p.Output, Input: p.Input, Metrics: p.Metrics, Logs: p.logs(), Raw: body}
}

func (p *wirePayload) failure(id string, body []byte) *Failure {
	f := &Failure{ID: id, Input: p.Input, Logs: p.logs(), Output: p.Output, Metrics: p.Metrics, Raw: body}
	e := p.failureError()
	f.Code, f.Retryable, f.Category = e.code, e.retryable, e.category
	if isCancelled(p.Status) {
		f.Code = CodeCancelled
	}
	if f.Logs == "" {
		f.Logs = e.message
	}
	return f
}

// WorkflowRun is a workflow execution that reached a terminal status.
type WorkflowRun struct {
	ExecutionID string          // dedupe key: [WorkflowKeyPrefix] + ExecutionID
	WorkflowID  string          // the workflow's id
	Status      string          // as sent
	StartedAt   time.Time       // zero when absent or not RFC 3339
	CompletedAt time.Time       // zero when absent or not RFC 3339
	BulkID      string          // the bulk trigger, if any
	Inputs      json.RawMessage // as sent
	StepOutputs json.RawMessage // as sent
	Output      json.RawMessage // as sent
	Error       string          // such as "ExecutionFailed"; empty when completed
	ErrorCause  string          // a JSON string's value, or the JSON text of another value
	Raw         json.RawMessage // the whole verified body
}

func (p *wirePayload) workflowRun(body []byte) *WorkflowRun {
	run := &WorkflowRun{
		ExecutionID: p.ExecutionID,
		WorkflowID:  p.WorkflowID,
		Status:      p.Status,
		Inputs:      p.Inputs,
		StepOutputs: p.StepOutputs,
		Output:      p.Output,
		Error:       text(p.Error),
		ErrorCause:  text(p.ErrorCause),
		Raw:         body,
	}
	run.StartedAt = parseTime(p.StartedAt)
	run.CompletedAt = parseTime(p.CompletedAt)
	run.BulkID = text(p.BulkID)
	return run
}

// parseTime reads an RFC 3339 time; zero when raw is absent or not one.
func parseTime(raw json.RawMessage) time.Time {
	if s := text(raw); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// WorkflowKeyPrefix is put before a workflow execution id to make its key
// ("abc" becomes "workflow:abc"). A prediction id is its own key, unless it
// begins with "workflow:" or "prediction:": then "prediction:" is put before
// it. Callbacks get the ids as sent.
const WorkflowKeyPrefix = "workflow:"

// predictionKeyPrefix escapes a prediction id that could be taken for
// another kind's key (see WorkflowKeyPrefix).
const predictionKeyPrefix = "prediction:"

// predictionKey returns the dedupe key of prediction id.
func predictionKey(id string) string {
	if strings.HasPrefix(id, WorkflowKeyPrefix) || strings.HasPrefix(id, predictionKeyPrefix) {
		return predictionKeyPrefix + id
	}
	return id
}

// kind is what a delivery reports on.
type kind uint8

const (
	kindPrediction kind = iota + 1
	kindWorkflow
)

// event is the callback a delivery is routed to.
type event uint8

const (
	eventNone    event = iota // a non-terminal status, such as "processing": nothing to run
	eventUnknown              // a status this package does not know: a dead letter
	eventSuccess
	eventFailed
	eventWorkflowCompleted
	eventWorkflowFailed
	eventCount // the number of events
)

// identity holds the fields that tell a delivery's kind and id. Both the
// request path (envelope) and the worker (wirePayload) classify through it,
// so they cannot disagree.
type identity struct {
	ID          string `json:"id"`
	ExecID      string `json:"exec_id"`
	ExecutionID string `json:"execution_id"`
	WorkflowID  string `json:"workflow_id"`
	Status      string `json:"status"`
}

// classify applies the documented rule, the first match deciding:
//
//  1. "workflow_id" is a non-empty string: a workflow execution identified
//     by "execution_id", which must then be a non-empty string;
//  2. "id" is a non-empty string: a prediction identified by "id" (also
//     when "exec_id" is present: "id" is the spec page's field);
//  3. "exec_id" is a non-empty string: a prediction identified by it;
//  4. "execution_id" is a non-empty string: a workflow execution.
//
// Otherwise the kind cannot be told and the error matches
// [ErrMalformedPayload]. id is the prediction's or the execution's id as
// sent; key is the dedupe key (see [WorkflowKeyPrefix]).
func (p *identity) classify() (k kind, id string, err error) {
	switch {
	case p.WorkflowID != "":
		if p.ExecutionID == "" {
			return 0, "", fmt.Errorf("%w: workflow_id without execution_id", ErrMalformedPayload)
		}
		return kindWorkflow, p.ExecutionID, nil
	case p.ID != "":
		return kindPrediction, p.ID, nil
	case p.ExecID != "":
		return kindPrediction, p.ExecID, nil
	case p.ExecutionID != "":
		return kindWorkflow, p.ExecutionID, nil
	}
	return 0, "", fmt.Errorf("%w: cannot tell the kind of delivery: none of id, exec_id, execution_id is a non-empty string", ErrMalformedPayload)
}

// envelope classifies p into the envelope of its delivery.
func (p *identity) envelope() (envelope, error) {
	k, id, err := p.classify()
	if err != nil {
		return envelope{}, err
	}
	return envelope{ID: keyOf(k, id), Status: p.Status, Kind: k, Event: eventOf(k, p.Status)}, nil
}

// keyOf returns the dedupe key of a delivery of kind k about id.
func keyOf(k kind, id string) string {
	if k == kindWorkflow {
		return WorkflowKeyPrefix + id
	}
	return predictionKey(id)
}

// Statuses routed besides the exported ones.
const (
	statusError     = "error"
	statusCancelled = "cancelled"
	statusCanceled  = "canceled"
)

func isCancelled(status string) bool { return status == statusCancelled || status == statusCanceled }

// eventOf maps a kind and a status as sent to the callback that handles it:
// eventNone for a non-terminal status, eventUnknown for one this package
// does not know.
func eventOf(k kind, status string) event {
	switch status {
	case "created", "starting", "processing", "queued", "running":
		return eventNone
	}
	switch k {
	case kindPrediction:
		switch status {
		case StatusSuccess, statusSucceeded:
			return eventSuccess
		case StatusFailed, statusError, statusCancelled, statusCanceled:
			return eventFailed
		}
	case kindWorkflow:
		switch status {
		case StatusCompleted:
			return eventWorkflowCompleted
		case StatusFailed, statusError, statusCancelled, statusCanceled:
			return eventWorkflowFailed
		}
	}
	return eventUnknown
}
