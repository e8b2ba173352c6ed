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
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
)

func TestWithCallbackTimeoutInvalid(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithCallbackTimeout(d))
		require.ErrorIs(t, err, eachhook.ErrInvalidOption)
	}
}

// A callback that ignores its context is cut at the timeout: its attempt
// fails with context.DeadlineExceeded, it is retried, and the one worker
// goes on with the next delivery while the hung callback ends on its own.
func TestHangingCallbackCutAtTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []string
	var reported []error
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1),
		eachhook.WithCallbackTimeout(50*time.Millisecond), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithErrorHandler(func(_ context.Context, err error) {
			mu.Lock()
			reported = append(reported, err)
			mu.Unlock()
		}))
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		mu.Lock()
		ran = append(ran, s.ID)
		mu.Unlock()
		if s.ID == "hangs" {
			<-release // ignores ctx
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "hangs")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "next")).Code)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 3 && len(reported) == 1
	}, 5*time.Second, time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"hangs", "hangs", "next"}, ran, "two attempts of the hung one, then the next delivery")
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, "hangs", ce.ID)
	require.Equal(t, 2, ce.Attempts)
	require.ErrorIs(t, reported[0], context.DeadlineExceeded)
	mu.Unlock()
	close(release)
	drain(t, h)
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
