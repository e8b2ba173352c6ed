package eachhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// withUnknownField adds a field no version of the sender documents.
func withUnknownField(body []byte) []byte {
	i := bytes.IndexByte(body, '{')
	return append(append(append([]byte{}, body[:i+1]...), `"x_future_field":{"nested":[1,{"a":null}]},`...), body[i+1:]...)
}

// The callback runs a Handler makes of one delivery, by kind
// (eachhooktest.Recorder.Counts).
var (
	none        = map[string]int{}
	onSuccess   = map[string]int{eachhooktest.KindSuccess: 1}
	onFailed    = map[string]int{eachhooktest.KindFailed: 1}
	onCompleted = map[string]int{eachhooktest.KindWorkflowCompleted: 1}
	onWfFailed  = map[string]int{eachhooktest.KindWorkflowFailed: 1}
)

func TestDocumentedForms(t *testing.T) {
	cases := []struct {
		file  string
		want  map[string]int
		check func(t *testing.T, got eachhooktest.Run)
	}{
		{file: "prediction-success.json", want: onSuccess, check: func(t *testing.T, got eachhooktest.Run) {
			s := got.Success
			require.Equal(t, "abc123-def456-ghi789", s.ID)
			u, err := s.URL()
			require.NoError(t, err)
			require.Equal(t, "https://storage.example.com/predictions/abc123/image.jpg", u)
			require.Equal(t, eachhook.Metrics{PredictTime: 12.5, Cost: 0.05}, s.Metrics)
			require.JSONEq(t, `{"prompt":"A beautiful sunset over the ocean","aspect_ratio":"16:9"}`, string(s.Input))
		}},
		{file: "prediction-failed.json", want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			f := got.Failure
			require.Equal(t, "abc123-def456-ghi789", f.ID)
			require.Equal(t, "Error: Model timeout after 30s", f.Logs)
			require.Empty(t, f.Code)
			require.Equal(t, "null", string(f.Output))
		}},
		{file: "exec-succeeded.json", want: onSuccess, check: func(t *testing.T, got eachhooktest.Run) {
			s := got.Success
			require.Equal(t, "7c9e6679-7425-40de-944b-e07fc1f90ae7", s.ID)
			var out struct{ URL string }
			require.NoError(t, s.Decode(&out))
			require.Equal(t, "https://storage.example.com/predictions/7c9e6679/image.png", out.URL)
			require.Zero(t, s.Metrics)
		}},
		{file: "exec-failed-code.json", want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			f := got.Failure
			require.Equal(t, "7c9e6679-7425-40de-944b-e07fc1f90ae7", f.ID)
			require.Equal(t, "EXECUTION_TIMEOUT", f.Code)
			require.Equal(t, "Execution timed out after 300 seconds", f.Logs)
		}},
		{file: "exec-failed-text.json", want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			f := got.Failure
			require.Equal(t, "7c9e6679-7425-40de-944b-e07fc1f90ae7", f.ID)
			require.Empty(t, f.Code)
			require.Equal(t, "CUDA out of memory", f.Logs)
		}},
		{file: "both-ids.json", want: onSuccess, check: func(t *testing.T, got eachhooktest.Run) {
			require.Equal(t, "abc123-def456-ghi789", got.Success.ID, `"id" wins over "exec_id"`)
		}},
		{file: "workflow-completed.json", want: onCompleted, check: func(t *testing.T, got eachhooktest.Run) {
			run := got.Workflow
			require.Equal(t, "0b5f3d9e-8a61-4c2b-9f0e-5d7a1c3e2b44", run.ExecutionID)
			require.Equal(t, "wf-portrait-upscale", run.WorkflowID)
			require.Equal(t, eachhook.StatusCompleted, run.Status)
			require.Equal(t, time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC), run.StartedAt)
			require.JSONEq(t, `{"prompt":"A beautiful sunset over the ocean"}`, string(run.Inputs))
			var steps map[string]struct{ URL string }
			require.NoError(t, json.Unmarshal(run.StepOutputs, &steps))
			require.Equal(t, "https://storage.example.com/workflows/0b5f3d9e/upscaled.png", steps["upscale"].URL)
			require.JSONEq(t, `{"url":"https://storage.example.com/workflows/0b5f3d9e/upscaled.png"}`, string(run.Output))
			require.Empty(t, run.Error)
			require.Empty(t, run.ErrorCause)
		}},
		{file: "workflow-failed.json", want: onWfFailed, check: func(t *testing.T, got eachhooktest.Run) {
			run := got.Workflow
			require.Equal(t, "0b5f3d9e-8a61-4c2b-9f0e-5d7a1c3e2b44", run.ExecutionID)
			require.Equal(t, eachhook.StatusFailed, run.Status)
			require.Equal(t, "ExecutionFailed", run.Error)
			require.Equal(t, "step upscale: provider returned 500", run.ErrorCause)
			require.Equal(t, "null", string(run.Output))
		}},
	}
	schemes := []struct {
		name   string
		scheme eachhooktest.Scheme
		opts   []eachhook.Option
	}{
		{name: "body signature", scheme: eachhooktest.BodyScheme},
		{name: "timestamp signature", scheme: eachhooktest.TimestampScheme},
		{name: "timestamp signature and plain secret", scheme: eachhooktest.TimestampAndSecretScheme},
		{name: "legacy plain secret", scheme: eachhooktest.LegacySecretScheme, opts: []eachhook.Option{eachhook.WithLegacySecretHeader()}},
	}
	for _, tc := range cases {
		for _, sc := range schemes {
			for _, extra := range []bool{false, true} {
				name := tc.file + "/" + sc.name
				if extra {
					name += "/unknown field"
				}
				t.Run(name, func(t *testing.T) {
					body := readTestdata(t, tc.file)
					if extra {
						body = withUnknownField(body)
					}
					h := newHandler(t, append([]eachhook.Option{eachhook.WithSecret(secret)}, sc.opts...)...)
					rec := eachhooktest.NewRecorder()
					rec.Register(h)
					w := serve(h, eachhooktest.NewRequest("/", secret, body, sc.scheme, time.Now()))
					require.Equal(t, 200, w.Code, w.Body.String())
					drain(t, h)
					require.Equal(t, tc.want, rec.Counts())
					tc.check(t, rec.Runs()[0])
				})
			}
		}
	}
}

