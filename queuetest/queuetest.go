// Package queuetest is the conformance suite for implementations of
// eachhook.Queue, as package storetest is for stores. The in-memory queue
// and the durable queue on SQLite and on Postgres run it; run it on your
// own:
//
//	func TestMyQueue(t *testing.T) {
//		queuetest.Run(t, queuetest.Harness{
//			New:         func(t *testing.T) eachhook.Queue { return newMyQueue(t) },
//			MaxAttempts: 3,
//		})
//	}
//
// The suite plays the Handler: it starts each Queue with a Runner of its
// own that records every call, enqueues deliveries and checks what the
// Queue did with them. It waits for asynchronous results by polling with a
// generous bound and never asserts on speed, so a queue with a retry
// backoff passes as long as each wait fits in [Harness.Timeout]: configure
// a short backoff for the suite.
package queuetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/stretchr/testify/require"
)

// DefaultTimeout is the default of [Harness.Timeout].
const DefaultTimeout = 30 * time.Second

// Harness describes the Queue implementation under test to [Run].
type Harness struct {
	// New returns a new Queue, not started, holding no deliveries: on
	// storage of its own, or on storage shared only with queues whose ids
	// cannot collide (the suite's ids include the test's name and a
	// counter). It is called once per subtest. Required.
	New func(t *testing.T) eachhook.Queue
	// Reopen returns a new Queue, not started, on the same storage as q,
	// as the next process would open it. q came from New or Reopen and has
	// been shut down. Required when KeepsOnShutdown is set.
	Reopen func(t *testing.T, q eachhook.Queue) eachhook.Queue
	// MaxAttempts is how often the queue runs a delivery whose callback
	// keeps failing before it gives up: its retry setting. Required, at
	// least 1.
	MaxAttempts int
	// KeepsOnShutdown declares what Shutdown does with deliveries it
	// accepted and did not start. False: it drains them, running each
	// before it returns (the in-memory queue). True: it keeps them for a
	// queue opened by Reopen on the same storage, which runs them (the
	// durable queue); such a queue must also accept Enqueue before Start,
	// since the suite checks that a delivery enqueued on a queue never
	// started survives its Shutdown.
	KeepsOnShutdown bool
	// Timeout bounds each wait for something the queue does
	// asynchronously, and each Start and Shutdown. Default
	// [DefaultTimeout] (30s).
	Timeout time.Duration
}

func (h Harness) timeout() time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return DefaultTimeout
}

// Run exercises the Queue contract of [eachhook.Queue] (and of
// [eachhook.DedupingQueue], for a queue that implements it) on the queues
// h makes: a delivery runs once with attempt 1 and its exact bytes; a
// failing callback runs with attempts 1 to h.MaxAttempts and is then given
// up exactly once with the last error; Shutdown drains or keeps what it
// accepted, as h declares; a Shutdown whose deadline passes while a
// callback runs returns the context's error; a duplicate EnqueueOnce,
// sequential or concurrent, is refused and runs nothing (not run for a
// queue that is not a DedupingQueue); Shutdown may be called more than
// once, and without Start; an Enqueue after Shutdown fails. Every queue the suite makes is also shut
// down at the end of its subtest, so that a failed subtest leaves nothing
// running.
func Run(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.New, "queuetest: Harness.New is required")
	require.GreaterOrEqual(t, h.MaxAttempts, 1, "queuetest: Harness.MaxAttempts must be at least 1")
	if h.KeepsOnShutdown {
		require.NotNil(t, h.Reopen, "queuetest: Harness.Reopen is required with KeepsOnShutdown")
	}
	s := suite{h: h}

	t.Run("EnqueueThenRun", s.enqueueThenRun)
	t.Run("EachDeliveryRunsOnce", s.eachDeliveryRunsOnce)
	if h.MaxAttempts >= 2 { // with 1 attempt there is no retry to check
		t.Run("RetryThenSucceed", s.retryThenSucceed)
	}
	t.Run("RetriesThenGiveUp", s.retriesThenGiveUp)
	t.Run("ShutdownDrainsOrKeeps", s.shutdownDrainsOrKeeps)
	if h.KeepsOnShutdown { // a draining queue has nothing to keep
		t.Run("ShutdownKeepsUnstarted", s.shutdownKeepsUnstarted)
	}
	t.Run("ShutdownDeadline", s.shutdownDeadline)
	// The EnqueueOnce subtests exist only for a DedupingQueue: not run
	// (rather than skipped) for the others, to which they do not apply.
	probe := h.New(t)
	_, deduping := probe.(eachhook.DedupingQueue)
	require.NoError(t, probe.Shutdown(context.Background()), "queuetest: Shutdown of a queue never started")
	if deduping {
		t.Run("DuplicateEnqueueOnce", s.duplicateEnqueueOnce)
		t.Run("ConcurrentEnqueueOnce", s.concurrentEnqueueOnce)
	}
	t.Run("ShutdownTwice", s.shutdownTwice)
	t.Run("ShutdownWithoutStart", s.shutdownWithoutStart)
	t.Run("EnqueueAfterShutdown", s.enqueueAfterShutdown)
}

