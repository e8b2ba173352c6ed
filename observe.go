package eachhook

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// RefusalReason says why a [Handler] refused a request. The set of reasons
// is closed: every refusal carries exactly one of the constants below, so a
// metric labelled by reason has a fixed, small set of values.
type RefusalReason string

// Refusal reasons, in the order the Handler checks them. The values are
// short snake_case words, fit for a metric label.
const (
	// ReasonMethod: the method was not POST (405).
	ReasonMethod RefusalReason = "method"
	// ReasonShutdown: [Handler.Shutdown] has begun (503).
	ReasonShutdown RefusalReason = "shutdown"
	// ReasonMediaType: a Content-Type other than JSON (415).
	ReasonMediaType RefusalReason = "media_type"
	// ReasonTooLarge: the body exceeds [WithMaxBodyBytes] (413).
	ReasonTooLarge RefusalReason = "too_large"
	// ReasonUnreadable: reading the body failed, typically because the
	// client went away (400).
	ReasonUnreadable RefusalReason = "unreadable"
	// ReasonSignature: the signature is missing, malformed or wrong, or no
	// secret is known for the delivery (401).
	ReasonSignature RefusalReason = "signature"
	// ReasonTimestamp: the timestamp is malformed or out of tolerance (401).
	ReasonTimestamp RefusalReason = "timestamp"
	// ReasonLookup: the [SecretLookup] failed (503).
	ReasonLookup RefusalReason = "lookup"
	// ReasonMalformed: a verified body that is not a JSON object, or
	// whose kind and id cannot be told (400).
	ReasonMalformed RefusalReason = "malformed"
	// ReasonStore: the dedupe [Store] failed (503).
	ReasonStore RefusalReason = "store"
	// ReasonQueueFull: every worker is busy and the queue is full (503).
	ReasonQueueFull RefusalReason = "queue_full"
)

// ErrNotRun is the error of a [CallbackError] passed to [Observer].GaveUp
// for an accepted delivery that never ran because [Handler.Shutdown] gave
// up waiting for it. Its Attempts is 0.
var ErrNotRun = errors.New("eachhook: accepted delivery not run before shutdown")

// Refusal describes a refused request.
type Refusal struct {
	// Reason says why the request was refused.
	Reason RefusalReason
	// StatusCode is the HTTP status answered, such as 401.
	StatusCode int
	// ID is the prediction id of a verified delivery refused at the store
	// or the queue (ReasonStore, ReasonQueueFull, and ReasonShutdown when
	// Shutdown began during the request), and "" otherwise: an unverified
	// id is never passed.
	ID string
	// Err is the error behind the refusal, such as one matching
	// [ErrInvalidSignature] or the store's error; nil when Reason says all.
	Err error
}

// DeliveryInfo identifies a verified delivery.
type DeliveryInfo struct {
	// ID is the delivery's key: the prediction id, or [WorkflowKeyPrefix]
	// and the workflow execution id.
	ID string
	// Status is the delivery's status as sent, such as [StatusSuccess].
	Status string
}

// CallbackRun describes one run (attempt) of a callback.
type CallbackRun struct {
	// ID is the delivery's key: the prediction id, or [WorkflowKeyPrefix]
	// and the workflow execution id.
	ID string
	// Status is the delivery's status as sent, such as [StatusSuccess] or
	// [StatusCompleted]: it tells which callback runs.
	Status string
	// Attempt is 1 for the first run, 2 for the first retry, and so on.
	Attempt int
	// Request is the context of the request that delivered the
	// prediction, for its values only (such as a trace span to link to):
	// it is done by the time the callback runs. It is never nil.
	Request context.Context
	// Duration is how long the callback ran; zero in CallbackStarted.
	Duration time.Duration
	// Err is what the callback returned; it matches [ErrCallbackPanic] if
	// the callback panicked. Nil in CallbackStarted.
	Err error
}

