package eachhook_test

// Tests of what becomes of every acknowledged delivery (issue 12): each
// status reaches its callback, is ignored as non-terminal, or becomes a
// dead letter; a callback's runtime.Goexit is a failed attempt; claims
// expire when their callback never finished; keys and routing follow what
// encoding/json reads; repeated signature headers do not depend on order.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
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

// logBuffer is a text logger's output, safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// routed counts the callbacks each delivery id reached.
type routed struct {
	mu       sync.Mutex
	success  map[string]int
	failed   map[string]*eachhook.Failure
	wfDone   map[string]int
	wfFailed map[string]string // execution id -> status
}

func newRouted(h *eachhook.Handler) *routed {
	r := &routed{success: map[string]int{}, failed: map[string]*eachhook.Failure{}, wfDone: map[string]int{}, wfFailed: map[string]string{}}
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.success[s.ID]++
		return nil
	})
	h.OnFailed(func(_ context.Context, f *eachhook.Failure) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.failed[f.ID] = f
		return nil
	})
	h.OnWorkflowCompleted(func(_ context.Context, run *eachhook.WorkflowRun) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.wfDone[run.ExecutionID]++
		return nil
	})
	h.OnWorkflowFailed(func(_ context.Context, run *eachhook.WorkflowRun) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.wfFailed[run.ExecutionID] = run.Status
		return nil
	})
	return r
}

func predictionBody(id, status string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "status": status, "output": nil, "logs": "x"})
	return b
}

func workflowBody(execID, status string) []byte {
	b, _ := json.Marshal(map[string]any{"execution_id": execID, "workflow_id": "wf", "status": status})
	return b
}

func TestEveryTerminalStatusReachesItsCallback(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	r := newRouted(h)
	for _, st := range []string{"success", "succeeded", "failed", "error", "cancelled", "canceled"} {
		require.Equal(t, 200, serve(h, signed(predictionBody("p-"+st, st))).Code, st)
	}
	for _, st := range []string{"completed", "failed", "error", "cancelled", "canceled"} {
		require.Equal(t, 200, serve(h, signed(workflowBody("e-"+st, st))).Code, st)
	}
	drain(t, h)
	require.Equal(t, map[string]int{"p-success": 1, "p-succeeded": 1}, r.success)
	require.Len(t, r.failed, 4)
	require.Empty(t, r.failed["p-failed"].Code)
	require.Empty(t, r.failed["p-error"].Code)
	require.Equal(t, "CANCELLED", r.failed["p-cancelled"].Code)
	require.Equal(t, "CANCELLED", r.failed["p-canceled"].Code)
	require.Equal(t, map[string]int{"e-completed": 1}, r.wfDone)
	require.Equal(t, map[string]string{"e-failed": "failed", "e-error": "error", "e-cancelled": "cancelled", "e-canceled": "canceled"}, r.wfFailed)
}

func TestNonTerminalStatusIsIgnored(t *testing.T) {
	var ignored []string
	var mu sync.Mutex
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithObserver(observe.Observer{
		Ignored: func(_ context.Context, d observe.DeliveryInfo) {
			mu.Lock()
			defer mu.Unlock()
			ignored = append(ignored, d.Status)
		},
	}))
	r := newRouted(h)
	statuses := []string{"created", "starting", "processing", "queued", "running"}
	for _, st := range statuses {
		require.Equal(t, 200, serve(h, signed(predictionBody("p-1", st))).Code, st)
	}
	// The terminal delivery that follows is not a duplicate of them.
	require.Equal(t, 200, serve(h, signed(predictionBody("p-1", "success"))).Code)
	drain(t, h)
	require.Equal(t, statuses, ignored)
	require.Equal(t, map[string]int{"p-1": 1}, r.success)
}

func TestUnknownStatusBecomesDeadLetter(t *testing.T) {
	var logs logBuffer
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithLogger(logs.logger()))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, signed(predictionBody("p-odd", "exploded"))).Code)
	require.Equal(t, 200, serve(h, signed(workflowBody("e-odd", "paused"))).Code)
	// A copy is a duplicate: one dead letter, not two.
	require.Equal(t, 200, serve(h, signed(predictionBody("p-odd", "exploded"))).Code)
	drain(t, h)
	require.Empty(t, r.success)
	require.Empty(t, r.failed)
	require.Empty(t, r.wfDone)
	require.Empty(t, r.wfFailed)
	out := logs.String()
	require.Contains(t, out, `msg="eachhook: dead letter" id=p-odd status=exploded reason=unknown_status attempts=0`)
	require.Contains(t, out, `msg="eachhook: dead letter" id=workflow:e-odd status=paused reason=unknown_status attempts=0`)
	require.Equal(t, 2, bytes.Count([]byte(out), []byte(`msg="eachhook: dead letter"`)))
}