// TestBuilderForms checks that the eachhooktest builders produce deliveries
// that reach the right callback with the seed values.
func TestBuilderForms(t *testing.T) {
	cases := []struct {
		name  string
		body  []byte
		want  map[string]int
		check func(t *testing.T, got eachhooktest.Run)
	}{
		{name: "SuccessBody", body: eachhooktest.SuccessBody("p1"), want: onSuccess, check: func(t *testing.T, got eachhooktest.Run) {
			require.Equal(t, "p1", got.Success.ID)
		}},
		{name: "FailedBody", body: eachhooktest.FailedBody("p1"), want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			require.Equal(t, eachhooktest.SeedLogs, got.Failure.Logs)
		}},
		{name: "SucceededBody", body: eachhooktest.SucceededBody("e1"), want: onSuccess, check: func(t *testing.T, got eachhooktest.Run) {
			s := got.Success
			require.Equal(t, "e1", s.ID)
			require.JSONEq(t, `{"url":"`+eachhooktest.SeedOutput+`"}`, string(s.Output))
		}},
		{name: "ExecFailedBody with code", body: eachhooktest.ExecFailedBody("e1", eachhooktest.SeedErrorCode, eachhooktest.SeedErrorMessage), want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			f := got.Failure
			require.Equal(t, "e1", f.ID)
			require.Equal(t, eachhooktest.SeedErrorCode, f.Code)
			require.Equal(t, eachhooktest.SeedErrorMessage, f.Logs)
		}},
		{name: "ExecFailedBody plain", body: eachhooktest.ExecFailedBody("e1", "", "boom"), want: onFailed, check: func(t *testing.T, got eachhooktest.Run) {
			require.Empty(t, got.Failure.Code)
			require.Equal(t, "boom", got.Failure.Logs)
		}},
		{name: "WorkflowCompletedBody", body: eachhooktest.WorkflowCompletedBody("x1", "wf"), want: onCompleted, check: func(t *testing.T, got eachhooktest.Run) {
			run := got.Workflow
			require.Equal(t, "x1", run.ExecutionID)
			require.Equal(t, "wf", run.WorkflowID)
			require.Equal(t, eachhooktest.SeedStartedAt, run.StartedAt.Format(time.RFC3339))
		}},
		{name: "WorkflowFailedBody", body: eachhooktest.WorkflowFailedBody("x1", "wf"), want: onWfFailed, check: func(t *testing.T, got eachhooktest.Run) {
			run := got.Workflow
			require.Equal(t, eachhooktest.SeedWorkflowError, run.Error)
			require.Equal(t, eachhooktest.SeedErrorCause, run.ErrorCause)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret))
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", secret, tc.body, eachhooktest.TimestampScheme, time.Now())).Code)
			drain(t, h)
			require.Equal(t, tc.want, rec.Counts())
			tc.check(t, rec.Runs()[0])
		})
	}
}

