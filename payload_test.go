package eachhook_test

import (
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

func TestFailureErrorObjectFields(t *testing.T) {
	cases := []struct {
		name, body, code, logs, category string
		retryable                        bool
	}{
		{name: "output is the poll envelope's error object",
			body: `{"id":"e","status":"failed","output":{"error_code":"PROVIDER_RATE_LIMIT","error_message":"provider is busy","retryable":true,"classification":{"category":"RATE_LIMIT"}}}`,
			code: "PROVIDER_RATE_LIMIT", logs: "provider is busy", category: "RATE_LIMIT", retryable: true},
		{name: "Video API envelope: the object under output.error",
			body: `{"id":"e","status":"failed","output":{"error":{"error_code":"INPUT_VALIDATION_ERROR","error_message":"prompt is empty","retryable":false,"classification":{"category":"VALIDATION"}}}}`,
			code: "INPUT_VALIDATION_ERROR", logs: "prompt is empty", category: "VALIDATION"},
		{name: "step error object with a classification",
			body: `{"exec_id":"e","status":"failed","output":[{"id":"s","error":{"error_code":"EXECUTION_TIMEOUT","error_message":"timed out","retryable":true,"classification":{"category":"TIMEOUT"}}}],"error":""}`,
			code: "EXECUTION_TIMEOUT", logs: "timed out", category: "TIMEOUT", retryable: true},
		{name: "logs beat the message; the rest is kept",
			body: `{"id":"e","status":"failed","logs":"log text","output":{"error_code":"C","error_message":"m","classification":{"category":"PROVIDER"}}}`,
			code: "C", logs: "log text", category: "PROVIDER"},
		{name: "members of other types are left zero",
			body: `{"id":"e","status":"failed","output":{"error_code":"C","error_message":"m","retryable":"yes","classification":"PROVIDER"}}`,
			code: "C", logs: "m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret))
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			require.Equal(t, 200, serve(h, signed([]byte(tc.body))).Code)
			drain(t, h)
			require.Equal(t, onFailed, rec.Counts())
			f := rec.Runs()[0].Failure
			require.Equal(t, "e", f.ID)
			require.Equal(t, tc.code, f.Code)
			require.Equal(t, tc.logs, f.Logs)
			require.Equal(t, tc.category, f.Category)
			require.Equal(t, tc.retryable, f.Retryable)
		})
	}
}

func TestWorkflowRunBulkIDAndCompletedAt(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	body := `{"execution_id":"x1","workflow_id":"wf","bulk_id":"bulk-7","status":"completed","started_at":"2026-03-14T09:26:53Z","completed_at":"2026-03-14T09:27:41.5Z","output":{}}`
	require.Equal(t, 200, serve(h, signed([]byte(body))).Code)
	body = `{"execution_id":"x2","workflow_id":"wf","status":"completed","completed_at":"yesterday"}`
	require.Equal(t, 200, serve(h, signed([]byte(body))).Code)
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindWorkflowCompleted: 2}, rec.Counts())
	byID := map[string]*eachhook.WorkflowRun{}
	for _, r := range rec.Runs() {
		byID[r.ID] = r.Workflow
	}
	require.Equal(t, "bulk-7", byID["x1"].BulkID)
	require.Equal(t, time.Date(2026, 3, 14, 9, 27, 41, 5e8, time.UTC), byID["x1"].CompletedAt.UTC())
	require.Empty(t, byID["x2"].BulkID)
	require.True(t, byID["x2"].CompletedAt.IsZero(), "not an RFC 3339 time")
}
