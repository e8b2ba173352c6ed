package eachhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCallbackPanic is matched by the error of a callback that panicked.
var ErrCallbackPanic = errors.New("eachhook: callback panicked")

// CallbackError reports a delivery whose callback failed on every attempt.
// It is passed to the function set with [WithErrorHandler].
type CallbackError struct {
	// ID is the delivery's key: the prediction id, or [WorkflowKeyPrefix]
	// and the workflow execution id.
	ID string
	// Status is the delivery's status as sent, such as [StatusSuccess].
	Status string
	// Attempts is how many times the callback ran.
	Attempts int
	// Err is the last attempt's error; it matches [ErrCallbackPanic] if
	// that attempt panicked.
	Err error
}

func (e *CallbackError) Error() string {
	return fmt.Sprintf("eachhook: callback for %s (%s) failed after %d attempts: %v", e.ID, e.Status, e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *CallbackError) Unwrap() error { return e.Err }

type attemptKey struct{}

// AttemptFromContext returns the attempt number (1 for the first run) of
// the callback whose context is ctx, or 0 outside a callback.
func AttemptFromContext(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

// maxBackoff caps the wait between two attempts of a callback.
const maxBackoff = time.Minute

// cachedAttempts is how many attempts' contexts the in-memory queue makes
// once, at Start; later attempts (rare) make theirs when they run.
const cachedAttempts = 8

// Errors of the in-memory queue; the Handler answers them with 503.
var (
	errQueueFull   = errors.New("eachhook: queue full")
	errQueueClosed = errors.New("eachhook: queue shut down")
)

// pool is the default [Queue]: it runs accepted deliveries on a fixed
// number of goroutines, started by Start. Sends to queue happen under
// mu.RLock after checking closed, so Shutdown can close queue under mu.Lock
// without a send racing.
type pool struct {
	h       *Handler // set by Start
	workers int
	queue   chan Delivery
	mu      sync.RWMutex
	closed  bool
	started bool

	running sync.WaitGroup
	drained chan struct{} // closed when every worker has returned
	abandon atomic.Bool   // set when Shutdown's deadline passed

	ctx        context.Context // the callbacks' context
	cancel     context.CancelFunc
	attemptCtx []context.Context // ctx carrying attempt i, made at Start
}

var _ Queue = (*pool)(nil)

func newPool(workers, size int) *pool {
	p := &pool{workers: workers, queue: make(chan Delivery, size), drained: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Start implements [Queue]: it starts the worker goroutines.
func (p *pool) Start(_ context.Context, h *Handler) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errQueueClosed
	case p.started:
		return nil
	}
	p.started = true
	p.h = h
	p.attemptCtx = make([]context.Context, min(h.cfg.maxAttempts, cachedAttempts)+1)
	for i := range p.attemptCtx {
		p.attemptCtx[i] = context.WithValue(p.ctx, attemptKey{}, i)
	}
	p.running.Add(p.workers)
	for range p.workers {
		go p.work()
	}
	go func() {
		p.running.Wait()
		close(p.drained)
	}()
	return nil
}

// Enqueue implements [Queue] without blocking: it fails when the queue is
// full or shut down.
func (p *pool) Enqueue(_ context.Context, d Delivery) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errQueueClosed
	}
	// Count the delivery in before the send, so that a worker's count out
	// can never come first.
	p.h.queueChanged(1, cap(p.queue))
	select {
	case p.queue <- d:
		return nil
	default:
		p.h.queueChanged(-1, cap(p.queue))
		return errQueueFull
	}
}

func (p *pool) work() {
	defer p.running.Done()
	for d := range p.queue {
		p.h.queueChanged(-1, cap(p.queue))
		if p.abandon.Load() {
			p.h.lost(d)
			continue
		}
		p.run(d)
	}
}

// Shutdown implements [Queue]; see [Handler.Shutdown] for its behaviour.
func (p *pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	started := p.started
	p.mu.Unlock()
	if !started { // nothing was ever queued
		p.cancel()
		return nil
	}

	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = ctx.Err()
		p.abandon.Store(true)
		for d := range p.queue {
			p.h.queueChanged(-1, cap(p.queue))
			p.h.lost(d)
		}
	}
	p.cancel()
	return err
}

// Shutdown stops accepting deliveries (new requests are answered 503) and
// waits until every delivery already accepted has run its callbacks,
// retries included. If ctx ends first, it cancels the callbacks' context,
// logs the id of every accepted delivery that never started (in memory
// mode they are lost: the sender saw a 200 and will not retry), and
// returns ctx.Err(); callbacks still running then end on their own. It also
// stops the default [MemoryStore]. Shutdown may be called more than once.
// A [Queue] set with [WithQueue] is shut down instead of the in-memory
// one; its documentation says what happens to deliveries it did not run.
// After a Shutdown that returned ctx.Err(), callbacks still running may
// still release claims in the [Store] and call the [WithErrorHandler]
// function when they end: close a store you own only after that.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.startMu.Lock()
	h.closing.Store(true)
	h.startMu.Unlock()
	err := h.queue.Shutdown(ctx)
	if h.ownStore != nil {
		h.ownStore.Close()
	}
	return err
}

// lost logs an accepted delivery that will never run and releases its
// claim, so that a manual redelivery is processed.
func (h *Handler) lost(d Delivery) {
	h.log.Error("eachhook: accepted delivery not run before shutdown", "id", d.ID, "status", d.Status)
	h.notRun(d)
	if err := h.store.Release(context.Background(), d.ID); err != nil {
		h.log.Error("eachhook: release failed", "id", d.ID, "err", err)
	}
}

// run runs d's callback until it succeeds or the attempts are used up.
func (p *pool) run(d Delivery) {
	h := p.h
	var err error
	ran := 0
	for attempt := 1; attempt <= h.cfg.maxAttempts; attempt++ {
		if attempt > 1 && !h.sleep(p.ctx, attempt) {
			break // shutdown gave up waiting: report what ran so far
		}
		ran = attempt
		ctx := p.ctx // RunCallback adds the attempt number
		if attempt < len(p.attemptCtx) {
			ctx = p.attemptCtx[attempt]
		}
		if err = h.RunCallback(ctx, d, attempt); err == nil {
			return
		}
	}
	h.GiveUp(p.ctx, d, ran, err)
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

// sleep waits before the given attempt; false if ctx ended first.
func (h *Handler) sleep(ctx context.Context, attempt int) bool {
	t := time.NewTimer(backoffFor(h.cfg.backoff, attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