func TestFailureErrorShapes(t *testing.T) {
	cases := []struct {
		name, body, code, logs string
	}{
		{name: "top-level error object", body: `{"exec_id":"e","status":"failed","output":null,"error":{"error_code":"PROVIDER_RATE_LIMIT","error_message":"slow down"}}`, code: "PROVIDER_RATE_LIMIT", logs: "slow down"},
		{name: "top-level error string", body: `{"exec_id":"e","status":"failed","error":"boom"}`, logs: "boom"},
		{name: "first step with an error", body: `{"exec_id":"e","status":"failed","output":[{"id":"a","error":null},{"id":"b","error":{"error_code":"X","error_message":"y"}}]}`, code: "X", logs: "y"},
		{name: "step error beats top-level error", body: `{"exec_id":"e","status":"failed","output":[{"error":"step"}],"error":"top"}`, logs: "step"},
		{name: "logs beat error, code kept", body: `{"id":"e","status":"failed","logs":"log text","output":[{"error":{"error_code":"C","error_message":"m"}}]}`, code: "C", logs: "log text"},
		{name: "error object of another shape", body: `{"exec_id":"e","status":"failed","output":[{"error":{"message":"m"}}]}`, logs: `{"message":"m"}`},
		{name: "output not an array", body: `{"exec_id":"e","status":"failed","output":{"error":"ignored"}}`},
		{name: "steps of another type", body: `{"exec_id":"e","status":"failed","output":[1,"two"],"error":"top"}`, logs: "top"},
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
		})
	}
}

func TestKindRule(t *testing.T) {
	cases := []struct {
		name string
		body string
		code int
		want map[string]int
	}{
		{name: "workflow_id decides over id", body: `{"id":"p","execution_id":"x","workflow_id":"w","status":"completed"}`, code: 200, want: onCompleted},
		{name: "workflow failed is not a prediction failure", body: `{"execution_id":"x","workflow_id":"w","status":"failed"}`, code: 200, want: onWfFailed},
		{name: "execution_id alone", body: `{"execution_id":"x","status":"completed"}`, code: 200, want: onCompleted},
		{name: "id over execution_id without workflow_id", body: `{"id":"p","execution_id":"x","status":"success"}`, code: 200, want: onSuccess},
		{name: "exec_id with null id", body: `{"id":null,"exec_id":"e","status":"succeeded"}`, code: 200, want: onSuccess},
		{name: "exec_id with empty id", body: `{"id":"","exec_id":"e","status":"failed"}`, code: 200, want: onFailed},
		{name: "prediction status on a workflow", body: `{"execution_id":"x","workflow_id":"w","status":"success"}`, code: 200, want: none},
		{name: "workflow status on a prediction", body: `{"id":"p","status":"completed"}`, code: 200, want: none},
		{name: "succeeded in the spec page's form", body: `{"id":"p","status":"succeeded"}`, code: 200, want: onSuccess},
		{name: "flow_id of any type", body: `{"exec_id":"e","flow_id":{"a":1},"status":"succeeded"}`, code: 200, want: onSuccess},
		{name: "no identifying field", body: `{"status":"succeeded","output":{"url":"u"}}`, code: 400, want: none},
		{name: "workflow_id without execution_id", body: `{"workflow_id":"w","status":"completed"}`, code: 400, want: none},
		{name: "numeric exec_id", body: `{"exec_id":7,"status":"succeeded"}`, code: 400, want: none},
		{name: "numeric execution_id", body: `{"execution_id":7,"workflow_id":"w","status":"completed"}`, code: 400, want: none},
		{name: "empty object", body: `{}`, code: 400, want: none},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret))
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			w := serve(h, signed([]byte(tc.body)))
			require.Equal(t, tc.code, w.Code, w.Body.String())
			drain(t, h)
			require.Equal(t, tc.want, rec.Counts())
		})
	}
}

func TestUnknownKindIsLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))))
	require.Equal(t, 400, serve(h, signed([]byte(`{"status":"succeeded"}`))).Code)
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, logs.String(), "refused malformed delivery")
	require.Contains(t, logs.String(), "cannot tell the kind of delivery")
}

