// Package eachhooktest builds signed each::labs webhook requests and
// payloads for tests of code that uses package eachhook, and records the
// callbacks a Handler runs so that a test can wait for them ([Recorder]).
// It signs with [signature.Sign], the same code the Handler verifies
// against.
package eachhooktest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/eachhook/eachhook/signature"
)

// Scheme is a way the sender signs a delivery.
type Scheme int

const (
	// BodyScheme signs the raw body and sends the bare hex digest in
	// X-Webhook-Signature (the original each::labs scheme).
	BodyScheme Scheme = iota
	// TimestampScheme signs "<unix seconds>.<body>" and sends
	// "sha256=<hex>" with X-Webhook-Timestamp (the newer scheme).
	TimestampScheme
	// LegacySecretScheme signs nothing and sends the secret itself in
	// X-Webhook-Secret (the legacy scheme, accepted only with
	// eachhook.WithLegacySecretHeader).
	LegacySecretScheme
	// TimestampAndSecretScheme signs like TimestampScheme and also sends
	// the secret in X-Webhook-Secret, as current senders do for the sake
	// of old receivers.
	TimestampAndSecretScheme
)

// SeedOutput is the output URL of the payload SuccessBody builds.
const SeedOutput = "https://storage.example.com/predictions/abc123/image.jpg"

// SeedLogs is the logs of the payload FailedBody builds.
const SeedLogs = "Error: Model timeout after 30s"

// Seed values of the exec_id form's and the workflow execution's payloads.
const (
	// SeedErrorCode is the error_code ExecFailedBody puts in its error
	// when asked for the object form.
	SeedErrorCode = "EXECUTION_TIMEOUT"
	// SeedErrorMessage is the error message of ExecFailedBody.
	SeedErrorMessage = "Execution timed out after 300 seconds"
	// SeedWorkflowError is the error of WorkflowFailedBody.
	SeedWorkflowError = "ExecutionFailed"
	// SeedErrorCause is the error_cause of WorkflowFailedBody.
	SeedErrorCause = "step upscale: provider returned 500"
	// SeedStartedAt is the started_at of the workflow payloads.
	SeedStartedAt = "2026-03-14T09:26:53Z"
)

// SuccessBody returns the documented success payload for prediction id.
func SuccessBody(id string) []byte {
	return mustJSON(map[string]any{
		"id":     id,
		"status": "success",
		"output": SeedOutput,
		"input":  map[string]any{"prompt": "A beautiful sunset over the ocean", "aspect_ratio": "16:9"},
		"metrics": map[string]any{
			"predict_time": 12.5,
			"cost":         0.05,
		},
	})
}

// FailedBody returns the documented failure payload for prediction id.
func FailedBody(id string) []byte {
	return mustJSON(map[string]any{
		"id":     id,
		"status": "failed",
		"output": nil,
		"input":  map[string]any{"prompt": "A beautiful sunset over the ocean", "aspect_ratio": "16:9"},
		"logs":   SeedLogs,
	})
}

// SucceededBody returns the exec_id form of a prediction that succeeded:
// {"exec_id", "flow_id": null, "status": "succeeded", "output": {"url":
// SeedOutput}, "error": null}.
func SucceededBody(execID string) []byte {
	return mustJSON(map[string]any{
		"exec_id": execID,
		"flow_id": nil,
		"status":  "succeeded",
		"output":  map[string]any{"url": SeedOutput},
		"error":   nil,
	})
}

// ExecFailedBody returns the exec_id form of a prediction that failed. Its
// output is one step whose error is {"error_code": code, "error_message":
// message}, or the plain string message when code is "".
func ExecFailedBody(execID, code, message string) []byte {
	var stepErr any = message
	if code != "" {
		stepErr = map[string]any{"error_code": code, "error_message": message}
	}
	return mustJSON(map[string]any{
		"exec_id": execID,
		"flow_id": nil,
		"status":  "failed",
		"output": []any{map[string]any{
			"id":     execID,
			"status": "failed",
			"output": nil,
			"error":  stepErr,
		}},
		"error": nil,
	})
}

// WorkflowCompletedBody returns the payload of a workflow execution that
// completed, with SeedOutput as the URL of its output.
func WorkflowCompletedBody(executionID, workflowID string) []byte {
	return mustJSON(workflowBody(executionID, workflowID, "completed"))
}

// WorkflowFailedBody returns the payload of a workflow execution that
// failed, with SeedWorkflowError and SeedErrorCause.
func WorkflowFailedBody(executionID, workflowID string) []byte {
	b := workflowBody(executionID, workflowID, "failed")
	b["output"] = nil
	b["step_outputs"] = map[string]any{}
	b["error"] = SeedWorkflowError
	b["error_cause"] = SeedErrorCause
	return mustJSON(b)
}

func workflowBody(executionID, workflowID, status string) map[string]any {
	return map[string]any{
		"execution_id": executionID,
		"workflow_id":  workflowID,
		"status":       status,
		"started_at":   SeedStartedAt,
		"inputs":       map[string]any{"prompt": "A beautiful sunset over the ocean"},
		"step_outputs": map[string]any{"generate": map[string]any{"url": SeedOutput}},
		"output":       map[string]any{"url": SeedOutput},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Headers returns the headers the sender sets on a delivery of body signed
// with secret under scheme; now is the signing time (TimestampScheme only).
func Headers(secret string, body []byte, scheme Scheme, now time.Time) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	switch scheme {
	case TimestampScheme, TimestampAndSecretScheme:
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set(signature.HeaderTimestamp, ts)
		h.Set(signature.Header, "sha256="+signature.Sign(secret, ts, body))
		if scheme == TimestampAndSecretScheme {
			h.Set(signature.HeaderSecret, secret)
		}
	case LegacySecretScheme:
		h.Set(signature.HeaderSecret, secret)
	default:
		h.Set(signature.Header, signature.Sign(secret, "", body))
	}
	return h
}

// NewRequest returns a server-side POST request to target (a path or URL)
// carrying body signed with secret under scheme, ready for
// Handler.ServeHTTP with an httptest.ResponseRecorder.
func NewRequest(target, secret string, body []byte, scheme Scheme, now time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	for k, v := range Headers(secret, body, scheme, now) {
		r.Header[k] = v
	}
	return r
}

// NewSuccessRequest returns a request carrying SuccessBody(id) signed with
// secret under BodyScheme.
func NewSuccessRequest(target, secret, id string) *http.Request {
	return NewRequest(target, secret, SuccessBody(id), BodyScheme, time.Now())
}

// NewFailedRequest returns a request carrying FailedBody(id) signed with
// secret under BodyScheme.
func NewFailedRequest(target, secret, id string) *http.Request {
	return NewRequest(target, secret, FailedBody(id), BodyScheme, time.Now())
}

// NewClientRequest is like NewRequest but returns a client request, for
// sending to a running server with an http.Client.
func NewClientRequest(url, secret string, body []byte, scheme Scheme, now time.Time) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range Headers(secret, body, scheme, now) {
		r.Header[k] = v
	}
	return r, nil
}

// Redelivery marks r as a manual redelivery (X-Webhook-Redelivery: true)
// and returns it. The sender signs a redelivery again with a fresh
// timestamp: build r with TimestampScheme and the redelivery's time.
func Redelivery(r *http.Request) *http.Request {
	r.Header.Set(signature.HeaderRedelivery, "true")
	return r
}
