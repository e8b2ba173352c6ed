package eachhook

// This file owns the callbacks: their registration (fixed once serving
// starts), the routing of a delivery to the callback for its kind and
// status, and the running of one attempt, which is what a Queue's Runner
// does, with the giving up that ends a delivery's attempts.

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/eachhook/eachhook/observe"
)

// ErrCallbackPanic is matched by the error of a callback attempt that
// panicked or called [runtime.Goexit]. It counts as a failed attempt; the
// goroutine that ran it goes on.
var ErrCallbackPanic = errors.New("eachhook: callback panicked")

// CallbackError reports a delivery that became a dead letter to the
// [WithErrorHandler] function.
type CallbackError struct {
	ID       string // the delivery's key (see [WorkflowKeyPrefix])
	Status   string // as sent
	Attempts int    // how many times the callback ran; 0 when none is registered
	Err      error  // the last attempt's error
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

// callbacks are the registered callbacks. They are written before serving
// starts and only read afterwards, so they need no synchronisation of
// their own (see register).
type callbacks struct {
	success           func(context.Context, *Success) error
	failed            func(context.Context, *Failure) error
	workflowCompleted func(context.Context, *WorkflowRun) error
	workflowFailed    func(context.Context, *WorkflowRun) error
	// has tells, by event, whether its callback is registered.
	has [eventCount]bool
}

// OnSuccess registers fn for each prediction that succeeded ("success" or
// "succeeded"). fn must tolerate a context cancelled at shutdown. A terminal
// delivery with no callback for its status becomes a dead letter. Register
// before [Handler.Start] and the first request; later, it panics.
func (h *Handler) OnSuccess(fn func(ctx context.Context, s *Success) error) {
	h.register("OnSuccess", eventSuccess, fn != nil, func(c *callbacks) { c.success = fn })
}

// OnFailed registers fn for each prediction that failed ("failed" or
// "error") or was cancelled, as [Handler.OnSuccess] does.
func (h *Handler) OnFailed(fn func(ctx context.Context, f *Failure) error) {
	h.register("OnFailed", eventFailed, fn != nil, func(c *callbacks) { c.failed = fn })
}

// OnWorkflowCompleted registers fn for each workflow execution that
// completed, as [Handler.OnSuccess] does.
func (h *Handler) OnWorkflowCompleted(fn func(ctx context.Context, run *WorkflowRun) error) {
	h.register("OnWorkflowCompleted", eventWorkflowCompleted, fn != nil, func(c *callbacks) { c.workflowCompleted = fn })
}

// OnWorkflowFailed registers fn for each workflow execution that failed
// ("failed" or "error") or was cancelled, as [Handler.OnSuccess] does.
func (h *Handler) OnWorkflowFailed(fn func(ctx context.Context, run *WorkflowRun) error) {
	h.register("OnWorkflowFailed", eventWorkflowFailed, fn != nil, func(c *callbacks) { c.workflowFailed = fn })
}

// register sets a callback unless serving has started. Serving starts
// under h.mu, after every registration made before it, and is published
// through h.started and h.serving, which the request and worker
// goroutines read before the callbacks.
func (h *Handler) register(name string, ev event, registered bool, set func(*callbacks)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serving.Load() {
		panic("eachhook: " + name + " called after the Handler started serving: register every callback before Handler.Start and the first request")
	}
	set(&h.callbacks)
	h.callbacks.has[ev] = registered
}

// errNoCallback is the error of an attempt whose status has no callback
// registered, such as a job stored by an earlier process configured
// otherwise: the queue keeps the delivery (a durable queue retries it
// later) instead of dropping it, and it becomes a dead letter with reason
// "no_callback" when the queue gives up.
var errNoCallback = errors.New("eachhook: no callback registered for the delivery's status")

// runner is the [Runner] the Handler gives its Queue.
type runner struct{ h *Handler }

// Run implements [Runner].
func (r runner) Run(ctx context.Context, d Delivery, attempt int) error {
	h := r.h
	ctx = context.WithValue(ctx, attemptKey{}, attempt)
	obs := &h.cfg.observer
	start := h.cfg.now()
	run := observe.CallbackRun{ID: d.ID, Status: d.Status, Attempt: attempt, Request: d.request()}
	if !d.AcceptedAt.IsZero() {
		run.Waited = max(start.Sub(d.AcceptedAt), 0)
	}
	if obs.CallbackStarted != nil {
		if c := obs.CallbackStarted(ctx, run); c != nil {
			ctx = c
		}
	}
	run.Err = h.callWithin(ctx, d)
	run.Duration = h.cfg.now().Sub(start)
	if run.Err == nil {
		// Recorded before the observer hears of it. A failure to mark the
		// id done leaves the claim to its lease, after which a redelivery
		// runs it again (at least once).
		if err := h.store.Complete(context.WithoutCancel(ctx), d.ID, d.Claim, h.cfg.dedupeTTL); err != nil {
			h.log.Error("eachhook: marking a delivery done failed: a redelivery after the claim lease runs it again", "id", d.ID, "err", err)
		}
		h.succeeded(ctx, d)
	} else {
		h.log.Warn("eachhook: callback failed", "id", d.ID, "status", d.Status, "attempt", attempt, "err", run.Err)
	}
	if obs.CallbackFinished != nil {
		obs.CallbackFinished(ctx, run)
	}
	return run.Err
}

// CallbackTimeout implements [Runner].
func (r runner) CallbackTimeout() time.Duration { return r.h.cfg.callbackTimeout }

// callWithin runs the callback for d once on a goroutine of its own, so
// that a panic or a runtime.Goexit in it ends the attempt, not the caller's
// goroutine (a queue's worker): both become an error matching
// ErrCallbackPanic. It waits at most the callback timeout: a callback
// still running then is left to end on its own, its context cancelled,
// and the attempt fails with an error matching context.DeadlineExceeded,
// so that the worker goes on with the next delivery.
func (h *Handler) callWithin(ctx context.Context, d Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.callbackTimeout)
	defer cancel()
	result := make(chan error, 1)
	go func() {
		returned := false
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil {
				h.log.Error("eachhook: callback panicked", "id", d.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				result <- fmt.Errorf("%w: %v", ErrCallbackPanic, v)
				return
			}
			// Neither returned nor panicked: the callback called runtime.Goexit.
			h.log.Error("eachhook: callback called runtime.Goexit", "id", d.ID)
			result <- fmt.Errorf("%w: runtime.Goexit called (as t.FailNow does)", ErrCallbackPanic)
		}()
		err := dispatch(ctx, &h.callbacks, &d)
		returned = true
		result <- err
	}()
	select {
	case err := <-result:
		if err == nil && ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			// It returned nil, but only after its deadline: it overran.
			err = fmt.Errorf("eachhook: callback overran its timeout of %v: %w", h.cfg.callbackTimeout, context.DeadlineExceeded)
		}
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			h.log.Error("eachhook: callback still running at its timeout; left to end on its own", "id", d.ID, "timeout", h.cfg.callbackTimeout)
			return fmt.Errorf("eachhook: callback cut at its timeout of %v: %w", h.cfg.callbackTimeout, context.DeadlineExceeded)
		}
		// The queue's own context ended (shutdown gave up): wait no more.
		return ctx.Err()
	}
}