type suite struct{ h Harness }

func (s suite) enqueueThenRun(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	s.start(t, q, r)
	d := delivery(t)
	require.NoError(t, q.Enqueue(s.ctx(t), d))
	s.eventually(t, func() bool { return r.runCount() >= 1 }, "Run was not called")
	s.shutdown(t, q)

	runs := r.snapshotRuns()
	require.Len(t, runs, 1, "Run calls for one delivery that succeeded")
	requireSame(t, d, runs[0].d)
	require.Equal(t, 1, runs[0].attempt, "attempt of the first Run")
	require.Empty(t, r.snapshotGaveUp(), "GiveUp calls")
}

func (s suite) eachDeliveryRunsOnce(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	s.start(t, q, r)
	const n = 10
	want := map[string]eachhook.Delivery{}
	for range n {
		d := delivery(t)
		want[d.ID] = d
		require.NoError(t, q.Enqueue(s.ctx(t), d))
	}
	s.eventually(t, func() bool { return r.runCount() >= n }, "not every delivery ran")
	s.shutdown(t, q)

	runs := r.snapshotRuns()
	require.Len(t, runs, n, "Run calls for %d deliveries that succeeded", n)
	seen := map[string]bool{}
	for _, c := range runs {
		require.False(t, seen[c.d.ID], "delivery %s ran twice", c.d.ID)
		seen[c.d.ID] = true
		w, ok := want[c.d.ID]
		require.True(t, ok, "Run of an id never enqueued: %q", c.d.ID)
		requireSame(t, w, c.d)
		require.Equal(t, 1, c.attempt)
	}
	require.Empty(t, r.snapshotGaveUp(), "GiveUp calls")
}

// retryThenSucceed fails every attempt but the last allowed one.
func (s suite) retryThenSucceed(t *testing.T) {
	n := s.h.MaxAttempts
	q, r := s.newQueue(t), newRecorder()
	r.fail = func(_ eachhook.Delivery, attempt int) error {
		if attempt < n {
			return fmt.Errorf("queuetest: attempt %d fails", attempt)
		}
		return nil
	}
	s.start(t, q, r)
	d := delivery(t)
	require.NoError(t, q.Enqueue(s.ctx(t), d))
	s.eventually(t, func() bool { return r.runCount() >= n }, "the delivery did not run %d times", n)
	s.shutdown(t, q)

	require.Equal(t, countingUp(n), r.attempts(d.ID), "attempts of a delivery that succeeds on attempt %d", n)
	for _, c := range r.snapshotRuns() {
		requireSame(t, d, c.d)
	}
	require.Empty(t, r.snapshotGaveUp(), "GiveUp of a delivery that succeeded on its last attempt")
}

func (s suite) retriesThenGiveUp(t *testing.T) {
	n := s.h.MaxAttempts
	q, r := s.newQueue(t), newRecorder()
	r.fail = func(_ eachhook.Delivery, attempt int) error {
		return fmt.Errorf("queuetest: attempt %d fails", attempt)
	}
	s.start(t, q, r)
	d := delivery(t)
	require.NoError(t, q.Enqueue(s.ctx(t), d))
	s.eventually(t, func() bool { return len(r.snapshotGaveUp()) >= 1 }, "GiveUp was not called")
	s.shutdown(t, q)

	runs := r.snapshotRuns()
	require.Equal(t, countingUp(n), r.attempts(d.ID), "attempts of a delivery that always fails")
	for _, c := range runs {
		requireSame(t, d, c.d)
	}
	gave := r.snapshotGaveUp()
	require.Len(t, gave, 1, "GiveUp calls")
	requireSame(t, d, gave[0].d)
	require.Equal(t, n, gave[0].attempts, "GiveUp's attempts")
	last := runs[len(runs)-1].err
	require.ErrorIs(t, gave[0].err, last, "GiveUp's error must be the last Run's")
}

