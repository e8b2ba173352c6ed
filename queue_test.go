package eachhook_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// stepQueue is a Queue that holds deliveries until the test runs them with
// step, so that the Handler's side of the Queue contract can be observed.
type stepQueue struct {
	mu        sync.Mutex
	h         *eachhook.Handler
	starts    int
	shutdowns int
	startErr  error
	enqErr    error
	queued    []eachhook.Delivery
}

func (q *stepQueue) Start(_ context.Context, h *eachhook.Handler) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.starts++
	if q.startErr != nil {
		return q.startErr
	}
	q.h = h
	return nil
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
	require.Equal(t, 200, serve(h, signed(body)).Code)
	require.NoError(t, h.Start(context.Background()))
	require.Equal(t, 200, serve(h, signed(body)).Code) // duplicate: not enqueued again
	starts, _, queued := q.snapshot()
	require.Equal(t, 1, starts, "lazy start on the first delivery, then no more")
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

func TestQueueErrorsAre503AndReleaseTheClaim(t *testing.T) {
	errDown := errors.New("database down")
	for name, fail := range map[string]func(q *stepQueue, err error){
		"start":   func(q *stepQueue, err error) { q.startErr = err },
		"enqueue": func(q *stepQueue, err error) { q.enqErr = err },
	} {
		t.Run(name, func(t *testing.T) {
			q := &stepQueue{}
			q.set(func(q *stepQueue) { fail(q, errDown) })
			h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(q))
			h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
			require.ErrorIs(t, h.Start(context.Background()), map[string]error{"start": errDown, "enqueue": nil}[name])

			w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1"))
			require.Equal(t, 503, w.Code)
			require.Equal(t, "10", w.Header().Get("Retry-After"))
			q.set(func(q *stepQueue) { fail(q, nil) })
			// The claim was released: the sender's retry is queued.
			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
			_, _, queued := q.snapshot()
			require.Len(t, queued, 1)
			require.Equal(t, "p1", queued[0].ID)
		})
	}
}

func TestRunCallback(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	ctx := context.Background()
	ok := eachhook.Delivery{ID: "ok", Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody("ok")}
	failed := eachhook.Delivery{ID: "f", Status: eachhook.StatusFailed, Body: eachhooktest.FailedBody("f")}

	require.ErrorIs(t, h.RunCallback(ctx, ok, 1), eachhook.ErrNoCallback)

	errDownstream := errors.New("downstream")
	var seen []int
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		seen = append(seen, eachhook.AttemptFromContext(ctx))
		switch eachhook.AttemptFromContext(ctx) {
		case 1:
			return errDownstream
		case 2:
			panic("boom")
		}
		require.Equal(t, "ok", s.ID)
		return nil
	})
	require.ErrorIs(t, h.RunCallback(ctx, ok, 1), errDownstream)
	require.ErrorIs(t, h.RunCallback(ctx, ok, 2), eachhook.ErrCallbackPanic)
	require.NoError(t, h.RunCallback(ctx, ok, 7))
	require.Equal(t, []int{1, 2, 7}, seen)

	require.ErrorIs(t, h.RunCallback(ctx, failed, 1), eachhook.ErrNoCallback)
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		require.Equal(t, eachhooktest.SeedLogs, f.Logs)
		return nil
	})
	require.NoError(t, h.RunCallback(ctx, failed, 1))
	require.ErrorIs(t, h.RunCallback(ctx, eachhook.Delivery{ID: "x", Status: "starting", Body: []byte(`{"id":"x","status":"starting"}`)}, 1), eachhook.ErrNoCallback)
}

func TestGiveUpReleasesAndReports(t *testing.T) {
	mem := eachhook.NewMemoryStore(0, nil)
	defer mem.Close()
	var reported []error
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(mem),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { reported = append(reported, err) }))
	ctx := context.Background()
	claimed, err := mem.Claim(ctx, "p1", time.Hour)
	require.NoError(t, err)
	require.True(t, claimed)

	errLast := errors.New("last")
	h.GiveUp(ctx, eachhook.Delivery{ID: "p1", Status: eachhook.StatusSuccess}, 10, errLast)
	require.Len(t, reported, 1)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, eachhook.CallbackError{ID: "p1", Status: eachhook.StatusSuccess, Attempts: 10, Err: errLast}, *ce)
	require.ErrorIs(t, reported[0], errLast)
	claimed, err = mem.Claim(ctx, "p1", time.Hour)
	require.NoError(t, err)
	require.True(t, claimed, "GiveUp must release the claim")
}
