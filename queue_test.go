package eachhook_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/queuetest"
	"github.com/stretchr/testify/require"
)

// stepQueue is a Queue that holds deliveries until the test runs them with
// step, so that the Handler's side of the Queue contract can be observed.
type stepQueue struct {
	mu        sync.Mutex
	r         eachhook.Runner
	starts    int
	shutdowns int
	startErr  error
	enqErr    error
	queued    []eachhook.Delivery
}

func (q *stepQueue) Start(_ context.Context, r eachhook.Runner) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.starts++
	if q.startErr != nil {
		return q.startErr
	}
	q.r = r
	return nil
}

func (q *stepQueue) runner() eachhook.Runner {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.r
}

func (q *stepQueue) Enqueue(_ context.Context, d eachhook.Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.enqErr != nil {
		return q.enqErr
	}
	q.queued = append(q.queued, d)
	return nil
}

func (q *stepQueue) Shutdown(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdowns++
	return nil
}

func (q *stepQueue) set(fn func(q *stepQueue)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fn(q)
}

func (q *stepQueue) snapshot() (starts, shutdowns int, queued []eachhook.Delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.starts, q.shutdowns, append([]eachhook.Delivery(nil), q.queued...)
}

func TestWithQueueNilIsInvalid(t *testing.T) {
	_, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithQueue(nil))
	require.ErrorIs(t, err, eachhook.ErrInvalidOption)
}

func TestQueueLifecycle(t *testing.T) {
	q := &stepQueue{}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q))
	require.NoError(t, err)
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })

	starts, _, _ := q.snapshot()
	require.Equal(t, 0, starts, "New must not start the queue")
	body := eachhooktest.SuccessBody("p1")
	// A queue of its own is never started by a request: 503 until Start.
	w := serve(h, signed(body))
	require.Equal(t, 503, w.Code)
	require.Equal(t, "10", w.Header().Get("Retry-After"))
	starts, _, queued := q.snapshot()
	require.Equal(t, 0, starts)
	require.Empty(t, queued)

	require.NoError(t, h.Start(context.Background()))
	require.NoError(t, h.Start(context.Background()))
	require.Equal(t, 200, serve(h, signed(body)).Code)
	require.Equal(t, 200, serve(h, signed(body)).Code) // duplicate: not enqueued again
	starts, _, queued = q.snapshot()
	require.Equal(t, 1, starts, "started once by Start")
	require.Len(t, queued, 1)
	require.False(t, queued[0].AcceptedAt.IsZero(), "the Handler says when it accepted the delivery")
	queued[0].AcceptedAt = time.Time{}
	require.NotEmpty(t, queued[0].Claim, "a delivery carries its claim's token")
	queued[0].Claim = ""
	require.Equal(t, []eachhook.Delivery{{ID: "p1", Status: eachhook.StatusSuccess, Body: body}}, queued)

	require.NoError(t, h.Shutdown(context.Background()))
	require.NoError(t, h.Shutdown(context.Background()))
	_, shutdowns, _ := q.snapshot()
	require.Equal(t, 2, shutdowns)
	require.ErrorIs(t, h.Start(context.Background()), eachhook.ErrShutdown)
	require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p2")).Code)
	_, _, queued = q.snapshot()
	require.Len(t, queued, 1)
}

func TestRegistrationAfterServingPanics(t *testing.T) {
	noop := func(context.Context, *eachhook.Success) error { return nil }
	t.Run("after Start", func(t *testing.T) {
		h := newHandler(t, eachhook.WithSecret(secret))
		require.NoError(t, h.Start(context.Background()))
		require.PanicsWithValue(t, "eachhook: OnSuccess called after the Handler started serving: register every callback before Handler.Start and the first request",
			func() { h.OnSuccess(noop) })
	})
	t.Run("after the first request", func(t *testing.T) {
		h := newHandler(t, eachhook.WithSecret(secret))
		h.OnSuccess(noop)
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
		require.Panics(t, func() { h.OnFailed(func(context.Context, *eachhook.Failure) error { return nil }) })
		require.Panics(t, func() { h.OnWorkflowCompleted(nil) })
	})
	t.Run("after a request refused before Start", func(t *testing.T) {
		h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(&stepQueue{}))
		require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
		require.Panics(t, func() { h.OnSuccess(noop) })
	})
}

