package eachhook

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotQueued is matched by the error of [Handler.Deliver] when the
// Handler could not take the outcome now: [Handler.Shutdown] has begun, or
// its [Queue] refused the delivery (the in-memory queue is full, a durable
// queue's database failed; the error wraps the queue's). Nothing was
// accepted; try again later.
var ErrNotQueued = errors.New("eachhook: delivery not queued")

// Deliver hands the Handler an outcome learned some other way than by a
// webhook, such as by polling the each::labs API, so that it runs through
// the same dedupe [Store] and queue as a verified webhook: a prediction id
// runs one callback, whichever of the webhook and Deliver comes first.
//
// body is a JSON object in one of the webhook's forms, such as "id" with
// a "status" of [StatusSuccess] or [StatusFailed]; it is routed and
// decoded as a webhook's body is, and the callback's Raw is body. Deliver
// verifies no signature: body must come from code you trust. The Handler
// keeps body; do not change it afterwards. Deliver is not a request: of
// the [Observer]'s functions, only those about callbacks and the queue
// are called for it, with ctx as the request's context.
//
// Deliver returns (true, nil) when it accepted the outcome: the callback
// will run as for a webhook answered 200. It returns (false, nil) when
// there is nothing to run: the id was accepted before within the dedupe
// TTL, or no callback is registered for the status (logged and dropped, as
// a webhook would be). An error means nothing was accepted: it matches
// [ErrMalformedPayload] for a body that cannot be routed, [ErrNotQueued]
// when the queue refused it or the Handler shuts down, or is the Store's
// error. With a durable [Queue], an accepted outcome is stored as a
// webhook's delivery is, and survives a crash the same way.
func (h *Handler) Deliver(ctx context.Context, body []byte) (bool, error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return false, err
	}
	if h.closing.Load() {
		return false, fmt.Errorf("%w: %w", ErrNotQueued, ErrShutdown)
	}
	res, err := h.admit(ctx, env, body)
	return res == admitAccepted && err == nil, err
}

// ReportError logs err and passes it to the function set with
// [WithErrorHandler], if any, on the calling goroutine. It lets code that
// works beside the Handler, such as the reconciler of package eachloop,
// report through the same hook as failed callbacks.
func (h *Handler) ReportError(ctx context.Context, err error) {
	if err == nil {
		return
	}
	h.log.Error("eachhook: reported error", "err", err)
	h.callErrorHandler(ctx, err)
}
