package eachloop_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/eachlooptest"
	"github.com/stretchr/testify/require"
)

const grace = eachloop.DefaultGrace

func TestWebhookArrivesNoPoll(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	require.Equal(t, http.StatusOK, r.deliver(id, r.secret(id), eachhooktest.SuccessBody(id)))
	require.Equal(t, id, r.callback())
	requireSettled(t, r)

	r.clock.StepUntil(t, t0.Add(grace+10*eachloop.DefaultScanInterval))
	require.Empty(t, r.gets(id), "an accepted webhook stops the polling")
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f})
}

func TestWebhookNeverArrivesPollDispatchesOnce(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.OK(`{"id": "pred-1", "status": "processing"}`), eachlooptest.Success(id))

	// Step only until the poll that finds the outcome, then wait for the
	// callback in real time. Stepping while the callback runs on a worker
	// moves the fake clock a scan interval per wake-up, hours in a few
	// milliseconds, past the secret's retention (24h): the late delivery
	// was then answered 401, as it rightly is a day after the outcome.
	r.stepUntilPolled(id, 2)
	require.Equal(t, id, r.callback())
	require.Equal(t, []time.Duration{grace, grace + 30*time.Second}, r.gets(id))
	requireSettled(t, r)

	// The sender's late delivery is a duplicate: acknowledged, no callback.
	require.Equal(t, http.StatusOK, r.deliver(id, r.secret(id), eachhooktest.SuccessBody(id)))
	r.clock.StepUntil(t, r.clock.Now().Add(time.Hour))
	require.Len(t, r.gets(id), 2, "no poll after the outcome")
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f})

	got := r.calls.successes[0]
	u, err := got.URL()
	require.NoError(t, err)
	require.Equal(t, eachhooktest.SeedOutput, u)
	require.Equal(t, eachhook.Metrics{PredictTime: 12.5, Cost: 0.05}, got.Metrics)
	require.JSONEq(t, `{"prompt": "a lighthouse"}`, string(got.Input))
	require.Equal(t, `"success"`, jsonField(t, got.Raw, "polled_status"))
}

func TestWebhookArrivesWhilePollInFlight(t *testing.T) {
	r := newRig(t, rigConfig{})
	inGet, release := make(chan struct{}), make(chan struct{})
	r.api.OnGet(func(string) {
		inGet <- struct{}{}
		<-release
	})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.Success(id))

	eachlooptest.StepUntilReceive(t, r.clock, inGet)
	require.Equal(t, http.StatusOK, r.deliver(id, r.secret(id), eachhooktest.SuccessBody(id)))
	require.Equal(t, id, r.callback())
	close(release) // the poll now answers "success" too

	r.clock.Step(t) // the reconciler sleeps again: the poll has been handled
	r.clock.StepUntil(t, r.clock.Now().Add(time.Hour))
	require.Len(t, r.gets(id), 1)
	requireSettled(t, r)
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f}, "exactly one callback")
	require.Empty(t, jsonField(t, r.calls.successes[0].Raw, "polled_status"), "the webhook's, not the poll's")
}

func TestPollBacksOffOn429And5xx(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id,
		eachlooptest.Answer{Status: 429, Header: http.Header{"Retry-After": {"120"}}, Body: `{"error": "Rate limit exceeded. Please retry after 120 seconds."}`},
		eachlooptest.Answer{Status: 500, Body: `{"error": "Internal server error"}`},
		eachlooptest.Answer{Status: 503, Header: http.Header{"Retry-After": {"1"}}, Body: `{"error": "Service unavailable"}`},
		eachlooptest.Success(id),
	)
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	require.Equal(t, []time.Duration{
		grace,                 // 429, Retry-After 120s is longer than the 30s wait
		grace + 2*time.Minute, // 500: wait = time since the first poll = 2m
		grace + 4*time.Minute, // 503, Retry-After 1s is shorter than the 4m wait
		grace + 8*time.Minute, // success
	}, r.gets(id))
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f})
}

