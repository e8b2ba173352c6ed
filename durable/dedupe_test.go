package durable_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// TestResendWhileFirstInsertIsInFlight: the first copy's insert is slow
// (the job table is locked) and the sender gives up on it and resends. The
// resend must not be answered 200 before a job is committed: it waits for
// the first insert (which no longer runs on the gone request's context,
// being shared by its batch, so it commits once the lock is released) and
// is then answered 200 as a duplicate of the committed job.
func TestResendWhileFirstInsertIsInFlight(t *testing.T) {
	b := newBackend(t, "postgres")
	rec := eachhooktest.NewRecorder()
	h := newHandler(t, b.open(t, durable.Config{Logger: quiet}), rec.Register)
	ctx := context.Background()

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE "+b.schema+".river_job IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	first := make(chan int, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, time.Second) // the sender's timeout
		defer cancel()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", secret, "inflight").WithContext(rctx))
		first <- w.Code
	}()
	time.Sleep(300 * time.Millisecond)
	second := make(chan int, 1)
	go func() { second <- serve(h, eachhooktest.NewSuccessRequest("/", secret, "inflight")) }()

	require.Equal(t, 503, <-first, "the first insert timed out")
	select {
	case code := <-second:
		t.Fatalf("the resend was answered %d while the first insert was undecided", code)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 200, <-second)
	var n int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM "+b.schema+".river_job").Scan(&n))
	require.Equal(t, 1, n, "the 200 came with one committed job")
	wait(t, rec, 1)
	require.Equal(t, []int{1}, attempts(rec)["inflight"], "one callback, on attempt 1")
}

// TestRedeliveryAfterDiscardOnAnyReplica: two replicas on one Postgres, each
// with the default MemoryStore. Every callback fails once (MaxAttempts 1),
// so every job is discarded, some by the replica that did not receive it
// (whose claim stays held). A manual redelivery to the receiving replica
// must run every one again.
func TestRedeliveryAfterDiscardOnAnyReplica(t *testing.T) {
	b := newBackend(t, "postgres")
	var mu sync.Mutex
	runs := map[string]int{}
	fixed := false
	register := func(h *eachhook.Handler) {
		h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			mu.Lock()
			defer mu.Unlock()
			runs[s.ID]++
			if !fixed {
				return errors.New("downstream unavailable")
			}
			return nil
		})
	}
	var reported sync.WaitGroup
	const n = 20
	reported.Add(n)
	onErr := eachhook.WithErrorHandler(func(context.Context, error) { reported.Done() })
	cfg := durable.Config{Logger: quiet, MaxAttempts: 1}
	a := newHandler(t, b.open(t, cfg), register, onErr)
	newHandler(t, b.open(t, cfg), register, onErr)
	for i := range n {
		require.Equal(t, 200, serve(a, eachhooktest.NewSuccessRequest("/", secret, "g"+strconv.Itoa(i))))
	}
	reported.Wait()
	mu.Lock()
	fixed = true
	mu.Unlock()
	for i := range n {
		require.Equal(t, 200, serve(a, eachhooktest.NewSuccessRequest("/", secret, "g"+strconv.Itoa(i))))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			if runs["g"+strconv.Itoa(i)] != 2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "every redelivery runs once more")
}
