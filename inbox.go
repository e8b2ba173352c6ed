package eachhook

// This file owns the door for deliveries that did not arrive as signed
// requests, such as outcomes the reconciler of module
// github.com/eachhook/eachhook/eachloop learned by polling.

import (
	"context"
	"errors"
	"fmt"

	"github.com/eachhook/eachhook/observe"
)

// ErrNotQueued is matched by the error of [Handler.Deliver] when the
// Handler could not take the delivery now (it shuts down, its queue is not
// started, or the queue refused it). Nothing was accepted; try again later.
var ErrNotQueued = errors.New("eachhook: delivery not queued")

// Deliver runs body, a JSON object in one of the webhook's forms, through
// the Handler's dedupe store and queue as a verified webhook is, without
// checking a signature: call it only with a body the caller already trusts,
// such as a prediction it fetched from the each::labs API itself. It
// returns (true, nil) when the delivery was accepted and its callback will
// run, (false, nil) when there is nothing to run (a duplicate, a
// non-terminal status, or a status kept as a dead letter at once), and an
// error when nothing was accepted: one matching [ErrMalformedPayload] for a
// body that cannot be routed, [ErrNotQueued] when the queue refused it or
// the Handler is not serving, or the [Store]'s error. Of the observer's
// functions, only those about callbacks and the queue are called for it.
func (h *Handler) Deliver(ctx context.Context, body []byte) (queued bool, err error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return false, err
	}
	if h.closing.Load() {
		return false, fmt.Errorf("%w: %w", ErrNotQueued, ErrShutdown)
	}
	if !h.started.Load() {
		if _, err := h.startLazily(); err != nil {
			return false, fmt.Errorf("%w: %w", ErrNotQueued, err)
		}
	}
	o := h.admit(ctx, env, body)
	switch {
	case o.result == accepted:
		return true, nil
	case o.result != refused:
		return false, nil
	case o.queueErr != nil:
		return false, fmt.Errorf("%w: %w", ErrNotQueued, o.queueErr)
	case o.reason == observe.ReasonStore:
		return false, o.err
	}
	return false, fmt.Errorf("%w: %s", ErrNotQueued, o.reason)
}
