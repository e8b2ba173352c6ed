package eachhook

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// Queue errors.
var (
	// ErrNoCallback is returned by [Handler.RunCallback] for a delivery
	// whose status has no callback registered, so that a queue keeps the
	// delivery (a durable queue retries it later) instead of dropping it.
	ErrNoCallback = errors.New("eachhook: no callback registered for the delivery's status")
	// ErrShutdown is returned by [Handler.Start] after [Handler.Shutdown].
	ErrShutdown = errors.New("eachhook: handler shut down")
)

// Delivery is a verified webhook that the Handler accepted and handed to
// its [Queue].
type Delivery struct {
	// ID is the idempotency key: the prediction id, or
	// [WorkflowKeyPrefix] and the workflow execution id.
	ID string
	// Status is the delivery's status as sent, such as [StatusSuccess].
	Status string
	// Body is the verified body exactly as received. A queue that persists
	// a delivery must store these bytes as they are.
	Body []byte

	req *requestContext // the request's context, kept for an Observer
}

// Queue decides how accepted deliveries are queued and run; it is the
// Handler's one extension point for that. By default the Handler uses an
// in-memory queue sized by [WithWorkers] and [WithQueueSize]: fast, but a
// delivery acknowledged with 200 is lost if the process dies before its
// callback finished. [WithQueue] sets another Queue, such as the durable
// one of module github.com/eachhook/eachhook/durable, which stores each
// delivery in a database before the 200 and runs it from the stored copy,
// so that a restarted process (or another replica) finishes it.
//
// A Queue serves one Handler. The Handler calls Start before the first
// Enqueue (from [Handler.Start], or lazily on the first accepted
// delivery), Enqueue once per accepted delivery, and Shutdown from
// [Handler.Shutdown]. A Queue runs each delivery by calling
// [Handler.RunCallback] once per attempt, with its own retry policy, and
// [Handler.GiveUp] when it stops retrying.
//
// The Handler keeps what is common to every queue: verification, the
// dedupe claim before Enqueue, its release when Enqueue fails, decoding
// the body for the callbacks and the attempt number in their context.
// Retrying belongs to the queue, because only the queue knows where the
// attempt count lives: in a goroutine's loop for the in-memory queue, in
// the stored job for a durable one, which also survives a restart.
type Queue interface {
	// Start begins running queued deliveries of h, including, for a
	// durable queue, those an earlier process left unfinished. ctx bounds
	// the start only; running goes on until Shutdown. After an error the
	// Handler answers 503 and calls Start again on the next delivery.
	Start(ctx context.Context, h *Handler) error
	// Enqueue queues d. It returns nil only once d is safely queued (for a
	// durable queue: once the insert is committed) or was queued earlier
	// under the same id; the Handler answers 200 only then. On any error
	// the Handler releases the id's claim and answers 503 with
	// Retry-After, so that the sender retries. ctx is the request's.
	Enqueue(ctx context.Context, d Delivery) error
	// Shutdown stops intake and running, waiting for callbacks in
	// progress until ctx ends, and then returns ctx.Err(). Each Queue
	// documents what happens to deliveries it did not run. Shutdown may
	// be called more than once, and without Start.
	Shutdown(ctx context.Context) error
}

// DedupingQueue is an optional interface of a [Queue] that refuses a second
// delivery of an id by itself, such as a durable queue whose insert is
// unique by id. The Handler then asks the queue, not only its [Store],
// whether a delivery is new: a copy that arrives while the first copy's
// insert is still running is answered only once that insert is decided (a
// Store claim alone would answer it 200 at once, and the first insert could
// still fail), and a redelivery is queued again whenever the queue no
// longer holds the id, even if a claim on another replica was never
// released.
type DedupingQueue interface {
	Queue
	// EnqueueOnce is Enqueue that also reports whether d was new: false,
	// nil when the queue already holds a delivery of d.ID (so d's callback
	// must not run again).
	EnqueueOnce(ctx context.Context, d Delivery) (queued bool, err error)
}

