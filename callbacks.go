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

	"github.com/eachhook/eachhook/observe"
)

// ErrCallbackPanic is matched by the error of a callback that panicked.
var ErrCallbackPanic = errors.New("eachhook: callback panicked")

// CallbackError reports a delivery that became a dead letter: its
// callback failed on every attempt, or no callback was registered for its
// status (Attempts 0). It is passed to the function set with
// [WithErrorHandler].
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

// callbacks are the registered callbacks. They are written before serving
// starts and only read afterwards, so they need no synchronisation of
// their own (see register).
type callbacks struct {
	success           func(context.Context, *Success) error
	failed            func(context.Context, *Failure) error
	workflowCompleted func(context.Context, *WorkflowRun) error
	workflowFailed    func(context.Context, *WorkflowRun) error
}

// OnSuccess registers fn to run for each prediction that succeeded. fn
// must tolerate a context cancelled at shutdown. A successful delivery
// that arrives while no callback is registered for it is acknowledged and
// kept as a dead letter (see [Handler.DeadLetters]). Register every
// callback before [Handler.Start] or the first request: a registration
// after that panics, since the Handler and its queue already decide with
// the callbacks they have.
func (h *Handler) OnSuccess(fn func(ctx context.Context, s *Success) error) {
	h.register("OnSuccess", func(c *callbacks) { c.success = fn })
}

// OnFailed registers fn to run for each prediction that failed, under the
// same rules as [Handler.OnSuccess].
func (h *Handler) OnFailed(fn func(ctx context.Context, f *Failure) error) {
	h.register("OnFailed", func(c *callbacks) { c.failed = fn })
}

// OnWorkflowCompleted registers fn to run for each workflow execution that
// completed, under the same rules as [Handler.OnSuccess]. One Handler can
// serve predictions and workflow executions on one endpoint: each delivery
// is routed by its fields (see the package documentation).
func (h *Handler) OnWorkflowCompleted(fn func(ctx context.Context, run *WorkflowRun) error) {
	h.register("OnWorkflowCompleted", func(c *callbacks) { c.workflowCompleted = fn })
}

// OnWorkflowFailed registers fn to run for each workflow execution that
// failed, under the same rules as [Handler.OnSuccess].
func (h *Handler) OnWorkflowFailed(fn func(ctx context.Context, run *WorkflowRun) error) {
	h.register("OnWorkflowFailed", func(c *callbacks) { c.workflowFailed = fn })
}

// register sets a callback unless serving has started. Serving starts
// under h.mu, after every registration made before it, and is published
// through h.started and h.serving, which the request and worker
// goroutines read before the callbacks.
func (h *Handler) register(name string, set func(*callbacks)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serving.Load() {
		panic("eachhook: " + name + " called after the Handler started serving: register every callback before Handler.Start and the first request")
	}
	set(&h.callbacks)
}

// has reports whether a callback is registered for env.
func (c *callbacks) has(env envelope) bool {
	switch eventOf(env.Kind, env.Status) {
	case eventSuccess:
		return c.success != nil
	case eventFailed:
		return c.failed != nil
	case eventWorkflowCompleted:
		return c.workflowCompleted != nil
	case eventWorkflowFailed:
		return c.workflowFailed != nil
	}
	return false
}

// errNoCallback is the error of an attempt whose status has no callback
// registered, such as a job stored by an earlier process configured
// otherwise: the queue keeps the delivery (a durable queue retries it
// later) instead of dropping it.
var errNoCallback = errors.New("eachhook: no callback registered for the delivery's status")

// invoke decodes an accepted body and runs the callback it is routed to.
// The body passed decodeEnvelope before it was accepted, so it classifies
// the same way here.
func (c *callbacks) invoke(ctx context.Context, body []byte) error {
	p := decodePayload(body)
	k, key, err := p.classify()
	if err != nil {
		return err
	}
	switch eventOf(k, p.Status) {
	case eventSuccess:
		if c.success != nil {
			return c.success(ctx, p.success(key, body))
		}
	case eventFailed:
		if c.failed != nil {
			return c.failed(ctx, p.failure(key, body))
		}
	case eventWorkflowCompleted:
		if c.workflowCompleted != nil {
			return c.workflowCompleted(ctx, p.workflowRun(body))
		}
	case eventWorkflowFailed:
		if c.workflowFailed != nil {
			return c.workflowFailed(ctx, p.workflowRun(body))
		}
	}
	return fmt.Errorf("%w: %q", errNoCallback, p.Status)
}

// runner is the [Runner] the Handler gives its Queue.
type runner struct{ h *Handler }

// Run implements [Runner].
func (r runner) Run(ctx context.Context, d Delivery, attempt int) error {
	h := r.h
	ctx = context.WithValue(ctx, attemptKey{}, attempt)
	obs := &h.cfg.observer
	run := observe.CallbackRun{ID: d.ID, Status: d.Status, Attempt: attempt, Request: d.request()}
	if obs.CallbackStarted != nil {
		if c := obs.CallbackStarted(ctx, run); c != nil {
			ctx = c
		}
	}
	start := h.cfg.now()
	run.Err = h.call(ctx, d)
	run.Duration = h.cfg.now().Sub(start)
	if obs.CallbackFinished != nil {
		obs.CallbackFinished(ctx, run)
	}
	if run.Err != nil {
		h.log.Warn("eachhook: callback failed", "id", d.ID, "status", d.Status, "attempt", attempt, "err", run.Err)
	} else {
		h.succeeded(ctx, d)
	}
	return run.Err
}

// GiveUp implements [Runner]: it releases the id's claim in the Store,
// tells the observer, and makes d a dead letter, which is logged and
// reported to the error handler.
func (r runner) GiveUp(ctx context.Context, d Delivery, attempts int, err error) {
	h := r.h
	if rerr := h.store.Release(context.WithoutCancel(ctx), d.ID); rerr != nil {
		h.log.Error("eachhook: release failed", "id", d.ID, "err", rerr)
	}
	if f := h.cfg.observer.GaveUp; f != nil {
		f(ctx, observe.DeliveryInfo{ID: d.ID, Status: d.Status}, attempts, err)
	}
	h.deadLetter(ctx, d, reasonCallbackFailed, attempts, err)
}

// call runs the callback for d once, turning a panic into an error.
func (h *Handler) call(ctx context.Context, d Delivery) (err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("eachhook: callback panicked", "id", d.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrCallbackPanic, v)
		}
	}()
	return h.callbacks.invoke(ctx, d.Body)
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