func TestPredictionAndWorkflowIDsDoNotCollide(t *testing.T) {
	var looked []string
	var mu sync.Mutex
	lookup := func(ctx context.Context, id string) ([]string, error) {
		mu.Lock()
		looked = append(looked, id)
		mu.Unlock()
		return []string{"per-delivery"}, nil
	}
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecretLookup(lookup), eachhook.WithStore(store))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	send := func(body []byte) int {
		return serve(h, eachhooktest.NewRequest("/", "per-delivery", body, eachhooktest.TimestampScheme, time.Now())).Code
	}
	for range 2 {
		require.Equal(t, 200, send(eachhooktest.SuccessBody("same")))
		require.Equal(t, 200, send(eachhooktest.WorkflowCompletedBody("same", "wf")))
	}
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 1, eachhooktest.KindWorkflowCompleted: 1}, rec.Counts())
	require.Equal(t, []string{"same", "workflow:same", "same", "workflow:same"}, looked)
	// The keys as held by the store.
	for _, key := range []string{"same", eachhook.WorkflowKeyPrefix + "same"} {
		_, claimed, err := store.Claim(context.Background(), key, time.Hour)
		require.NoError(t, err)
		require.False(t, claimed, key)
	}
}

func TestRedelivery(t *testing.T) {
	forms := []struct {
		name string
		body []byte
		key  string
	}{
		{name: "spec page", body: eachhooktest.SuccessBody("r1"), key: "r1"},
		{name: "exec_id form", body: eachhooktest.SucceededBody("r1"), key: "r1"},
		{name: "workflow", body: eachhooktest.WorkflowCompletedBody("r1", "wf"), key: "workflow:r1"},
	}
	for _, form := range forms {
		t.Run(form.name+"/after callbacks finished", func(t *testing.T) {
			var clock clockAt
			clock.set(time.Now())
			finished := make(chan struct{}, 1)
			h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock.now),
				eachhook.WithObserver(observe.Observer{CallbackFinished: func(context.Context, observe.CallbackRun) { finished <- struct{}{} }}))
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			first := eachhooktest.NewRequest("/", secret, form.body, eachhooktest.TimestampAndSecretScheme, clock.now())
			require.Equal(t, 200, serve(h, first).Code)
			<-finished // the callback ran and its id is marked done
			// An hour later the user asks for a redelivery: signed again.
			clock.set(clock.now().Add(time.Hour))
			again := eachhooktest.Redelivery(eachhooktest.NewRequest("/", secret, form.body, eachhooktest.TimestampAndSecretScheme, clock.now()))
			require.Equal(t, 200, serve(h, again).Code)
			drain(t, h)
			require.Len(t, rec.Runs(), 1)
		})
		t.Run(form.name+"/after callbacks failed for good", func(t *testing.T) {
			var clock clockAt
			clock.set(time.Now())
			gaveUp := make(chan string, 1)
			h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock.now), eachhook.WithRetry(2, time.Millisecond),
				eachhook.WithErrorHandler(func(ctx context.Context, err error) {
					var ce *eachhook.CallbackError
					if errors.As(err, &ce) {
						gaveUp <- ce.ID
					}
				}))
			var fail sync.Mutex // held while the callback must fail
			failing := true
			result := func() error {
				fail.Lock()
				defer fail.Unlock()
				if failing {
					return io.ErrUnexpectedEOF
				}
				return nil
			}
			rec := eachhooktest.NewRecorder()
			h.OnSuccess(rec.Success(func(context.Context, *eachhook.Success) error { return result() }))
			h.OnFailed(rec.Failed(func(context.Context, *eachhook.Failure) error { return result() }))
			h.OnWorkflowCompleted(rec.Workflow(func(context.Context, *eachhook.WorkflowRun) error { return result() }))
			h.OnWorkflowFailed(rec.Workflow(func(context.Context, *eachhook.WorkflowRun) error { return result() }))
			first := eachhooktest.NewRequest("/", secret, form.body, eachhooktest.TimestampAndSecretScheme, clock.now())
			require.Equal(t, 200, serve(h, first).Code)
			require.Equal(t, form.key, <-gaveUp) // both attempts failed: a dead letter
			fail.Lock()
			failing = false
			fail.Unlock()
			clock.set(clock.now().Add(time.Hour))
			again := eachhooktest.Redelivery(eachhooktest.NewRequest("/", secret, form.body, eachhooktest.TimestampAndSecretScheme, clock.now()))
			require.Equal(t, 200, serve(h, again).Code)
			drain(t, h)
			require.Len(t, rec.Runs(), 3, "a dead letter leaves its id claimable: the redelivery runs")
			require.Len(t, rec.IDs(), 1)
			dls, err := h.DeadLetters(context.Background())
			require.NoError(t, err)
			require.Empty(t, dls, "the redelivery's success deleted the dead letter")
		})
	}
}