// WithQueue sets how accepted deliveries are queued and run. Default: an
// in-memory queue of [WithWorkers] goroutines holding up to
// [WithQueueSize] deliveries, retrying as set by [WithRetry]; those three
// options have no effect on a Queue set here, which has its own settings.
// The Handler starts q (see [Handler.Start]) and shuts it down in
// [Handler.Shutdown].
func WithQueue(q Queue) Option {
	return func(c *config) error {
		if q == nil {
			return fmt.Errorf("%w: nil queue", ErrInvalidOption)
		}
		c.queue = q
		return nil
	}
}

// Start starts the Handler's [Queue]. With the default in-memory queue it
// is optional: the queue starts on the first accepted delivery. With a
// durable queue, call it once the callbacks are registered, so that
// deliveries stored by an earlier process run without waiting for new
// traffic. Start returns nil if the queue already runs, the queue's error
// if it cannot start (a later call tries again), and [ErrShutdown] after
// [Handler.Shutdown].
func (h *Handler) Start(ctx context.Context) error {
	if h.started.Load() && !h.closing.Load() {
		return nil
	}
	h.startMu.Lock()
	defer h.startMu.Unlock()
	switch {
	case h.closing.Load():
		return ErrShutdown
	case h.started.Load():
		return nil
	}
	if err := h.queue.Start(ctx, h); err != nil {
		return err
	}
	h.started.Store(true)
	return nil
}

// enqueue starts the queue if needed and hands it d. It reports false,
// nil when a [DedupingQueue] already holds d.ID.
func (h *Handler) enqueue(ctx context.Context, d Delivery) (bool, error) {
	if err := h.Start(ctx); err != nil {
		return false, err
	}
	if dq, ok := h.queue.(DedupingQueue); ok {
		return dq.EnqueueOnce(ctx, d)
	}
	return true, h.queue.Enqueue(ctx, d)
}

// RunCallback runs the callback registered for d.Status once, as attempt
// number attempt (1 for the first), which the callback reads with
// [AttemptFromContext]. It returns the callback's error; a panic is
// recovered, logged with its stack and returned as an error matching
// [ErrCallbackPanic]; a status with no callback registered returns an
// error matching [ErrNoCallback]. Errors are logged. RunCallback is for
// [Queue] implementations: retrying is the queue's business.
func (h *Handler) RunCallback(ctx context.Context, d Delivery, attempt int) error {
	if AttemptFromContext(ctx) != attempt { // the in-memory queue made it once
		ctx = context.WithValue(ctx, attemptKey{}, attempt)
	}
	err := h.observedCall(ctx, d, attempt)
	if err != nil {
		h.log.Warn("eachhook: callback failed", "id", d.ID, "status", d.Status, "attempt", attempt, "err", err)
	}
	return err
}

// GiveUp records that the callback of d failed and will not be run again
// after attempts attempts, the last of which returned err: it logs the
// failure, releases the id's claim in the [Store] so that a manual
// redelivery is processed, and passes a [*CallbackError] to the function
// set with [WithErrorHandler]. It is for [Queue] implementations.
func (h *Handler) GiveUp(ctx context.Context, d Delivery, attempts int, err error) {
	h.log.Error("eachhook: giving up on delivery", "id", d.ID, "status", d.Status, "attempts", attempts, "err", err)
	if rerr := h.store.Release(context.WithoutCancel(ctx), d.ID); rerr != nil {
		h.log.Error("eachhook: release failed", "id", d.ID, "err", rerr)
	}
	cerr := &CallbackError{ID: d.ID, Status: d.Status, Attempts: attempts, Err: err}
	h.gaveUp(ctx, cerr)
	h.callErrorHandler(ctx, cerr)
}

// call runs the callback for d once, turning a panic into an error.
func (h *Handler) call(ctx context.Context, d Delivery) (err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("eachhook: callback panicked", "id", d.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrCallbackPanic, v)
		}
	}()
	return h.invoke(ctx, d.Body)
}

// callErrorHandler passes err to the WithErrorHandler function, if any. A
// panic in it is logged, not passed on: it runs on a worker, and crashing
// the process would lose every delivery the in-memory queue holds.
func (h *Handler) callErrorHandler(ctx context.Context, err error) {
	if h.cfg.onError == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("eachhook: error handler panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	h.cfg.onError(ctx, err)
}