func TestDeliverySignedWithAnotherPredictionsSecretIsRefused(t *testing.T) {
	r := newRig(t, rigConfig{})
	a, b := r.create(), r.create()
	require.NotEqual(t, r.secret(a), r.secret(b))

	body := eachhooktest.SuccessBody(a)
	require.Equal(t, http.StatusUnauthorized, r.deliver(a, r.secret(b), body))
	require.Equal(t, http.StatusUnauthorized, r.deliver(a, "whsec_guess", body))
	require.Equal(t, http.StatusUnauthorized, r.deliver(a, r.secret(b), eachhooktest.FailedBody("unknown-id")))
	require.Len(t, r.pending(), 2)
	require.Equal(t, http.StatusOK, r.deliver(a, r.secret(a), body))
	require.Equal(t, a, r.callback())
	require.Eventually(t, func() bool { return len(r.pending()) == 1 }, eachlooptest.Guard, time.Millisecond)
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f})
}

func TestPolledFailureCarriesCodeAndMessage(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.OK(`{"id": "pred-1", "status": "error", "input": {"prompt": "a lighthouse"},
		"output": {"error_code": "PROVIDER_RATE_LIMIT", "error_message": "The provider is rate limiting requests"}, "logs": null}`))
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{0, 1}, [2]int{s, f})
	got := r.calls.failures[0]
	require.Equal(t, "pred-1", got.ID)
	require.Equal(t, "PROVIDER_RATE_LIMIT", got.Code)
	require.Equal(t, "The provider is rate limiting requests", got.Logs)
	require.JSONEq(t, `{"error_code": "PROVIDER_RATE_LIMIT", "error_message": "The provider is rate limiting requests"}`, string(got.Output))
	require.JSONEq(t, `{"error_code": "PROVIDER_RATE_LIMIT", "error_message": "The provider is rate limiting requests"}`, jsonField(t, got.Raw, "error"))
	require.Equal(t, `"failed"`, jsonField(t, got.Raw, "status"))
	require.Equal(t, `"error"`, jsonField(t, got.Raw, "polled_status"))
}

func TestPolledLegacyFailureKeepsItsLogs(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.OK(`{"id": "pred-1", "status": "error", "output": null, "logs": "Error: Model timeout after 30s"}`))
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	r.stop()
	got := r.calls.failures[0]
	require.Equal(t, "Error: Model timeout after 30s", got.Logs)
	require.Empty(t, got.Code)
	require.Empty(t, jsonField(t, got.Raw, "error"))
}

func TestCancelled(t *testing.T) {
	cancelled := eachlooptest.OK(`{"id": "pred-1", "status": "cancelled", "output": null}`)
	t.Run("dispatched to OnFailed", func(t *testing.T) {
		r := newRig(t, rigConfig{})
		r.start()
		id := r.create()
		r.api.Script(id, cancelled)
		require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
		r.stop()
		got := r.calls.failures[0]
		require.JSONEq(t, `{"error_code": "CANCELLED", "error_message": "the prediction was cancelled"}`, jsonField(t, got.Raw, "error"))
		require.Equal(t, eachhook.CodeCancelled, got.Code)
		require.Equal(t, "the prediction was cancelled", got.Logs)
		require.Equal(t, `"cancelled"`, jsonField(t, got.Raw, "polled_status"))
	})
	t.Run("dropped", func(t *testing.T) {
		r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithDropCancelled()}})
		r.start()
		id := r.create()
		r.api.Script(id, cancelled)
		r.clock.StepUntil(t, t0.Add(2*time.Hour))
		require.Equal(t, []time.Duration{grace}, r.gets(id))
		requireSettled(t, r)
		r.stop()
		s, f := r.calls.counts()
		require.Equal(t, [2]int{0, 0}, [2]int{s, f})
	})
}