// Observer receives every outcome of a [Handler], for metrics, traces or
// logs. Install one with [WithObserver]. Each field may be nil; a nil field
// costs the Handler one comparison. The functions are called concurrently
// from request and worker goroutines, must be safe for that, must not
// block (the request functions run before the response is written) and
// must not panic.
//
// Each request ends in exactly one of Refused, Duplicate, Ignored or
// Accepted. Each accepted delivery then has one CallbackStarted and one
// CallbackFinished per attempt, and, if no attempt succeeded, one GaveUp.
type Observer struct {
	// Refused is called with the request's context for each request the
	// Handler refused.
	Refused func(ctx context.Context, r Refusal)
	// Duplicate is called with the request's context for a verified
	// delivery whose id was already accepted (answered 200, no callback).
	Duplicate func(ctx context.Context, d DeliveryInfo)
	// Ignored is called with the request's context for a verified
	// delivery with no callback to run: a status that has none (such as
	// "processing"), or no callback registered for it (answered 200).
	Ignored func(ctx context.Context, d DeliveryInfo)
	// Accepted is called with the request's context for a delivery
	// claimed and queued for its callback (answered 200).
	Accepted func(ctx context.Context, d DeliveryInfo)
	// CallbackStarted is called on the worker before each attempt, with
	// the context the callback would get. The context it returns, which
	// must be ctx or derived from it (to carry a span, for example), is
	// passed to the callback and to CallbackFinished.
	CallbackStarted func(ctx context.Context, run CallbackRun) context.Context
	// CallbackFinished is called on the worker after each attempt, with
	// its duration and error.
	CallbackFinished func(ctx context.Context, run CallbackRun)
	// GaveUp is called for an accepted delivery whose callback will not
	// run again: every attempt failed, or Shutdown gave up on it. When
	// the callback ran, err is the [CallbackError] also passed to
	// [WithErrorHandler]; for a delivery Shutdown dropped before it ran
	// (which the error handler does not see), err has Attempts 0 and an
	// Err matching [ErrNotRun].
	GaveUp func(ctx context.Context, err *CallbackError)
	// QueueChanged keeps the depth of the queue of deliveries waiting for
	// a worker: delta is +1 just before a delivery tries to enter the
	// queue and -1 when it leaves it (to a worker or to Shutdown) or finds
	// it full. The sum of the deltas is never negative; it is the depth,
	// plus the requests that are at that moment finding the queue full.
	// capacity is the queue's size ([WithQueueSize]).
	QueueChanged func(delta, capacity int)
}

// observeConfig holds the options of this file.
type observeConfig struct {
	observer    Observer
	logPayloads bool
}

// WithObserver installs o to receive every outcome of the Handler. A later
// WithObserver replaces an earlier one. Default: none.
func WithObserver(o Observer) Option {
	return func(c *config) error {
		c.observe.observer = o
		return nil
	}
}

// WithPayloadLogging logs the body of every verified delivery at debug
// level through the logger ([WithLogger]), with the attributes id, status
// and body, to debug what the sender sends. A body is logged only after
// its signature verified, so a forged request cannot write into the logs;
// under [WithInsecureSkipVerification] every body counts as verified.
// Headers are never logged. Bodies may hold personal data and output URLs:
// enable this while debugging only. Default: off.
func WithPayloadLogging() Option {
	return func(c *config) error {
		c.observe.logPayloads = true
		return nil
	}
}

// refused reports a refusal to the observer.
func (h *Handler) refused(ctx context.Context, reason RefusalReason, code int, id string, err error) {
	if f := h.cfg.observe.observer.Refused; f != nil {
		f(ctx, Refusal{Reason: reason, StatusCode: code, ID: id, Err: err})
	}
}

// refusedUnverified reports a verification failure, telling a bad
// timestamp from a bad signature.
func (h *Handler) refusedUnverified(ctx context.Context, err error) {
	reason := ReasonSignature
	if errors.Is(err, ErrMalformedTimestamp) || errors.Is(err, ErrTimestampOutOfRange) {
		reason = ReasonTimestamp
	}
	h.refused(ctx, reason, 401, "", err)
}