func TestFailingCallbackBecomesDeadLetter(t *testing.T) {
	var logs logBuffer
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithLogger(logs.logger()), eachhook.WithRetry(2, time.Millisecond))
	var runs atomic.Int32
	h.OnSuccess(func(context.Context, *eachhook.Success) error {
		runs.Add(1)
		return errors.New("downstream unavailable")
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-fails")).Code)
	require.Eventually(t, func() bool { return runs.Load() == 2 }, 5*time.Second, time.Millisecond)
	// A redelivery of a dead letter runs nothing a second time.
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-fails")).Code)
	drain(t, h)
	require.Equal(t, int32(2), runs.Load())
	require.Contains(t, logs.String(), `msg="eachhook: dead letter" id=p-fails status=success reason=callback_failed attempts=2 err="downstream unavailable"`)
}

// A callback that calls runtime.Goexit (as t.FailNow does) fails its
// attempt like a panic; the one worker survives and runs the next
// delivery; Shutdown loses nothing.
func TestGoexitInCallbackIsAFailedAttempt(t *testing.T) {
	var logs logBuffer
	var reported []error
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithLogger(logs.logger()),
		eachhook.WithErrorHandler(func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, err)
		}))
	var mu2 sync.Mutex
	var ran []string
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		mu2.Lock()
		ran = append(ran, s.ID)
		mu2.Unlock()
		if s.ID == "p-goexit" {
			runtime.Goexit()
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-goexit")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-after")).Code)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx), "the worker must survive and drain the queue")
	require.Equal(t, []string{"p-goexit", "p-goexit", "p-after"}, ran)
	require.NotContains(t, logs.String(), "not run before shutdown")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reported, 1)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, "p-goexit", ce.ID)
	require.Equal(t, 2, ce.Attempts)
	require.ErrorIs(t, ce, eachhook.ErrCallbackPanic)
}

// A claim whose process died after the 200 (taken, never completed nor
// released) makes a redelivery a duplicate only while its lease lasts.
func TestRedeliveryAfterTheLeaseIsProcessed(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	const lease = 100 * time.Millisecond
	_, ok, err := store.Claim(context.Background(), "p-crashed", lease) // the process that died
	require.NoError(t, err)
	require.True(t, ok)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	time.Sleep(2 * lease)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	// Done now: a later copy is a duplicate.
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	drain(t, h)
	require.Equal(t, map[string]int{"p-crashed": 1}, r.success)
}

// The Handler claims for a lease that WithRetry and WithCallbackTimeout
// set (here 3 attempts of at most 1m, 1ms backoffs, plus a minute: about
// 4m), and marks done with the dedupe TTL once the callback succeeded.
func TestClaimLeaseThenDone(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	var finished atomic.Int32 // attempts whose id is marked done, if they succeeded
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock), eachhook.WithTolerance(time.Minute),
		eachhook.WithCallbackTimeout(time.Minute), eachhook.WithDedupeTTL(time.Hour), eachhook.WithWorkers(2),
		eachhook.WithObserver(observe.Observer{CallbackFinished: func(context.Context, observe.CallbackRun) { finished.Add(1) }}))
	release := make(chan struct{})
	var runs atomic.Int32
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		if runs.Add(1) == 1 {
			<-release // the first run hangs past its lease
		}
		return nil
	})
	send := func() int {
		return serve(h, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody("p-1"), eachhooktest.BodyScheme, clock())).Code
	}
	require.Equal(t, 200, send())
	require.Eventually(t, func() bool { return runs.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 200, send()) // within the lease: a duplicate
	now.Add(int64(4 * time.Minute))
	require.Equal(t, 200, send()) // still within the lease (4m + 2ms): a duplicate
	require.Equal(t, int32(1), runs.Load())
	now.Add(int64(time.Minute))
	require.Equal(t, 200, send()) // the lease ran out: processed again
	require.Eventually(t, func() bool { return finished.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(2), runs.Load())
	close(release) // the first run ends: its Complete leaves the second claim alone
	require.Eventually(t, func() bool { return finished.Load() == 2 }, 5*time.Second, time.Millisecond)
	now.Add(int64(30 * time.Minute))
	require.Equal(t, 200, send()) // done, within the dedupe TTL: a duplicate
	drain(t, h)
	require.Equal(t, int32(2), runs.Load())
}

// A prediction whose id is "workflow:E" and the workflow execution E are
// two deliveries, not one.
func TestPredictionAndWorkflowKeysCannotCollide(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	var keys []string
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithObserver(observe.Observer{
		Accepted: func(_ context.Context, d observe.DeliveryInfo) {
			mu.Lock()
			defer mu.Unlock()
			keys = append(keys, d.ID)
		},
	}))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, signed(workflowBody("E", "completed"))).Code)
	require.Equal(t, 200, serve(h, signed(predictionBody("workflow:E", "success"))).Code)
	require.Equal(t, 200, serve(h, signed(predictionBody("prediction:workflow:E", "success"))).Code)
	drain(t, h)
	require.Equal(t, map[string]int{"E": 1}, r.wfDone)
	require.Equal(t, map[string]int{"workflow:E": 1, "prediction:workflow:E": 1}, r.success, "callbacks get the ids as sent")
	require.Equal(t, []string{"workflow:E", "prediction:workflow:E", "prediction:prediction:workflow:E"}, keys)
}