func TestQueueErrorsAre503AndReleaseTheClaim(t *testing.T) {
	errDown := errors.New("database down")
	t.Run("start", func(t *testing.T) {
		q := &stepQueue{}
		q.set(func(q *stepQueue) { q.startErr = errDown })
		h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(q))
		h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
		require.ErrorIs(t, h.Start(context.Background()), errDown)
		require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
		q.set(func(q *stepQueue) { q.startErr = nil })
		require.NoError(t, h.Start(context.Background()), "a later Start tries again")
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
		_, _, queued := q.snapshot()
		require.Len(t, queued, 1)
	})
	t.Run("enqueue", func(t *testing.T) {
		q := &stepQueue{}
		q.set(func(q *stepQueue) { q.enqErr = errDown })
		h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(q))
		h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
		require.NoError(t, h.Start(context.Background()))
		w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1"))
		require.Equal(t, 503, w.Code)
		require.Equal(t, "10", w.Header().Get("Retry-After"))
		code, body := healthOf(h)
		require.Equal(t, 503, code)
		require.JSONEq(t, `{"status":"unavailable","reason":"queue failed"}`, body)
		q.set(func(q *stepQueue) { q.enqErr = nil })
		// The claim was released: the sender's retry is queued.
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
		code, _ = healthOf(h)
		require.Equal(t, 200, code, "an insert succeeded since")
		_, _, queued := q.snapshot()
		require.Len(t, queued, 1)
		require.Equal(t, "p1", queued[0].ID)
	})
}

func TestRunnerRun(t *testing.T) {
	ctx := context.Background()
	ok := eachhook.Delivery{ID: "ok", Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody("ok")}
	failed := eachhook.Delivery{ID: "f", Status: eachhook.StatusFailed, Body: eachhooktest.FailedBody("f")}

	errDownstream := errors.New("downstream")
	var seen []int
	q := &stepQueue{}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(q))
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		seen = append(seen, eachhook.AttemptFromContext(ctx))
		switch eachhook.AttemptFromContext(ctx) {
		case 1:
			return errDownstream
		case 2:
			panic("boom")
		case 3:
			runtime.Goexit() // on its own goroutine: Run's caller goes on
		}
		require.Equal(t, "ok", s.ID)
		return nil
	})
	require.NoError(t, h.Start(ctx))
	r := q.runner()
	require.ErrorIs(t, r.Run(ctx, ok, 1), errDownstream)
	require.ErrorIs(t, r.Run(ctx, ok, 2), eachhook.ErrCallbackPanic)
	require.ErrorIs(t, r.Run(ctx, ok, 3), eachhook.ErrCallbackPanic)
	require.NoError(t, r.Run(ctx, ok, 7))
	require.Equal(t, []int{1, 2, 3, 7}, seen)

	// No callback for the status: an error, so that the queue keeps it.
	err := r.Run(ctx, failed, 1)
	require.Error(t, err)
	require.NotErrorIs(t, err, eachhook.ErrCallbackPanic)
	require.Error(t, r.Run(ctx, eachhook.Delivery{ID: "x", Status: "starting", Body: []byte(`{"id":"x","status":"starting"}`)}, 1))
}

func TestRunnerGiveUpReleasesTheClaimAndReports(t *testing.T) {
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	var reported []error
	q := &stepQueue{}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(mem), eachhook.WithQueue(q),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { reported = append(reported, err) }))
	ctx := context.Background()
	require.NoError(t, h.Start(ctx))
	token, claimed, err := mem.Claim(ctx, "p1", time.Hour)
	require.NoError(t, err)
	require.True(t, claimed)

	errLast := errors.New("last")
	q.runner().GiveUp(ctx, eachhook.Delivery{ID: "p1", Status: eachhook.StatusSuccess, Claim: token}, 10, errLast)
	require.Len(t, reported, 1)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, eachhook.CallbackError{ID: "p1", Status: eachhook.StatusSuccess, Attempts: 10, Err: errLast}, *ce)
	require.ErrorIs(t, reported[0], errLast)
	_, claimed, err = mem.Claim(ctx, "p1", time.Hour)
	require.NoError(t, err)
	require.True(t, claimed, "GiveUp releases the dead letter's id: a resend runs it")
}

// TestMemQueueConformance runs the Queue conformance suite on the
// in-memory queue: it drains on Shutdown.
func TestMemQueueConformance(t *testing.T) {
	queuetest.Run(t, queuetest.Harness{
		New:         func(*testing.T) eachhook.Queue { return eachhook.NewMemQueueForTest(2, 64, 3) },
		MaxAttempts: 3,
	})
}
