package eachhook

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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

// delivery is an accepted, verified, claimed webhook waiting for a worker.
type delivery struct {
	id     string
	status string
	body   []byte
	req    *requestContext // for the observer only (observe.go)
}

// pool runs accepted deliveries on a fixed number of goroutines, started on
// the first delivery. Sends to queue happen under mu.RLock after checking
// closed, so Shutdown can close queue under mu.Lock without a send racing.
type pool struct {
	h       *Handler
	queue   chan delivery
	closing atomic.Bool // set when Shutdown begins; read without a lock
	mu      sync.RWMutex
	closed  bool

	start   sync.Once
	workers sync.WaitGroup
	drained chan struct{} // closed when every worker has returned
	abandon atomic.Bool   // set when Shutdown's deadline passed

	ctx        context.Context // the callbacks' context
	cancel     context.CancelFunc
	attemptCtx []context.Context // ctx carrying attempt i, made once
}

func (p *pool) init(h *Handler) {
	p.h = h
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.queue = make(chan delivery, h.cfg.queueSize)
	p.attemptCtx = make([]context.Context, h.cfg.maxAttempts+1)
	for i := range p.attemptCtx {
		p.attemptCtx[i] = context.WithValue(p.ctx, attemptKey{}, i)
	}
	p.drained = make(chan struct{})
}

// enqueue hands d to a worker without blocking. It reports false when the
// queue is full or the Handler is shutting down.
func (p *pool) enqueue(d delivery) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	p.start.Do(p.startWorkers)
	p.h.queueChanged(1) // before the send, so that a worker's -1 never comes first
	select {
	case p.queue <- d:
		return true
	default:
		p.h.queueChanged(-1)
		return false
	}
}

func (p *pool) startWorkers() {
	p.workers.Add(p.h.cfg.workers)
	for range p.h.cfg.workers {
		go p.work()
	}
	go func() {
		p.workers.Wait()
		close(p.drained)
	}()
}

func (p *pool) work() {
	defer p.workers.Done()
	for d := range p.queue {
		p.h.queueChanged(-1)
		if p.abandon.Load() {
			p.h.lost(d)
			continue
		}
		p.h.run(d)
	}
}

// Shutdown stops accepting deliveries (new requests are answered 503) and
// waits until every delivery already accepted has run its callbacks,
// retries included. If ctx ends first, it cancels the callbacks' context,
// logs the id of every accepted delivery that never started (in memory
// mode they are lost: the sender saw a 200 and will not retry), and
// returns ctx.Err(); callbacks still running then end on their own. It also
// stops the default [MemoryStore]. Shutdown may be called more than once.
func (h *Handler) Shutdown(ctx context.Context) error {
	p := &h.pool
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.closing.Store(true)
		close(p.queue)
	}
	p.mu.Unlock()
	p.start.Do(func() { close(p.drained) }) // never started: nothing to drain

	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = ctx.Err()
		p.abandon.Store(true)
		for d := range p.queue {
			h.queueChanged(-1)
			h.lost(d)
		}
	}
	p.cancel()
	if h.ownStore != nil {
		h.ownStore.Close()
	}
	return err
}

// lost logs an accepted delivery that will never run and releases its
// claim, so that a manual redelivery is processed.
func (h *Handler) lost(d delivery) {
	h.log.Error("eachhook: accepted delivery not run before shutdown", "id", d.id, "status", d.status)
	h.notRun(d)
	if err := h.store.Release(context.Background(), d.id); err != nil {
		h.log.Error("eachhook: release failed", "id", d.id, "err", err)
	}
}

// run runs d's callback until it succeeds or the attempts are used up.
func (h *Handler) run(d delivery) {
	ctx := h.pool.ctx
	var err error
	ran := 0
	for attempt := 1; attempt <= h.cfg.maxAttempts; attempt++ {
		if attempt > 1 && !h.sleep(ctx, attempt) {
			break // shutdown gave up waiting: report what ran so far
		}
		ran = attempt
		err = h.observedCall(h.pool.attemptCtx[attempt], d, attempt)
		if err == nil {
			return
		}
		h.log.Warn("eachhook: callback failed", "id", d.id, "status", d.status, "attempt", attempt, "err", err)
	}
	cerr := &CallbackError{ID: d.id, Status: d.status, Attempts: ran, Err: err}
	h.log.Error("eachhook: giving up on delivery", "id", d.id, "status", d.status, "attempts", ran, "err", err)
	if rerr := h.store.Release(context.WithoutCancel(ctx), d.id); rerr != nil {
		h.log.Error("eachhook: release failed", "id", d.id, "err", rerr)
	}
	h.gaveUp(ctx, cerr)
	if h.cfg.onError != nil {
		h.cfg.onError(ctx, cerr)
	}
}

// sleep waits before the given attempt; false if ctx ended first.
func (h *Handler) sleep(ctx context.Context, attempt int) bool {
	d := h.cfg.backoff << (attempt - 2)
	if d > maxBackoff || d < 0 {
		d = maxBackoff
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// call runs the callback for d once, turning a panic into an error.
func (h *Handler) call(ctx context.Context, d delivery) (err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("eachhook: callback panicked", "id", d.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrCallbackPanic, v)
		}
	}()
	return h.invoke(ctx, d.body)
}