// clockAt is a settable clock.
type clockAt struct{ unix atomic.Int64 }

func (c *clockAt) set(t time.Time) { c.unix.Store(t.Unix()) }
func (c *clockAt) now() time.Time  { return time.Unix(c.unix.Load(), 0) }

func TestWorkflowWithoutWorkflowCallbacks(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	rec := eachhooktest.NewRecorder() // OnSuccess and OnFailed only
	h.OnSuccess(rec.Success(nil))
	h.OnFailed(rec.Failed(nil))
	body := eachhooktest.WorkflowFailedBody("x1", "wf")
	require.Equal(t, 200, serve(h, signed(body)).Code, "acknowledged and kept as a dead letter")
	drain(t, h)
	// The dead letter leaves its id claimable: a Handler with the callback,
	// on the same store, runs the sender's retry.
	var runs atomic.Int32
	h2 := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	h2.OnWorkflowFailed(func(ctx context.Context, run *eachhook.WorkflowRun) error { runs.Add(1); return nil })
	require.Equal(t, 200, serve(h2, signed(body)).Code)
	drain(t, h2)
	require.Equal(t, int32(1), runs.Load())
	require.Empty(t, rec.Runs(), "a failed workflow is not a failed prediction")
}

// TestDedupeAcrossForms checks that one prediction sent in several forms
// runs one callback: the key is the id the rule picks, whatever the form.
func TestDedupeAcrossForms(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1)) // callbacks in order
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	for _, body := range [][]byte{
		eachhooktest.SuccessBody("abc123-def456-ghi789"),
		eachhooktest.SucceededBody("abc123-def456-ghi789"),
		readTestdata(t, "both-ids.json"), // id abc123-def456-ghi789, another exec_id
		eachhooktest.SucceededBody("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
		readTestdata(t, "exec-succeeded.json"),
	} {
		require.Equal(t, 200, serve(h, signed(body)).Code)
	}
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 2}, rec.Counts())
	require.Equal(t, []string{"abc123-def456-ghi789", "7c9e6679-7425-40de-944b-e07fc1f90ae7"}, rec.IDs())
}

func TestLegacySecretHeader(t *testing.T) {
	const other = "whsec_other_secret"
	body := eachhooktest.SuccessBody("legacy-1")
	now := time.Now()
	plain := func(value string) *http.Request {
		return eachhooktest.NewRequest("/", value, body, eachhooktest.LegacySecretScheme, now)
	}
	// sigAndPlain signs with sigSecret and sends plain in X-Webhook-Secret.
	sigAndPlain := func(sigSecret, plain string) *http.Request {
		r := eachhooktest.NewRequest("/", sigSecret, body, eachhooktest.TimestampScheme, now)
		r.Header.Set(signature.HeaderSecret, plain)
		return r
	}
	legacy := eachhook.WithLegacySecretHeader()
	cases := []struct {
		name string
		opts []eachhook.Option
		req  *http.Request
		want int
	}{
		{name: "default refuses the right secret", req: plain(secret), want: 401},
		{name: "default accepts the live sender by its signature alone", req: sigAndPlain(secret, secret), want: 200},
		{name: "right secret", opts: []eachhook.Option{legacy}, req: plain(secret), want: 200},
		{name: "wrong secret", opts: []eachhook.Option{legacy}, req: plain(other), want: 401},
		{name: "prefix of the secret", opts: []eachhook.Option{legacy}, req: plain(secret[:len(secret)-1]), want: 401},
		{name: "secret with a suffix", opts: []eachhook.Option{legacy}, req: plain(secret + "x"), want: 401},
		{name: "second of two secrets", opts: []eachhook.Option{legacy, eachhook.WithSecret(other)}, req: plain(other), want: 200},
		{name: "valid signature decides over a wrong plain secret", opts: []eachhook.Option{legacy}, req: sigAndPlain(secret, other), want: 200},
		{name: "wrong signature decides over the right plain secret", opts: []eachhook.Option{legacy}, req: sigAndPlain(other, secret), want: 401},
		{name: "malformed signature decides over the right plain secret", opts: []eachhook.Option{legacy}, req: func() *http.Request {
			r := plain(secret)
			r.Header.Set(signature.Header, "sha256=zz")
			return r
		}(), want: 401},
		{name: "blank signature counts as absent", opts: []eachhook.Option{legacy}, req: func() *http.Request {
			r := plain(secret)
			r.Header.Set(signature.Header, "  ")
			return r
		}(), want: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts := append([]eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(logger)}, tc.opts...)
			h := newHandler(t, opts...)
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			w := serve(h, tc.req)
			require.Equal(t, tc.want, w.Code)
			drain(t, h)
			if tc.want == 200 {
				require.Equal(t, onSuccess, rec.Counts())
			} else {
				require.Equal(t, none, rec.Counts())
			}
			mu.Lock()
			defer mu.Unlock()
			// Neither the configured secrets nor the header's value are
			// ever logged, whatever the outcome.
			for _, v := range []string{secret, other, secret[:len(secret)-1]} {
				require.NotContains(t, logs.String(), v)
			}
			if tc.name == "default refuses the right secret" {
				require.Contains(t, logs.String(), "WithLegacySecretHeader", "the log tells how to accept it")
			}
		})
	}
}

