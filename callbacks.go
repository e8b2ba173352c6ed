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
	"sync"
	"sync/atomic"
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
type runner struct {
	h *Handler
	// inline: Run is called by the in-memory queue, whose workers survive a
	// runtime.Goexit in a callback (a new goroutine takes over), so the
	// callback runs on the caller's goroutine. Another queue's goroutine
	// (River's job goroutine) would be lost to a Goexit: there the
	// callback runs on a goroutine of its own, and Run waits for it.
	inline bool
}

// errGoexit is the error of an attempt whose callback called runtime.Goexit.
var errGoexit = fmt.Errorf("%w: runtime.Goexit called (as t.FailNow does)", ErrCallbackPanic)

// Run implements [Runner]. It returns only once the callback returned.
func (r runner) Run(ctx context.Context, d Delivery, attempt int) error {
	h := r.h
	ctx = context.WithValue(ctx, attemptKey{}, attempt)
	obs := &h.cfg.observer
	start := h.cfg.now()
	run := observe.CallbackRun{ID: d.ID, Status: d.Status, Attempt: attempt, Request: d.request()}
	run.Waited = observe.WaitUnknown
	if !d.AcceptedAt.IsZero() {
		run.Waited = max(start.Sub(d.AcceptedAt), 0)
	}
	if obs.CallbackStarted != nil {
		if c := obs.CallbackStarted(ctx, run); c != nil {
			ctx = c
		}
	}
	finished := false
	defer func() {
		if !finished { // a Goexit ends this goroutine; the in-memory queue replaces it
			run.Err, run.Duration = errGoexit, h.cfg.now().Sub(start)
			h.finish(ctx, d, run)
		}
	}()
	run.Err = h.call(ctx, &d, start, r.inline)
	run.Duration = h.cfg.now().Sub(start)
	finished = true
	h.finish(ctx, d, run)
	return run.Err
}

// finish records the end of an attempt: on success the id is done and its
// dead letter, if any, deleted; then the observer hears of it.
func (h *Handler) finish(ctx context.Context, d Delivery, run observe.CallbackRun) {
	if run.Err == nil {
		// Recorded before the observer hears of it. A failure to mark the
		// id done leaves the claim to its lease, after which a redelivery
		// runs it again (at least once).
		bg := ctx
		if ctx.Err() != nil { // Shutdown gave up: record the success all the same
			bg = context.WithoutCancel(ctx)
		}
		if err := h.store.Complete(bg, d.ID, d.Claim, h.cfg.dedupeTTL); err != nil {
			h.log.Error("eachhook: marking a delivery done failed: a redelivery after the claim lease runs it again", "id", d.ID, "err", err)
		}
		h.succeeded(bg, d)
	} else {
		h.log.Warn("eachhook: callback failed", "id", d.ID, "status", d.Status, "attempt", run.Attempt, "err", run.Err)
	}
	if f := h.cfg.observer.CallbackFinished; f != nil {
		f(ctx, run)
	}
}

// CallbackTimeout implements [Runner].
func (r runner) CallbackTimeout() time.Duration { return r.h.cfg.callbackTimeout }

// call runs the callback for d once and returns when it returned; its
// context ends at the callback timeout. A panic becomes an error matching
// ErrCallbackPanic. Inline, a runtime.Goexit ends the caller's goroutine
// (see runner.inline); otherwise the callback runs on a goroutine of its
// own, whose Goexit becomes errGoexit. While it runs, the callback counts
// among the running ones, stuck once past its timeout (see Handler.stuck).
func (h *Handler) call(ctx context.Context, d *Delivery, start time.Time, inline bool) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.callbackTimeout)
	defer cancel()
	slot := h.running.begin(start.Add(h.cfg.callbackTimeout))
	defer h.running.end(slot)
	var err error
	if inline {
		err = h.guarded(ctx, d, nil)
	} else {
		result := make(chan error, 1)
		dd := *d // the goroutine's own copy: d stays on the caller's stack
		go func() { result <- h.guarded(ctx, &dd, result) }()
		err = <-result
	}
	if err == nil && ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		// It returned nil, but only after its deadline: it overran.
		err = fmt.Errorf("eachhook: callback overran its timeout of %v: %w", h.cfg.callbackTimeout, context.DeadlineExceeded)
	}
	return err
}

// guarded runs the callback for d, turning a panic into an error. On a
// runtime.Goexit it logs, and sends errGoexit to goexit if not nil.
func (h *Handler) guarded(ctx context.Context, d *Delivery, goexit chan<- error) (err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if v := recover(); v != nil {
			h.log.Error("eachhook: callback panicked", "id", d.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrCallbackPanic, v)
			return
		}
		h.log.Error("eachhook: callback called runtime.Goexit", "id", d.ID)
		if goexit != nil {
			goexit <- errGoexit
		}
	}()
	err = dispatch(ctx, &h.callbacks, d)
	returned = true
	return err
}

// running keeps the deadline of each callback attempt running now, so
// that the Handler tells those stuck past their timeout (see Handler.stuck).
type running struct {
	n    atomic.Int32 // attempts running
	mu   sync.Mutex
	ends []int64 // deadline (Unix nanoseconds) by slot; 0 marks a free slot
	free []int
}

// begin records an attempt that must end by deadline and returns its slot.
func (r *running) begin(deadline time.Time) int {
	r.n.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.ends)
	if k := len(r.free); k > 0 {
		i, r.free = r.free[k-1], r.free[:k-1]
	} else {
		r.ends = append(r.ends, 0)
	}
	r.ends[i] = deadline.UnixNano()
	return i
}

// end records that the attempt in slot i returned.
func (r *running) end(i int) {
	r.mu.Lock()
	r.ends[i] = 0
	r.free = append(r.free, i)
	r.mu.Unlock()
	r.n.Add(-1)
}

// stuck returns how many attempts run past their deadline at now.
func (r *running) stuck(now time.Time) int {
	t := now.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, end := range r.ends {
		if end != 0 && end <= t {
			n++
		}
	}
	return n
}

// stuck reports whether as many callbacks as [WithWorkers] allows run
// past their timeout: the Handler then refuses deliveries.
func (h *Handler) stuck() bool {
	w := h.cfg.workers
	return int(h.running.n.Load()) >= w && h.running.stuck(h.cfg.now()) >= w
}
