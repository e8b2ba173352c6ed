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
	// ErrMalformedPayload means a verified body is not a JSON object, or
	// none of the fields that identify a delivery ("id", "exec_id",
	// "execution_id" with "workflow_id") tells its kind and id, or one of
	// those fields or "status" is neither a string nor null.
	ErrMalformedPayload = errors.New("eachhook: malformed payload")
	// ErrOutputShape means Output does not have the shape a helper asked
	// for, such as [Success.URL] on an array.
	ErrOutputShape = errors.New("eachhook: output has another shape")
)

// Statuses the sender reports in a terminal webhook. The Handler also
// routes "error" as failed and "cancelled"/"canceled" as failed with code
// "CANCELLED" (see [Handler.OnFailed]), and acknowledges the non-terminal
// "created", "starting", "processing", "queued" and "running" with no
// callback.
const (
	// StatusSuccess is a prediction that succeeded (the spec page's form).
	StatusSuccess = "success"
	// statusSucceeded is a prediction that succeeded (the exec_id form).
	statusSucceeded = "succeeded"
	// StatusFailed is a prediction or a workflow execution that failed.
	StatusFailed = "failed"
	// StatusCompleted is a workflow execution that completed.
	StatusCompleted = "completed"
)

// CodeCancelled is the [Failure] code of a cancelled prediction, whether
// it arrived with status "cancelled" or "canceled" or the reconciler
// polled it.
const CodeCancelled = "CANCELLED"

// Metrics are the measurements the sender reports for a prediction.
type Metrics struct {
	// PredictTime is the time the model ran, in seconds.
	PredictTime float64 `json:"predict_time"`
	// Cost is what the prediction cost, in the account's currency.
	Cost float64 `json:"cost"`
}

// Success is a prediction that finished with an output.
type Success struct {
	// ID is the prediction id ("id", or "exec_id" when the body has no
	// "id"); it is the idempotency key.
	ID string
	// Output is the model's output as sent: a URL string, an array of
	// URLs, an object or text depending on the model. See [Success.URL],
	// [Success.URLs] and [Success.Decode].
	Output json.RawMessage
	// Input is the prediction's input as sent.
	Input json.RawMessage
	// Metrics holds the reported run time and cost (zero when absent).
	Metrics Metrics
	// Logs holds the prediction's logs, if the sender included any.
	Logs string
	// Raw is the whole verified body.
	Raw json.RawMessage
}

// Failure is a prediction that failed.
type Failure struct {
	// ID is the prediction id ("id", or "exec_id" when the body has no
	// "id"); it is the idempotency key.
	ID string
	// Input is the prediction's input as sent.
	Input json.RawMessage
	// Logs holds the failure's logs, such as "Error: Model timeout after
	// 30s": the "logs" field when present, otherwise the error message of
	// the exec_id form (see [Failure.Code]).
	Logs string
	// Code is the machine-readable error code of the exec_id form, such as
	// "EXECUTION_TIMEOUT", taken from the first element of "output" whose
	// "error" is set; else from "output" when it is itself an error object
	// (the poll envelope's and the Video API's shape), or from its "error"
	// member; else from the top-level "error". That error is either
	// {"error_code", "error_message"} (Code and Logs) or a plain string
	// (Logs only). Code is empty when the sender gave none, and
	// "CANCELLED" for a cancelled prediction (status "cancelled" or
	// "canceled"), as the reconciler of package eachloop reports one.
	Code string
	// Retryable is the "retryable" member of that error object: true when
	// the sender says the same request may succeed if made again, false
	// when it says otherwise or says nothing.
	Retryable bool
	// Category is the "classification": {"category"} of that error object,
	// such as "VALIDATION", "PROVIDER", "RATE_LIMIT" or "TIMEOUT"; empty
	// when the sender gave none.
	Category string
	// Output is the output as sent: null in the spec page's payload, an
	// array of {"id", "status", "output", "error"} in the exec_id form.
	Output json.RawMessage
	// Metrics holds the reported run time and cost (zero when absent).
	Metrics Metrics
	// Raw is the whole verified body.
	Raw json.RawMessage
}

// URL returns Output when it is a single JSON string, such as the URL of a
// generated image. Otherwise it returns an error matching [ErrOutputShape].
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

// URLs returns Output as a list of strings: an array of strings as is, or a
// single string as a list of one. Otherwise it returns an error matching
// [ErrOutputShape].
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

// WorkflowRun is a workflow execution that reached a terminal status, as
// delivered to the webhook_url given when the workflow was triggered
// (POST /v1/workflows/trigger/{workflowID}/{versionID}).
type WorkflowRun struct {
	// ExecutionID is the execution id. The delivery is deduplicated under
	// [WorkflowKeyPrefix] + ExecutionID.
	ExecutionID string
	// WorkflowID is the workflow's id.
	WorkflowID string
	// Status is as sent: [StatusCompleted] for OnWorkflowCompleted;
	// [StatusFailed], "error", "cancelled" or "canceled" for
	// OnWorkflowFailed.
	Status string
	// StartedAt is when the execution started; zero when absent or not an
	// RFC 3339 time (Raw keeps the value as sent).
	StartedAt time.Time
	// CompletedAt is when the execution finished; zero when absent or not
	// an RFC 3339 time (Raw keeps the value as sent).
	CompletedAt time.Time
	// BulkID is the bulk trigger the execution belongs to; empty when the
	// workflow was triggered alone. Each execution of a bulk sends its own
	// webhook.
	BulkID string
	// Inputs is the execution's inputs as sent.
	Inputs json.RawMessage
	// StepOutputs is the output of each step as sent.
	StepOutputs json.RawMessage
	// Output is the workflow's output as sent.
	Output json.RawMessage
	// Error is the error of a failed execution, such as "ExecutionFailed";
	// empty when it completed.
	Error string
	// ErrorCause tells why a failed execution failed: a JSON string's
	// value, or the JSON text of any other value.
	ErrorCause string
	// Raw is the whole verified body.
	Raw json.RawMessage
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

// WorkflowKeyPrefix is put before a workflow execution id to make the key
// under which the delivery is deduplicated, passed to a [SecretLookup] and
// reported in logs and [CallbackError.ID]: the execution "abc" is known as
// "workflow:abc". Prediction ids are used bare, so that keys already held
// by a shared [Store] keep their meaning, except a prediction id that
// itself begins with "workflow:" or "prediction:", whose key is
// "prediction:" and the id ("workflow:E" is known as
// "prediction:workflow:E"): so a prediction's key and a workflow
// execution's never collide, whatever the ids. (each::labs prediction ids
// are UUIDs, which never need it.) The callbacks get the ids as sent.
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
	return envelope{ID: keyOf(k, id), Status: p.Status, Kind: k}, nil
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
