package eachhook

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdataBodies returns the documented example bodies in testdata/.
func testdataBodies(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata: %v", err)
	}
	bodies := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		bodies[filepath.Base(f)] = b
	}
	return bodies
}

// FuzzDecode checks the request-path envelope and the worker's decoding
// against each other on every form: an accepted body classifies the same
// way on both paths, its key is well formed, and building the callback's
// value never panics; a refused body's error matches ErrMalformedPayload.
func FuzzDecode(f *testing.F) {
	for _, b := range testdataBodies(f) {
		f.Add(b)
	}
	for _, s := range []string{
		`{"id":"p","status":"success"}`,
		`{"exec_id":"e","status":"succeeded","output":[{"error":{"error_code":"C","error_message":"m"}}]}`,
		`{"exec_id":"e","status":"failed","error":"x"}`,
		`{"execution_id":"x","status":"completed","started_at":"not a time"}`,
		`{"workflow_id":"w","status":"failed"}`,
		`{"id":"","exec_id":null,"execution_id":"x"}`,
		`{"status":"success"}`,
		`[]`, `null`, `"id"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := decodeEnvelope(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedPayload) {
				t.Fatalf("error %v does not match ErrMalformedPayload", err)
			}
			return
		}
		if env.ID == "" {
			t.Fatal("accepted with an empty key")
		}
		p := decodePayload(body)
		k, id, err := p.classify()
		if err != nil || k != env.Kind || keyOf(k, id) != env.ID || p.Status != env.Status {
			t.Fatalf("worker decodes (%v, %q, %q, %v), envelope (%v, %q, %q)", k, id, p.Status, err, env.Kind, env.ID, env.Status)
		}
		key := id
		switch k {
		case kindPrediction:
			p.success(key, body)
			p.failure(key, body)
		case kindWorkflow:
			run := p.workflowRun(body)
			if !strings.HasPrefix(env.ID, WorkflowKeyPrefix) || WorkflowKeyPrefix+run.ExecutionID != env.ID {
				t.Fatalf("workflow key %q for execution %q", env.ID, run.ExecutionID)
			}
		default:
			t.Fatalf("kind %v", k)
		}
	})
}

// BenchmarkDecodeEnvelope measures the request path's only decoding, on
// each documented form.
func BenchmarkDecodeEnvelope(b *testing.B) {
	for _, name := range []string{"prediction-success.json", "exec-failed-code.json", "workflow-completed.json"} {
		body := testdataBodies(b)[name]
		b.Run(strings.TrimSuffix(name, ".json"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeEnvelope(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