// shutdownDrainsOrKeeps shuts a queue down while callbacks are in progress
// and more deliveries wait: a draining queue runs them all before Shutdown
// returns; a keeping queue leaves the ones it did not start to the next
// queue on its storage. Either way each runs exactly once.
func (s suite) shutdownDrainsOrKeeps(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	r.gate = make(chan struct{})
	s.start(t, q, r)
	const n = 10
	ids := make([]string, 0, n)
	for range n {
		d := delivery(t)
		ids = append(ids, d.ID)
		require.NoError(t, q.Enqueue(s.ctx(t), d))
	}
	s.eventually(t, func() bool { return r.entered.Load() >= 1 }, "no callback started")

	done := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), s.h.timeout())
		defer cancel()
		done <- q.Shutdown(c)
	}()
	close(r.gate) // let the callbacks in progress finish while Shutdown runs
	select {
	case err := <-done:
		require.NoError(t, err, "Shutdown")
	case <-time.After(2 * s.h.timeout()):
		t.Fatal("Shutdown did not return")
	}

	ran := r.succeeded()
	if !s.h.KeepsOnShutdown {
		for _, id := range ids {
			require.Equal(t, 1, ran[id], "runs of %s before a draining Shutdown returned", id)
		}
		require.Len(t, ran, n)
		require.Empty(t, r.snapshotGaveUp(), "GiveUp calls")
		return
	}

	q2, r2 := s.reopen(t, q), newRecorder()
	s.start(t, q2, r2)
	s.eventually(t, func() bool { return len(r.succeeded())+len(r2.succeeded()) >= n },
		"the deliveries the first queue kept did not run on the reopened queue")
	s.shutdown(t, q2)
	ran2 := r2.succeeded()
	for _, id := range ids {
		require.Equal(t, 1, ran[id]+ran2[id], "runs of %s: %d before Shutdown, %d after Reopen", id, ran[id], ran2[id])
	}
	require.Equal(t, n, len(ran)+len(ran2), "runs of ids never enqueued")
	require.Empty(t, r.snapshotGaveUp(), "GiveUp calls")
	require.Empty(t, r2.snapshotGaveUp(), "GiveUp calls after Reopen")
	for _, c := range r2.snapshotRuns() {
		require.Equal(t, 1, c.attempt, "attempt of a kept delivery that never ran")
	}
}

// shutdownKeepsUnstarted checks a keeping queue with a delivery that
// certainly did not start: one enqueued on a queue never started.
func (s suite) shutdownKeepsUnstarted(t *testing.T) {
	q := s.newQueue(t)
	d := delivery(t)
	require.NoError(t, q.Enqueue(s.ctx(t), d), "Enqueue before Start")
	s.shutdown(t, q)

	q2, r := s.reopen(t, q), newRecorder()
	s.start(t, q2, r)
	s.eventually(t, func() bool { return r.runCount() >= 1 }, "the kept delivery did not run after Reopen")
	s.shutdown(t, q2)
	runs := r.snapshotRuns()
	require.Len(t, runs, 1)
	requireSame(t, d, runs[0].d)
	require.Equal(t, 1, runs[0].attempt)
	require.Empty(t, r.snapshotGaveUp(), "GiveUp calls")
}

// shutdownDeadline gives Shutdown a deadline that a callback in progress
// outlasts: Shutdown returns the context's error.
func (s suite) shutdownDeadline(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	r.gate = make(chan struct{})
	// Release the callback at the end whether or not the queue cancelled
	// its context, and wait for it to return.
	t.Cleanup(func() {
		close(r.gate)
		s.eventually(t, func() bool { return r.returned.Load() >= 1 }, "the blocked callback did not return")
	})
	s.start(t, q, r)
	require.NoError(t, q.Enqueue(s.ctx(t), delivery(t)))
	s.eventually(t, func() bool { return r.entered.Load() >= 1 }, "no callback started")

	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := q.Shutdown(c)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Shutdown whose deadline passed while a callback ran")
}