// refusedNotQueued reports a verified delivery the queue did not take:
// Shutdown began after the request's first check, the in-memory queue was
// full, or another Queue failed to store it (reported as a store failure).
func (h *Handler) refusedNotQueued(ctx context.Context, env envelope, err error) {
	switch {
	case h.closing.Load():
		h.refused(ctx, ReasonShutdown, 503, env.ID, nil)
	case errors.Is(err, errQueueFull):
		h.refused(ctx, ReasonQueueFull, 503, env.ID, nil)
	default:
		h.refused(ctx, ReasonStore, 503, env.ID, err)
	}
}

func (h *Handler) duplicate(ctx context.Context, env envelope) {
	if f := h.cfg.observe.observer.Duplicate; f != nil {
		f(ctx, DeliveryInfo{ID: env.ID, Status: env.Status})
	}
}

func (h *Handler) ignored(ctx context.Context, env envelope) {
	if f := h.cfg.observe.observer.Ignored; f != nil {
		f(ctx, DeliveryInfo{ID: env.ID, Status: env.Status})
	}
}

func (h *Handler) accepted(ctx context.Context, env envelope) {
	if f := h.cfg.observe.observer.Accepted; f != nil {
		f(ctx, DeliveryInfo{ID: env.ID, Status: env.Status})
	}
}

func (h *Handler) queueChanged(delta, capacity int) {
	if f := h.cfg.observe.observer.QueueChanged; f != nil {
		f(delta, capacity)
	}
}

func (h *Handler) gaveUp(ctx context.Context, err *CallbackError) {
	if f := h.cfg.observe.observer.GaveUp; f != nil {
		f(ctx, err)
	}
}

// notRun reports an accepted delivery dropped by Shutdown.
func (h *Handler) notRun(d Delivery) {
	h.gaveUp(context.Background(), &CallbackError{ID: d.ID, Status: d.Status, Err: ErrNotRun})
}

// requestContext keeps a request's context in its delivery, for the
// callback functions of the observer. It is a pointer so that a delivery
// stays within its allocation size class when no observer needs it.
type requestContext struct{ ctx context.Context }

func (h *Handler) requestContext(ctx context.Context) *requestContext {
	o := &h.cfg.observe.observer
	if o.CallbackStarted == nil && o.CallbackFinished == nil {
		return nil
	}
	return &requestContext{ctx}
}

// observedCall runs attempt number attempt of d's callback, reporting it
// to the observer. ctx already carries the attempt number.
func (h *Handler) observedCall(ctx context.Context, d Delivery, attempt int) error {
	o := &h.cfg.observe.observer
	if o.CallbackStarted == nil && o.CallbackFinished == nil {
		return h.call(ctx, d)
	}
	run := CallbackRun{ID: d.ID, Status: d.Status, Attempt: attempt, Request: context.Background()}
	if d.req != nil {
		run.Request = d.req.ctx
	}
	if o.CallbackStarted != nil {
		if c := o.CallbackStarted(ctx, run); c != nil {
			ctx = c
		}
	}
	start := h.cfg.now()
	run.Err = h.call(ctx, d)
	run.Duration = h.cfg.now().Sub(start)
	if o.CallbackFinished != nil {
		o.CallbackFinished(ctx, run)
	}
	return run.Err
}

// logPayload logs a verified body when WithPayloadLogging is on. It is
// small enough to inline, so that the default costs one comparison.
func (h *Handler) logPayload(ctx context.Context, env envelope, body []byte) {
	if h.cfg.observe.logPayloads {
		h.writePayloadLog(ctx, env, body)
	}
}

func (h *Handler) writePayloadLog(ctx context.Context, env envelope, body []byte) {
	if !h.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	h.log.LogAttrs(ctx, slog.LevelDebug, "eachhook: verified payload",
		slog.String("id", env.ID), slog.String("status", env.Status), slog.String("body", string(body)))
}
