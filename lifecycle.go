package eachhook

// This file owns the Handler's lifecycle: Start, which fixes the
// configuration and starts the queue, and Shutdown, which stops intake and
// drains or hands back what was accepted.

import (
	"context"
	"errors"

	"github.com/eachhook/eachhook/observe"
)

// ErrShutdown is returned by [Handler.Start] after [Handler.Shutdown].
var ErrShutdown = errors.New("eachhook: handler shut down")

// errNotStarted is behind the 503 answered while a Queue set with
// [WithQueue] is not started.
var errNotStarted = errors.New("eachhook: queue not started: call Handler.Start before serving")

// Start fixes the Handler's configuration (callbacks registered later
// panic) and starts its [Queue], outside any request. With the default
// in-memory queue it is optional: the first request starts the queue.
// With a queue set by [WithQueue], such as a durable one, call it once the
// callbacks are registered and before serving: deliveries stored by an
// earlier process then run without waiting for new traffic, and until it
// succeeds every delivery is answered 503 (the sender retries). ctx bounds
// the start only. Start returns nil if the queue already runs, the queue's
// error if it cannot start (a later call tries again), and [ErrShutdown]
// after [Handler.Shutdown].
func (h *Handler) Start(ctx context.Context) error {
	if h.started.Load() && !h.closing.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serving.Store(true)
	switch {
	case h.closing.Load():
		return ErrShutdown
	case h.started.Load():
		return nil
	}
	if err := h.queue.Start(ctx, runner{h}); err != nil {
		return err
	}
	h.started.Store(true)
	return nil
}

// startLazily is what the first request does when the queue has not
// started: it starts the in-memory queue, and fixes the configuration
// with any queue. It returns the refusal's reason when it could not start.
func (h *Handler) startLazily() (observe.Reason, error) {
	if h.memQueue == nil {
		h.mu.Lock()
		h.serving.Store(true)
		h.mu.Unlock()
		return observe.ReasonNotStarted, errNotStarted
	}
	switch err := h.Start(context.Background()); {
	case errors.Is(err, ErrShutdown):
		return observe.ReasonShutdown, err
	case err != nil:
		return observe.ReasonNotStarted, err
	}
	return "", nil
}

// Shutdown stops accepting deliveries (new requests are answered 503) and
// hands the accepted ones to the queue's Shutdown. The in-memory queue
// waits until every delivery already accepted has run its callbacks,
// retries included. If ctx ends first, it cancels the callbacks' context,
// logs the id of every accepted delivery that never started (in memory
// mode they are lost: the sender saw a 200 and will not retry), and
// returns ctx.Err(); callbacks still running then end on their own. A
// durable queue instead keeps the deliveries it did not start, for the
// next process: see its documentation. Shutdown also stops the default
// [MemoryStore], and may be called more than once. After a Shutdown that
// returned ctx.Err(), callbacks still running may still complete claims in
// the [Store], record dead letters and call the [WithErrorHandler] function when they end:
// close a store you own only after that.
//
// Give it a context of its own, not one already cancelled: with the
// in-memory queue a cancelled context drops every delivery not yet run.
// Because the queues differ here, a test should not wait for callbacks by
// calling Shutdown (with a durable queue that checks nothing): wait with
// eachhooktest.Recorder, which works the same with every queue.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing.Store(true)
	h.serving.Store(true)
	h.mu.Unlock()
	err := h.queue.Shutdown(ctx)
	if h.ownStore != nil {
		h.ownStore.Close()
	}
	return err
}