func (s suite) duplicateEnqueueOnce(t *testing.T) {
	q := s.newQueue(t)
	dq := q.(eachhook.DedupingQueue) // Run checked
	r := newRecorder()
	s.start(t, dq, r)
	d := delivery(t)
	queued, err := dq.EnqueueOnce(s.ctx(t), d)
	require.NoError(t, err)
	require.True(t, queued, "first EnqueueOnce of an id")
	queued, err = dq.EnqueueOnce(s.ctx(t), d)
	require.NoError(t, err)
	require.False(t, queued, "second EnqueueOnce of an id")
	s.eventually(t, func() bool { return r.runCount() >= 1 }, "Run was not called")
	s.shutdown(t, dq)

	require.Equal(t, []int{1}, r.attempts(d.ID), "attempts of a delivery enqueued twice")
	require.Len(t, r.snapshotRuns(), 1)
}

func (s suite) concurrentEnqueueOnce(t *testing.T) {
	q := s.newQueue(t)
	dq := q.(eachhook.DedupingQueue) // Run checked
	r := newRecorder()
	s.start(t, dq, r)
	d := delivery(t)
	const n = 8
	var wg sync.WaitGroup
	var fresh, failed atomic.Int32
	begin := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-begin
			queued, err := dq.EnqueueOnce(context.Background(), d)
			switch {
			case err != nil:
				failed.Add(1)
			case queued:
				fresh.Add(1)
			}
		})
	}
	close(begin)
	wg.Wait()
	require.Zero(t, failed.Load(), "failed EnqueueOnce calls")
	require.Equal(t, int32(1), fresh.Load(), "EnqueueOnce calls that reported a new delivery, of %d concurrent copies", n)
	s.eventually(t, func() bool { return r.runCount() >= 1 }, "Run was not called")
	s.shutdown(t, dq)
	require.Equal(t, []int{1}, r.attempts(d.ID), "attempts of a delivery enqueued %d times at once", n)
	require.Len(t, r.snapshotRuns(), 1)
}

func (s suite) shutdownTwice(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	s.start(t, q, r)
	require.NoError(t, q.Enqueue(s.ctx(t), delivery(t)))
	s.eventually(t, func() bool { return r.runCount() >= 1 }, "Run was not called")
	s.shutdown(t, q)
	s.shutdown(t, q)
	require.Len(t, r.snapshotRuns(), 1)
}

func (s suite) shutdownWithoutStart(t *testing.T) {
	q := s.newQueue(t)
	s.shutdown(t, q)
	s.shutdown(t, q)
}

func (s suite) enqueueAfterShutdown(t *testing.T) {
	q, r := s.newQueue(t), newRecorder()
	s.start(t, q, r)
	s.shutdown(t, q)
	require.Error(t, q.Enqueue(s.ctx(t), delivery(t)), "Enqueue after Shutdown")
	if dq, ok := q.(eachhook.DedupingQueue); ok {
		queued, err := dq.EnqueueOnce(s.ctx(t), delivery(t))
		require.Error(t, err, "EnqueueOnce after Shutdown")
		require.False(t, queued, "EnqueueOnce after Shutdown")
	}
	require.Empty(t, r.snapshotRuns(), "Run calls")
}

// newQueue returns a queue from New, shut down at the end of the test.
func (s suite) newQueue(t *testing.T) eachhook.Queue {
	t.Helper()
	q := s.h.New(t)
	require.NotNil(t, q, "queuetest: Harness.New returned nil")
	s.shutdownAtEnd(t, q)
	return q
}

// reopen returns a queue from Reopen, shut down at the end of the test.
func (s suite) reopen(t *testing.T, old eachhook.Queue) eachhook.Queue {
	t.Helper()
	q := s.h.Reopen(t, old)
	require.NotNil(t, q, "queuetest: Harness.Reopen returned nil")
	s.shutdownAtEnd(t, q)
	return q
}

// shutdownAtEnd shuts q down when the test ends, so that a subtest that
// failed early leaves nothing running. The Queue contract allows a second
// Shutdown; its result is not checked here.
func (s suite) shutdownAtEnd(t *testing.T, q eachhook.Queue) {
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), s.h.timeout())
		defer cancel()
		_ = q.Shutdown(c)
	})
}

