package eachhook

import (
	"context"
	"encoding/json"
	"time"
)

// WorkflowRun is a workflow execution that reached a terminal status, as
// delivered to the webhook_url given when the workflow was triggered
// (POST /v1/workflows/trigger/{workflowID}/{versionID}).
type WorkflowRun struct {
	// ExecutionID is the execution id. The delivery is deduplicated under
	// [WorkflowKeyPrefix] + ExecutionID.
	ExecutionID string
	// WorkflowID is the workflow's id.
	WorkflowID string
	// Status is [StatusCompleted] or [StatusFailed].
	Status string
	// StartedAt is when the execution started; zero when absent or not an
	// RFC 3339 time (Raw keeps the value as sent).
	StartedAt time.Time
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

// OnWorkflowCompleted registers fn to run for each workflow execution that
// completed, under the same rules as [Handler.OnSuccess]. One Handler can
// serve predictions and workflow executions on one endpoint: each delivery
// is routed by its fields (see the package documentation).
func (h *Handler) OnWorkflowCompleted(fn func(ctx context.Context, run *WorkflowRun) error) {
	if fn == nil {
		h.onWorkflowCompleted.Store(nil)
		return
	}
	h.onWorkflowCompleted.Store(&fn)
}

// OnWorkflowFailed registers fn to run for each workflow execution that
// failed, under the same rules as [Handler.OnSuccess].
func (h *Handler) OnWorkflowFailed(fn func(ctx context.Context, run *WorkflowRun) error) {
	if fn == nil {
		h.onWorkflowFailed.Store(nil)
		return
	}
	h.onWorkflowFailed.Store(&fn)
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
	if s := text(p.StartedAt); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			run.StartedAt = t
		}
	}
	return run
}
