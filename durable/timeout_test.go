package durable_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// The job timeout is the Handler's callback timeout, one setting: a
// callback that waits for its context is cancelled after
// WithCallbackTimeout, and the attempt counts as failed.
func TestJobTimeoutIsTheCallbackTimeout(t *testing.T) {
	ctx := context.Background()
	q, err := durable.OpenSQLite(ctx, t.TempDir()+"/q.db", durable.Config{Logger: quiet, MaxAttempts: 2, RetryPolicy: fastRetry{}, RescueStuckJobsAfter: time.Minute})
	require.NoError(t, err)
	var attempts atomic.Int32
	gaveUp := make(chan error, 1)
	var waited atomic.Int64
	h := newHandler(t, q, func(h *eachhook.Handler) {
		h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			attempts.Add(1)
			t0 := time.Now()
			<-ctx.Done() // only the timeout ends it
			waited.Store(int64(time.Since(t0)))
			return ctx.Err()
		})
	}, eachhook.WithCallbackTimeout(100*time.Millisecond),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { gaveUp <- err }))
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "times-out")))
	select {
	case err := <-gaveUp:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second):
		t.Fatal("no dead letter after two timed-out attempts")
	}
	require.Equal(t, int32(2), attempts.Load())
	require.Less(t, time.Duration(waited.Load()), 10*time.Second, "cut at the callback timeout, not at a minute")
}

// Start refuses a rescue delay not longer than the callback timeout: River
// would take a job that is still running for a dead process's.
func TestStartRefusesRescueWithinTheCallbackTimeout(t *testing.T) {
	ctx := context.Background()
	q, err := durable.OpenSQLite(ctx, t.TempDir()+"/q.db", durable.Config{Logger: quiet, RescueStuckJobsAfter: 30 * time.Second})
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q), eachhook.WithCallbackTimeout(time.Minute))
	require.NoError(t, err)
	require.ErrorIs(t, h.Start(ctx), durable.ErrInvalidConfig)
	require.NoError(t, h.Shutdown(ctx))
}

// TestOneAttemptAtATime: a callback that ignores its context outlives
// the callback timeout (River's job timeout); with one worker, River
// starts the retry only once that attempt returned: never two attempts of
// one delivery at once. The first attempt holds on for 50 retry delays
// after its context ended, the window in which a retry would otherwise
// start (River polls for it every 10ms here).
func TestOneAttemptAtATime(t *testing.T) {
	q := newBackend(t, "sqlite").open(t, durable.Config{Logger: quiet, Workers: 1, MaxAttempts: 2, RetryPolicy: fastRetry{},
		RescueStuckJobsAfter: time.Minute, FetchPollInterval: 10 * time.Millisecond})
	second := make(chan struct{})
	var running, most, runs atomic.Int32
	done := make(chan int, 2)
	h := newHandler(t, q, func(h *eachhook.Handler) {
		h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			attempt := int(runs.Add(1))
			defer func() { done <- attempt }()
			if attempt == 1 {
				<-ctx.Done() // cut by the timeout, and ignored for a while:
				select {
				case <-second: // the retry started: two at once
				case <-time.After(50 * 10 * time.Millisecond):
				}
				return errors.New("overran")
			}
			close(second)
			return nil
		})
	}, eachhook.WithCallbackTimeout(100*time.Millisecond))
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "one-at-a-time")))
	for want := 1; want <= 2; want++ {
		select {
		case got := <-done:
			require.Equal(t, want, got)
		case <-time.After(30 * time.Second):
			t.Fatalf("attempt %d did not return", want)
		}
	}
	require.Equal(t, int32(1), most.Load(), "two attempts of one delivery ran at once")
	require.Equal(t, int32(2), runs.Load())
}