func TestGivesUpAtTheHorizon(t *testing.T) {
	r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithHorizon(time.Hour)}})
	r.start()
	id := r.create()
	err := eachlooptest.StepUntilReceive(t, r.clock, r.errs)
	require.ErrorIs(t, err, eachloop.ErrGaveUp)
	var gu *eachloop.GiveUpError
	require.ErrorAs(t, err, &gu)
	require.Equal(t, &eachloop.GiveUpError{ID: id, CreatedAt: t0, Horizon: time.Hour, Status: eachlabs.StatusProcessing}, gu)
	require.EqualError(t, err, `eachloop: no outcome for prediction pred-1 within 1h0m0s of its creation (last status "processing")`)
	m := time.Minute
	require.Equal(t, []time.Duration{
		15 * m, 15*m + 30*time.Second, 16 * m, 17 * m, 19 * m, 23 * m, 31 * m, 41 * m, 51 * m,
		60 * m, // the last poll, at the horizon
	}, r.gets(id))
	requireSettled(t, r)

	r.clock.StepUntil(t, t0.Add(3*time.Hour))
	require.Len(t, r.gets(id), 10, "no poll after giving up")
	// The secret outlives the give-up: a late webhook is still accepted.
	require.Equal(t, http.StatusOK, r.deliver(id, r.secret(id), eachhooktest.SuccessBody(id)))
	require.Equal(t, id, r.callback())
}

func TestGiveUpReportsTheLastError(t *testing.T) {
	r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithHorizon(20 * time.Minute)}})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.Answer{Status: 404, Body: `{"error": "Prediction not found"}`})
	err := eachlooptest.StepUntilReceive(t, r.clock, r.errs)
	require.ErrorIs(t, err, eachloop.ErrGaveUp)
	require.ErrorIs(t, err, eachlabs.ErrNotFound)
}

func TestFailedCallbackBecomesDeadLetterAndIsNotPolled(t *testing.T) {
	r := newRig(t, rigConfig{noCalls: true})
	var runs atomic.Int32
	r.h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		r.calls.done <- s.ID
		runs.Add(1)
		return errors.New("database down")
	})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.Success(id))
	require.Equal(t, http.StatusOK, r.deliver(id, r.secret(id), eachhooktest.SuccessBody(id)))
	require.Equal(t, id, r.callback())
	var cerr *eachhook.CallbackError
	require.ErrorAs(t, <-r.errs, &cerr)
	// The Handler kept the outcome as a dead letter: it is done for the
	// reconciler, whose poll would only find a duplicate.
	require.Eventually(t, func() bool { return len(r.pending()) == 0 }, eachlooptest.Guard, time.Millisecond,
		"a dead letter is done for the reconciler")
	r.clock.StepUntil(t, t0.Add(2*grace))
	require.Empty(t, r.gets(id))
	r.stop()
	require.Equal(t, int32(1), runs.Load())
}

func TestCreate(t *testing.T) {
	r := newRig(t, rigConfig{})
	a, b := r.create(), r.create()
	require.Equal(t, "pred-1", a)
	require.Equal(t, "pred-2", b)
	for _, id := range []string{a, b} {
		req := r.api.Request(id)
		require.Equal(t, r.receiver.URL+"/webhooks/prediction", req.WebhookURL)
		raw, err := hex.DecodeString(req.WebhookSecret)
		require.NoError(t, err)
		require.Len(t, raw, 32)
		got, err := r.exp.Secrets(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, []string{req.WebhookSecret}, got)
	}
	require.Equal(t, []eachloop.Expectation{
		{ID: a, Secret: r.secret(a), CreatedAt: t0},
		{ID: b, Secret: r.secret(b), CreatedAt: t0},
	}, r.pending())

	// A secret and a URL of the caller's are kept.
	id, err := r.loop.Create(t.Context(), eachlabs.PredictionRequest{Model: "m", Input: map[string]any{}, WebhookSecret: "mine", WebhookURL: "https://other.example/hook"})
	require.NoError(t, err)
	require.Equal(t, "mine", r.secret(id))
	require.Equal(t, "https://other.example/hook", r.api.Request(id).WebhookURL)

	// A refused creation records nothing.
	r.api.Refuse(true)
	_, err = r.loop.Create(t.Context(), eachlabs.PredictionRequest{Model: "m", Input: map[string]any{}})
	require.ErrorIs(t, err, eachlabs.ErrBadRequest)
	require.Len(t, r.pending(), 3)
}