func TestLegacySecretHeaderWithLookup(t *testing.T) {
	var looked []string
	var mu sync.Mutex
	lookup := func(ctx context.Context, id string) ([]string, error) {
		mu.Lock()
		looked = append(looked, id)
		mu.Unlock()
		switch id {
		case "p1":
			return []string{"secret-p1"}, nil
		case "workflow:x1":
			return []string{"secret-x1"}, nil
		case "explode":
			return nil, context.DeadlineExceeded
		}
		return nil, nil
	}
	h := newHandler(t, eachhook.WithSecretLookup(lookup), eachhook.WithLegacySecretHeader())
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	plain := func(value string, body []byte) int {
		return serve(h, eachhooktest.NewRequest("/", value, body, eachhooktest.LegacySecretScheme, time.Now())).Code
	}
	require.Equal(t, 200, plain("secret-p1", eachhooktest.FailedBody("p1")))
	require.Equal(t, 200, plain("secret-x1", eachhooktest.WorkflowFailedBody("x1", "wf")))
	require.Equal(t, 401, plain("secret-x1", eachhooktest.FailedBody("p1")), "another delivery's secret")
	require.Equal(t, 401, plain("secret-p1", eachhooktest.FailedBody("unknown")), "no secret for the id")
	require.Equal(t, 401, plain("secret-p1", []byte(`{"status":"failed"}`)), "no id to look up")
	require.Equal(t, 503, plain("secret-p1", eachhooktest.FailedBody("explode")), "lookup failure")
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindFailed: 1, eachhooktest.KindWorkflowFailed: 1}, rec.Counts())
	require.Equal(t, []string{"p1", "workflow:x1", "p1", "unknown", "explode"}, looked)
}

func TestLegacySecretHeaderOptionConflicts(t *testing.T) {
	h, err := eachhook.New(eachhook.WithInsecureSkipVerification(), eachhook.WithLegacySecretHeader())
	require.ErrorIs(t, err, eachhook.ErrInvalidOption)
	require.Nil(t, h)
	h, err = eachhook.New(eachhook.WithLegacySecretHeader())
	require.ErrorIs(t, err, eachhook.ErrInvalidOption, "still needs a secret")
	require.Nil(t, h)
}

func TestLegacySchemeHeaders(t *testing.T) {
	hdr := eachhooktest.Headers(secret, []byte(`{}`), eachhooktest.LegacySecretScheme, time.Now())
	require.Equal(t, secret, hdr.Get(signature.HeaderSecret))
	require.Empty(t, hdr.Get(signature.Header))
	require.Empty(t, hdr.Get(signature.HeaderTimestamp))
	hdr = eachhooktest.Headers(secret, []byte(`{}`), eachhooktest.TimestampAndSecretScheme, time.Now())
	require.Equal(t, secret, hdr.Get(signature.HeaderSecret))
	require.True(t, strings.HasPrefix(hdr.Get(signature.Header), "sha256="))
	require.NotEmpty(t, hdr.Get(signature.HeaderTimestamp))
}
