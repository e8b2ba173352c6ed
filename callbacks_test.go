package eachhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
)

func TestWithCallbackTimeoutInvalid(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithCallbackTimeout(d))
		require.ErrorIs(t, err, eachhook.ErrInvalidOption)
	}
}

// A callback that ignores its context runs its attempts one at a time: the
// retry starts only once the attempt past its timeout returned. With one
// worker, that stuck callback reaches the bound: deliveries are answered
// 503 with Retry-After and Health 503 naming stuck callbacks, until it
// returns.
func TestStuckCallbackRunsOneAttemptAtATime(t *testing.T) {
	var clock clockAt
	clock.set(time.Now())
	pastDeadline := make(chan struct{})
	release := make(chan struct{})
	secondStarted := make(chan struct{})
	finished := make(chan struct{}, 4)
	var running, most, attempts atomic.Int32
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithClock(clock.now),
		eachhook.WithCallbackTimeout(20*time.Millisecond), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithObserver(observe.Observer{CallbackFinished: func(context.Context, observe.CallbackRun) { finished <- struct{}{} }}))
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID != "hangs" {
			return nil
		}
		n := running.Add(1)
		defer running.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		if attempts.Add(1) == 1 {
			<-ctx.Done()
			close(pastDeadline)
			<-release // ignores its context
			return nil
		}
		close(secondStarted)
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "hangs")).Code)
	<-pastDeadline
	clock.set(clock.now().Add(time.Second)) // by the Handler's clock too

	w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "next"))
	require.Equal(t, 503, w.Code, "the one worker is stuck: the bound is reached")
	require.Equal(t, "10", w.Header().Get("Retry-After"))
	hw := serve(h.Health(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, 503, hw.Code)
	require.JSONEq(t, `{"status":"unavailable","reason":"callbacks stuck past their timeout"}`, hw.Body.String())
	select {
	case <-secondStarted:
		t.Fatal("the retry started while the first attempt still ran")
	case <-time.After(100 * time.Millisecond): // a retry that did not wait would have started by now
	}

	close(release)
	<-finished // the first attempt: it overran
	<-secondStarted
	<-finished
	require.Equal(t, 200, serve(h.Health(), httptest.NewRequest(http.MethodGet, "/healthz", nil)).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "next")).Code)
	drain(t, h)
	require.Equal(t, int32(2), attempts.Load())
	require.Equal(t, int32(1), most.Load(), "never two attempts at once")
}

// A callback that returns nil only after its timeout overran: a failure.
func TestCallbackReturningAfterTimeoutFails(t *testing.T) {
	errs := make(chan error, 4)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithCallbackTimeout(20*time.Millisecond), eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { errs <- err }))
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		<-ctx.Done()
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "late")).Code)
	drain(t, h)
	require.Len(t, errs, 1)
	require.ErrorIs(t, <-errs, context.DeadlineExceeded)
}

// runtime.Goexit in a callback (t.FailNow does it) is a failed attempt;
// the worker survives and runs what is queued behind it.
func TestGoexitIsAFailedAttempt(t *testing.T) {
	errs := make(chan error, 4)
	done := make(chan string, 4)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { errs <- err }))
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "exits" {
			runtime.Goexit()
		}
		done <- s.ID
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "exits")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "after")).Code)
	drain(t, h)
	require.Equal(t, "after", <-done)
	require.Len(t, errs, 1)
	err := <-errs
	require.ErrorIs(t, err, eachhook.ErrCallbackPanic)
	var ce *eachhook.CallbackError
	require.True(t, errors.As(err, &ce))
	require.Equal(t, "exits", ce.ID)
}

// The observer gets, at each callback start, how long the delivery waited
// since it was accepted, read from the Handler's clock.
func TestObserverReportsQueueWait(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var waits []time.Duration
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock), eachhook.WithTolerance(time.Hour*24*365*10), eachhook.WithDedupeTTL(time.Hour*24*365*10),
		eachhook.WithObserver(observe.Observer{
			CallbackStarted: func(ctx context.Context, run observe.CallbackRun) context.Context {
				mu.Lock()
				waits = append(waits, run.Waited)
				mu.Unlock()
				return ctx
			},
		}))
	gate := make(chan struct{})
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { <-gate; return nil })
	// Hold the workers so that the fifth delivery waits, then move the clock.
	require.NoError(t, h.Start(context.Background()))
	for i := range 4 { // the 4 default workers
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "busy-"+string(rune('a'+i)))).Code)
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(waits) == 4 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "waits")).Code)
	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	close(gate)
	drain(t, h)
	require.Equal(t, []time.Duration{0, 0, 0, 0, 3 * time.Second}, waits)
}

// A queue that does not say when it accepted a delivery (AcceptedAt zero)
// gets its wait reported as observe.WaitUnknown, never as 0.
func TestObserverReportsAnUnknownWait(t *testing.T) {
	var waits []time.Duration
	q := &stepQueue{}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithQueue(q), eachhook.WithObserver(observe.Observer{
		CallbackStarted: func(ctx context.Context, run observe.CallbackRun) context.Context {
			waits = append(waits, run.Waited)
			return ctx
		},
	}))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	require.NoError(t, h.Start(context.Background()))
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p1")).Code)
	_, _, queued := q.snapshot()
	require.Len(t, queued, 1)
	d := queued[0]
	require.False(t, d.AcceptedAt.IsZero())
	d.AcceptedAt = time.Time{}
	require.NoError(t, q.runner().Run(context.Background(), d, 1))
	require.Equal(t, []time.Duration{observe.WaitUnknown}, waits)
}