// brokenExpectations fails every Expect.
type brokenExpectations struct{ eachloop.Expectations }

var errDown = errors.New("expectations down")

func (brokenExpectations) Expect(context.Context, eachloop.Expectation) error { return errDown }

func TestCreateNotRecorded(t *testing.T) {
	r := newRig(t, rigConfig{exp: brokenExpectations{newMemoryExpectations(t)}})
	id, err := r.loop.Create(t.Context(), eachlabs.PredictionRequest{Model: "m", Input: map[string]any{}})
	require.Equal(t, "pred-1", id)
	require.ErrorIs(t, err, eachloop.ErrNotRecorded)
	require.ErrorIs(t, err, errDown)
}

func TestWebhookBeforeCreateReturns(t *testing.T) {
	r := newRig(t, rigConfig{})
	status := make(chan int, 1)
	// The sender delivers before the API has even answered the creation.
	r.api.OnCreate(func(id string, req eachlabs.PredictionRequest) {
		status <- r.deliver(id, req.WebhookSecret, eachhooktest.SuccessBody(id))
	})
	r.api.Script("pred-1", eachlooptest.Success("pred-1"))
	r.start()
	id := r.create()
	require.Equal(t, http.StatusOK, <-status)
	require.Equal(t, id, r.callback())
	// The outcome may finish before the expectation is recorded: then the
	// next scan (or a poll that finds a duplicate) marks it done, with at
	// most one poll.
	r.clock.StepUntil(t, t0.Add(2*grace))
	require.LessOrEqual(t, len(r.gets(id)), 1)
	requireSettled(t, r)
	r.stop()
	s, _ := r.calls.counts()
	require.Equal(t, 1, s)
}

func TestNewValidates(t *testing.T) {
	c, err := eachlabs.NewClient("k")
	require.NoError(t, err)
	exp := newMemoryExpectations(t)
	const u = "https://example.com/hook"
	for name, tc := range map[string]struct {
		client *eachlabs.Client
		exp    eachloop.Expectations
		url    string
		opts   []eachloop.Option
	}{
		"nil client":          {nil, exp, u, nil},
		"nil expectations":    {c, nil, u, nil},
		"relative URL":        {c, exp, "/hook", nil},
		"no URL":              {c, exp, "", nil},
		"negative grace":      {c, exp, u, []eachloop.Option{eachloop.WithGrace(-1)}},
		"horizon below grace": {c, exp, u, []eachloop.Option{eachloop.WithGrace(time.Hour), eachloop.WithHorizon(time.Hour)}},
		"zero wait":           {c, exp, u, []eachloop.Option{eachloop.WithPollWait(0, time.Minute)}},
		"max below min":       {c, exp, u, []eachloop.Option{eachloop.WithPollWait(time.Minute, time.Second)}},
		"zero scan":           {c, exp, u, []eachloop.Option{eachloop.WithScanInterval(0)}},
		"zero concurrency":    {c, exp, u, []eachloop.Option{eachloop.WithConcurrency(0)}},
		"nil clock":           {c, exp, u, []eachloop.Option{eachloop.WithClock(nil, nil)}},
		"nil logger":          {c, exp, u, []eachloop.Option{eachloop.WithLogger(nil)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := eachloop.New(tc.client, tc.exp, tc.url, tc.opts...)
			require.ErrorIs(t, err, eachloop.ErrInvalidOption)
		})
	}
	_, err = eachloop.New(c, exp, u)
	require.NoError(t, err)
}

func TestRunOnceAtATime(t *testing.T) {
	r := newRig(t, rigConfig{})
	require.Error(t, r.loop.Run(t.Context(), nil))
	r.start()
	r.clock.Step(t) // the first Run is in its loop
	require.ErrorIs(t, r.loop.Run(t.Context(), r.h), eachloop.ErrRunning)
}

// flakyPending fails the first Pending.
type flakyPending struct {
	eachloop.Expectations
	failed atomic.Bool
}

