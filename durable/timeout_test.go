package durable_test

import (
	"context"
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