func (s suite) start(t *testing.T, q eachhook.Queue, r eachhook.Runner) {
	t.Helper()
	require.NoError(t, q.Start(s.ctx(t), r), "Start")
}

func (s suite) shutdown(t *testing.T, q eachhook.Queue) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), s.h.timeout())
	defer cancel()
	require.NoError(t, q.Shutdown(c), "Shutdown")
}

func (s suite) eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventuallyf(t, cond, s.h.timeout(), 5*time.Millisecond, msg, args...)
}

// ctx returns a context for one call, bounded by the harness's timeout.
func (s suite) ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), s.h.timeout())
	t.Cleanup(cancel)
	return c
}

var seq atomic.Int64

// delivery returns a delivery with an id of its own and a body that a
// queue storing it as parsed JSON would not give back byte for byte:
// unusual spacing, an escaped character, a trailing zero and a newline.
func delivery(t *testing.T) eachhook.Delivery {
	id := fmt.Sprintf("queuetest-%s-%d", t.Name(), seq.Add(1))
	body := fmt.Sprintf("{\"id\": %q,  \"status\":\"success\",\"output\":[\"caf\\u00e9\", 1.50], \"z\":null ,\"a\":{}}\n", id)
	return eachhook.Delivery{ID: id, Status: eachhook.StatusSuccess, Body: []byte(body)}
}

func requireSame(t *testing.T, want, got eachhook.Delivery) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "Delivery.ID")
	require.Equal(t, want.Status, got.Status, "Delivery.Status of %s", want.ID)
	require.True(t, bytes.Equal(want.Body, got.Body), "Delivery.Body of %s: got %q, want %q", want.ID, got.Body, want.Body)
}

// countingUp returns 1, 2, ..., n.
func countingUp(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// recorder is the suite's Runner: it records every call. fail, if set,
// decides each Run's error; gate, if set, holds every Run until it is
// closed or Run's context ends. Both are set before Start.
type recorder struct {
	fail func(d eachhook.Delivery, attempt int) error
	gate chan struct{}

	entered, returned atomic.Int32

	mu     sync.Mutex
	runs   []runCall
	gaveUp []gaveUpCall
}

type runCall struct {
	d       eachhook.Delivery
	attempt int
	err     error
}

type gaveUpCall struct {
	d        eachhook.Delivery
	attempts int
	err      error
}

var _ eachhook.Runner = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{} }

// Run implements eachhook.Runner.
func (r *recorder) Run(ctx context.Context, d eachhook.Delivery, attempt int) error {
	r.entered.Add(1)
	defer r.returned.Add(1)
	var err error
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil && r.fail != nil {
		err = r.fail(d, attempt)
	}
	d.Body = bytes.Clone(d.Body) // the queue may reuse its buffer
	r.mu.Lock()
	r.runs = append(r.runs, runCall{d: d, attempt: attempt, err: err})
	r.mu.Unlock()
	return err
}

// GiveUp implements eachhook.Runner.
func (r *recorder) GiveUp(_ context.Context, d eachhook.Delivery, attempts int, err error) {
	d.Body = bytes.Clone(d.Body)
	r.mu.Lock()
	r.gaveUp = append(r.gaveUp, gaveUpCall{d: d, attempts: attempts, err: err})
	r.mu.Unlock()
}

// CallbackTimeout implements eachhook.Runner.
func (r *recorder) CallbackTimeout() time.Duration { return time.Minute }

func (r *recorder) runCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runs)
}

func (r *recorder) snapshotRuns() []runCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func (r *recorder) snapshotGaveUp() []gaveUpCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gaveUp)
}

// attempts returns the attempt numbers Run was called with for id, in
// call order.
func (r *recorder) attempts(id string) []int {
	var out []int
	for _, c := range r.snapshotRuns() {
		if c.d.ID == id {
			out = append(out, c.attempt)
		}
	}
	return out
}

// succeeded counts the Runs that returned nil, by id.
func (r *recorder) succeeded() map[string]int {
	out := map[string]int{}
	for _, c := range r.snapshotRuns() {
		if c.err == nil {
			out[c.d.ID]++
		}
	}
	return out
}