// The id and status that route a delivery are the ones encoding/json
// reads from the same bytes.
func TestRoutingFollowsEncodingJSON(t *testing.T) {
	for name, body := range map[string]string{
		"upper-case key, later wins": `{"id":"a","ID":"b","status":"success"}`,
		"escaped key":                `{"i\u0064":"c","status":"success"}`,
		"escaped keys":               `{"\u0069\u0044":"d","st\u0061tus":"success"}`,
		"capitalised status":         `{"id":"e","Status":"success","status":"failed","STATUS":"success"}`,
		"folded long s":              `{"id":"f","ſtatus":"success"}`,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret))
			r := newRouted(h)
			require.Equal(t, 200, serve(h, signed([]byte(body))).Code)
			drain(t, h)
			var want struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &want))
			require.Equal(t, "success", want.Status)
			require.Equal(t, map[string]int{want.ID: 1}, r.success)
		})
	}
}

func TestMetricsDecodeAsEncodingJSON(t *testing.T) {
	body := []byte(`{"id":"p-m","status":"success","metrics":{"predict_time":1e400,"Cost":0.5,"cost":"x"}}`)
	h := newHandler(t, eachhook.WithSecret(secret))
	got := make(chan eachhook.Metrics, 1)
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error { got <- s.Metrics; return nil })
	require.Equal(t, 200, serve(h, signed(body)).Code)
	drain(t, h)
	var want struct {
		Metrics eachhook.Metrics `json:"metrics"`
	}
	require.Error(t, json.Unmarshal(body, &want), "encoding/json refuses the out-of-range number and the string")
	require.Equal(t, eachhook.Metrics{PredictTime: 0, Cost: 0.5}, want.Metrics)
	require.Equal(t, want.Metrics, <-got)
}

// Two X-Webhook-Signature headers, one valid and one not, get the same
// answer in either order: refused.
func TestRepeatedSignatureHeadersDoNotDependOnOrder(t *testing.T) {
	body := eachhooktest.SuccessBody("p-sig")
	valid := eachhooktest.Headers(secret, body, eachhooktest.BodyScheme, time.Now()).Get(signature.Header)
	wrong := eachhooktest.Headers("whsec_other", body, eachhooktest.BodyScheme, time.Now()).Get(signature.Header)
	h := newHandler(t, eachhook.WithSecret(secret))
	r := newRouted(h)
	for _, order := range [][]string{{valid, wrong}, {wrong, valid}, {valid, valid}} {
		req := signed(body)
		req.Header.Del(signature.Header)
		for _, v := range order {
			req.Header.Add(signature.Header, v)
		}
		require.Equal(t, http.StatusUnauthorized, serve(h, req).Code, "order %v", order)
	}
	require.Equal(t, 200, serve(h, signed(body)).Code, "one signature header is accepted")
	drain(t, h)
	require.Equal(t, map[string]int{"p-sig": 1}, r.success)
}
