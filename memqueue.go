package eachhook

// This file owns the in-memory queue, the default Queue: a channel of
// accepted deliveries and a fixed number of worker goroutines that run
// each delivery's attempts with a doubling backoff.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook/observe"
)

// maxBackoff caps the wait between two attempts of a callback.
const maxBackoff = time.Minute

// Errors of the in-memory queue; the Handler answers them with 503.
var (
	errQueueFull   = errors.New("eachhook: queue full")
	errQueueClosed = errors.New("eachhook: queue shut down")
)

// memQueue runs accepted deliveries on a fixed number of goroutines,
// started by Start. Sends to queue happen under mu.RLock after checking
// closed, so Shutdown can close queue under mu.Lock without a send racing.
type memQueue struct {
	h       *Handler
	r       Runner // set by Start
	workers int
	queue   chan Delivery
	mu      sync.RWMutex
	closed  bool
	started bool

	running sync.WaitGroup
	drained chan struct{} // closed when every worker has returned
	abandon atomic.Bool   // set when Shutdown's deadline passed

	ctx    context.Context // the callbacks' context
	cancel context.CancelFunc
}

var _ Queue = (*memQueue)(nil)

func newMemQueue(h *Handler, workers, size int) *memQueue {
	q := &memQueue{h: h, workers: workers, queue: make(chan Delivery, size), drained: make(chan struct{})}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Start implements [Queue]: it starts the worker goroutines.
func (q *memQueue) Start(_ context.Context, r Runner) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return errQueueClosed
	case q.started:
		return nil
	}
	q.started, q.r = true, r
	q.running.Add(q.workers)
	for range q.workers {
		go q.work()
	}
	go func() {
		q.running.Wait()
		close(q.drained)
	}()
	return nil
}

// Enqueue implements [Queue] without blocking: it fails when the queue is
// full or shut down.
func (q *memQueue) Enqueue(_ context.Context, d Delivery) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return errQueueClosed
	}
	// Count the delivery in before the send, so that a worker's count out
	// can never come first.
	q.changed(1)
	select {
	case q.queue <- d:
		return nil
	default:
		q.changed(-1)
		return errQueueFull
	}
}

// full reports whether a delivery would find the queue full now.
func (q *memQueue) full() bool { return len(q.queue) >= cap(q.queue) }

func (q *memQueue) changed(delta int) {
	if f := q.h.cfg.observer.QueueChanged; f != nil {
		f(delta, cap(q.queue))
	}
}

func (q *memQueue) work() {
	defer q.running.Done()
	for d := range q.queue {
		q.changed(-1)
		if q.abandon.Load() {
			q.lost(d)
			continue
		}
		q.run(d)
	}
}

// run runs d's callback until it succeeds or the attempts are used up.
func (q *memQueue) run(d Delivery) {
	cfg := &q.h.cfg
	var err error
	ran := 0
	for attempt := 1; attempt <= cfg.maxAttempts; attempt++ {
		if attempt > 1 && !sleep(q.ctx, backoffFor(cfg.backoff, attempt)) {
			break // shutdown gave up waiting: report what ran so far
		}
		ran = attempt
		if err = q.r.Run(q.ctx, d, attempt); err == nil {
			return
		}
	}
	q.r.GiveUp(q.ctx, d, ran, err)
}

// Shutdown implements [Queue]; see [Handler.Shutdown] for its behaviour.
func (q *memQueue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.queue)
	}
	started := q.started
	q.mu.Unlock()
	if !started { // nothing was ever queued
		q.cancel()
		return nil
	}

	var err error
	select {
	case <-q.drained:
	case <-ctx.Done():
		err = ctx.Err()
		q.abandon.Store(true)
		for d := range q.queue {
			q.changed(-1)
			q.lost(d)
		}
	}
	q.cancel()
	return err
}

// lost logs an accepted delivery that will never run and releases its
// claim, so that a redelivery is processed.
func (q *memQueue) lost(d Delivery) {
	h := q.h
	h.log.Error("eachhook: accepted delivery not run before shutdown", "id", d.ID, "status", d.Status)
	if f := h.cfg.observer.GaveUp; f != nil {
		f(context.Background(), observe.DeliveryInfo{ID: d.ID, Status: d.Status}, 0, observe.ErrNotRun)
	}
	if err := h.store.Release(context.Background(), d.ID, d.Claim); err != nil {
		h.log.Error("eachhook: release failed", "id", d.ID, "err", err)
	}
}

// backoffFor returns the wait before attempt (2 or more): base, doubling
// on each later attempt, capped at maxBackoff, without overflow.
func backoffFor(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		return 0
	}
	if shift := attempt - 2; shift < 32 && base <= maxBackoff>>shift {
		return base << shift
	}
	return maxBackoff
}

// sleep waits for d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