func (f *flakyPending) Pending(ctx context.Context, before time.Time) ([]eachloop.Expectation, error) {
	if f.failed.CompareAndSwap(false, true) {
		return nil, errDown
	}
	return f.Expectations.Pending(ctx, before)
}

func TestScanFailureIsRetriedAtTheNextScan(t *testing.T) {
	r := newRig(t, rigConfig{
		exp:      &flakyPending{Expectations: newMemoryExpectations(t)},
		loopOpts: []eachloop.Option{eachloop.WithGrace(0)},
	})
	id := r.create()
	r.api.Script(id, eachlooptest.Success(id))
	r.start() // the first scan, due at once, fails
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	require.Equal(t, []time.Duration{eachloop.DefaultScanInterval}, r.gets(id))
}

// An unexpected member of the API's answer does not change how the
// polled outcome is routed, and the expectation's id is the one used.
func TestPolledAnswerKeepsOnlyTheDocumentedMembers(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.OK(`{"id": "another-id", "status": "success", "output": "https://x/y.png",
		"workflow_id": "wf-1", "exec_id": "ex-1", "extra": true}`))
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	r.stop()
	got := r.calls.successes[0]
	require.Equal(t, id, got.ID)
	require.JSONEq(t, `{"id": "pred-1", "status": "success", "polled_status": "success", "output": "https://x/y.png"}`, string(got.Raw))
}

// requireSettled waits until no expectation is pending: the tracking
// store marks one done when its callback has returned, just after the
// callback's signal reached the test.
func requireSettled(t *testing.T, r *rig) {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.pending()) == 0 }, eachlooptest.Guard, time.Millisecond,
		"an expectation is still pending: %v", r.pending())
}

// The webhook was accepted by a process that died before its callback
// finished: its claim stands, never completed. The reconciler's poll finds
// a duplicate while the claim's lease lasts, and dispatches the outcome
// once the lease ran out; the callback then runs once.
func TestCrashAfterAcceptIsDispatchedAfterTheLease(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.start()
	id := r.create()
	r.api.Script(id, eachlooptest.Success(id))
	const lease = 300 * time.Millisecond
	_, ok, err := r.store.Claim(t.Context(), id, lease) // the process that died
	require.NoError(t, err)
	require.True(t, ok)

	r.clock.StepUntil(t, t0.Add(grace+time.Second))
	polls := len(r.gets(id))
	require.GreaterOrEqual(t, polls, 1)
	require.Len(t, r.pending(), 1, "a duplicate of an unfinished claim stays pending")
	s, f := r.calls.counts()
	require.Zero(t, s+f, "the polls within the lease were duplicates")
	time.Sleep(2 * lease) // the dead process's lease runs out
	require.Equal(t, id, eachlooptest.StepUntilReceive(t, r.clock, r.calls.done))
	requireSettled(t, r)
	done := len(r.gets(id))
	require.Greater(t, done, polls)
	r.clock.StepUntil(t, r.clock.Now().Add(time.Hour))
	require.Len(t, r.gets(id), done, "no poll once the callback finished")
	r.stop()
	s, f = r.calls.counts()
	require.Equal(t, [2]int{1, 0}, [2]int{s, f})
}

// pingStore is a Store whose Ping fails while down is set.
type pingStore struct {
	eachhook.Store
	down atomic.Bool
}

func (s *pingStore) Ping(context.Context) error {
	if s.down.Load() {
		return errors.New("store down")
	}
	return nil
}

// The tracking store passes the inner store's Ping on, so that the
// Handler's health endpoint tells an unreachable store.
func TestTrackingStorePings(t *testing.T) {
	r := newRig(t, rigConfig{})
	inner := &pingStore{Store: r.store}
	h, err := eachhook.New(eachhook.WithSecret("x"), eachhook.WithStore(r.loop.Store(inner)), eachhook.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Shutdown(context.Background())) })
	require.NoError(t, h.Start(t.Context()))
	health := func() int {
		w := httptest.NewRecorder()
		h.Health().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code
	}
	require.Equal(t, http.StatusOK, health())
	inner.down.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, health())
	_, ok := r.loop.Store(r.store).(eachhook.Pinger)
	require.True(t, ok)
}
