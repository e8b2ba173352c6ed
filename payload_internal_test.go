package eachhook

import (
	"bytes"
	"encoding/json"
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

// FuzzScanMatchesEncodingJSON checks the hand-written top-level scan
// against encoding/json on every valid JSON object, escaped, repeated and
// case-folded keys included: the identifying fields and the status it
// reads are the ones encoding/json reads into a struct with those fields,
// and so are "output" and the metrics; it refuses exactly the bodies where
// encoding/json finds an identifying field or the status neither a string
// nor null.
func FuzzScanMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","status":"success","output":"https://x/y.png","input":{"p":"q"},"metrics":{"predict_time":12.5,"cost":0.05}}`,
		` { "id" : "c\"d" , "status":"\u0073uccess", "x":[1,{"y":"]}"}] } `,
		`{"id":5}`, `{"id":"x","status":7}`, `[]`, `"id"`, `{}`, `{"id":"\xe5"}`,
		`{"nested":{"id":"inner"},"exec_id":"outer","output":[{"error":null}]}`,
		`{"id":"a","ID":"b","Status":"success","status":null}`,
		`{"i\u0064":"c","\u0053tatus":"failed","ſtatus":"error"}`,
		`{"id":"m","metrics":{"cost":1,"Cost":2e400},"metrics":{"predict_time":3},"metrics":5,"METRICS":{"cost":"x"}}`,
		`{"id":"o","output":1,"Output":null}`,
		`{"id":5,"ID":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !isJSONObject(body) {
			if _, err := decodeEnvelope(body); err == nil {
				t.Fatalf("accepted %q, which is not a JSON object", body)
			}
			return
		}
		var want struct {
			ID          string          `json:"id"`
			ExecID      string          `json:"exec_id"`
			ExecutionID string          `json:"execution_id"`
			WorkflowID  string          `json:"workflow_id"`
			Status      string          `json:"status"`
			Output      json.RawMessage `json:"output"`
		}
		jerr := json.Unmarshal(body, &want)
		var typeErr *json.UnmarshalTypeError
		if jerr != nil && !errors.As(jerr, &typeErr) {
			t.Fatalf("encoding/json: %v on an object it decodes into a map", jerr)
		}
		var p wirePayload
		scanErr := p.scan(body)
		if (scanErr != nil) != (jerr != nil) {
			t.Fatalf("scan error %v, encoding/json error %v, in %q", scanErr, jerr, body)
		}
		if scanErr != nil {
			return
		}
		got := [...]string{p.ID, p.ExecID, p.ExecutionID, p.WorkflowID, p.Status}
		exp := [...]string{want.ID, want.ExecID, want.ExecutionID, want.WorkflowID, want.Status}
		if got != exp {
			t.Fatalf("scan reads %q, encoding/json %q, in %q", got, exp, body)
		}
		if !bytes.Equal(p.Output, want.Output) {
			t.Fatalf("output %q, encoding/json %q, in %q", p.Output, want.Output, body)
		}
		var wantMetrics struct {
			Metrics Metrics `json:"metrics"`
		}
		_ = json.Unmarshal(body, &wantMetrics) // type errors leave fields as they were, as the scan does
		if m := p.metrics(); m != wantMetrics.Metrics {
			t.Fatalf("metrics %+v, encoding/json %+v, in %q", m, wantMetrics.Metrics, body)
		}
	})
}

func isJSONObject(body []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(body, &m) == nil && m != nil
}
