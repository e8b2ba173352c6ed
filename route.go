package eachhook

import (
	"context"
	"fmt"
)

// WorkflowKeyPrefix is put before a workflow execution id to make the key
// under which the delivery is deduplicated, passed to a [SecretLookup] and
// reported in logs and [CallbackError.ID]: the execution "abc" is known as
// "workflow:abc". Prediction ids are used bare, so that keys already held
// by a shared [Store] keep their meaning; each::labs prediction ids are
// UUIDs and never begin with the prefix, so the two kinds cannot collide.
const WorkflowKeyPrefix = "workflow:"

// kind is what a delivery reports on.
type kind uint8

const (
	kindPrediction kind = iota + 1
	kindWorkflow
)

// event is the callback a delivery is routed to.
type event uint8

const (
	eventNone event = iota // a status with no callback, such as "processing"
	eventSuccess
	eventFailed
	eventWorkflowCompleted
	eventWorkflowFailed
)

// identity holds the fields that tell a delivery's kind and id. Both the
// request path (envelope) and the worker (wirePayload) classify through it,
// so they cannot disagree.
type identity struct {
	ID          string
	ExecID      string
	ExecutionID string
	WorkflowID  string
	Status      string
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
// [ErrMalformedPayload]. key is the dedupe key (see [WorkflowKeyPrefix]).
func (p *identity) classify() (k kind, key string, err error) {
	switch {
	case p.WorkflowID != "":
		if p.ExecutionID == "" {
			return 0, "", fmt.Errorf("%w: workflow_id without execution_id", ErrMalformedPayload)
		}
		return kindWorkflow, WorkflowKeyPrefix + p.ExecutionID, nil
	case p.ID != "":
		return kindPrediction, p.ID, nil
	case p.ExecID != "":
		return kindPrediction, p.ExecID, nil
	case p.ExecutionID != "":
		return kindWorkflow, WorkflowKeyPrefix + p.ExecutionID, nil
	}
	return 0, "", fmt.Errorf("%w: cannot tell the kind of delivery: none of id, exec_id, execution_id is a non-empty string", ErrMalformedPayload)
}

// eventOf maps a kind and a status as sent to the callback that handles it.
func eventOf(k kind, status string) event {
	switch k {
	case kindPrediction:
		switch status {
		case StatusSuccess, StatusSucceeded:
			return eventSuccess
		case StatusFailed:
			return eventFailed
		}
	case kindWorkflow:
		switch status {
		case StatusCompleted:
			return eventWorkflowCompleted
		case StatusFailed:
			return eventWorkflowFailed
		}
	}
	return eventNone
}

// hasCallback reports whether a callback is registered for env.
func (h *Handler) hasCallback(env envelope) bool {
	switch eventOf(env.Kind, env.Status) {
	case eventSuccess:
		return h.onSuccess.Load() != nil
	case eventFailed:
		return h.onFailed.Load() != nil
	case eventWorkflowCompleted:
		return h.onWorkflowCompleted.Load() != nil
	case eventWorkflowFailed:
		return h.onWorkflowFailed.Load() != nil
	}
	return false
}

// invoke decodes an accepted body once and runs the callback it is routed
// to, or returns an error matching [ErrNoCallback] if none is registered. The body passed decodeEnvelope before it was accepted, so it
// classifies the same way here.
func (h *Handler) invoke(ctx context.Context, body []byte) error {
	p := decodePayload(body)
	k, key, err := p.classify()
	if err != nil {
		return err
	}
	switch eventOf(k, p.Status) {
	case eventSuccess:
		if fn := h.onSuccess.Load(); fn != nil {
			return (*fn)(ctx, p.success(key, body))
		}
	case eventFailed:
		if fn := h.onFailed.Load(); fn != nil {
			return (*fn)(ctx, p.failure(key, body))
		}
	case eventWorkflowCompleted:
		if fn := h.onWorkflowCompleted.Load(); fn != nil {
			return (*fn)(ctx, p.workflowRun(body))
		}
	case eventWorkflowFailed:
		if fn := h.onWorkflowFailed.Load(); fn != nil {
			return (*fn)(ctx, p.workflowRun(body))
		}
	}
	return fmt.Errorf("%w: %q", ErrNoCallback, p.Status)
}
