// Package observe holds the types of an eachhook Handler's observer: the
// functions that receive every outcome of a request and of a callback, for
// metrics, traces or logs. Install an [Observer] with eachhook.WithObserver;
// module github.com/eachhook/eachhook/eachhookotel builds one on
// OpenTelemetry. Standard library only.
package observe

import (
	"context"
	"errors"
	"time"
)

// Reason says why a Handler refused a request. The set of reasons is
// closed: every refusal carries exactly one of the constants below, so a
// metric labelled by reason has a fixed, small set of values.
type Reason string

// Refusal reasons, in the order the Handler checks them, with the status
// each is answered with. The values are short snake_case words, fit for a
// metric label.
const (
	// ReasonMethod: the method was not POST (405).
	ReasonMethod Reason = "method"
	// ReasonShutdown: the Handler's Shutdown has begun (503).
	ReasonShutdown Reason = "shutdown"
	// ReasonNotStarted: the Handler has a queue of its own (WithQueue)
	// and its Start has not been called or failed (503).
	ReasonNotStarted Reason = "not_started"
	// ReasonStuck: as many callbacks as the Handler has workers
	// (WithWorkers) run past their timeout (503).
	ReasonStuck Reason = "stuck"
	// ReasonMediaType: a Content-Type other than JSON (415).
	ReasonMediaType Reason = "media_type"
	// ReasonTooLarge: the body exceeds WithMaxBodyBytes (413).
	ReasonTooLarge Reason = "too_large"
	// ReasonUnreadable: reading the body failed, typically because the
	// client went away (400).
	ReasonUnreadable Reason = "unreadable"
	// ReasonSignature: the signature is missing, malformed or wrong, or no
	// secret is known for the delivery (401).
	ReasonSignature Reason = "signature"
	// ReasonTimestamp: the timestamp is malformed or out of tolerance (401).
	ReasonTimestamp Reason = "timestamp"
	// ReasonLookup: the SecretLookup failed (503).
	ReasonLookup Reason = "lookup"
	// ReasonMalformed: a verified body that is not a JSON object, or
	// whose kind and id cannot be told (400).
	ReasonMalformed Reason = "malformed"
	// ReasonStore: the dedupe Store, a queue's database or the dead-letter
	// store failed (503).
	ReasonStore Reason = "store"
	// ReasonQueueFull: every worker is busy and the queue is full (503).
	ReasonQueueFull Reason = "queue_full"
)

// Reasons lists every Reason, in the order above.
var Reasons = []Reason{
	ReasonMethod, ReasonShutdown, ReasonNotStarted, ReasonStuck, ReasonMediaType, ReasonTooLarge,
	ReasonUnreadable, ReasonSignature, ReasonTimestamp, ReasonLookup, ReasonMalformed, ReasonStore, ReasonQueueFull,
}

// ErrNotRun is the error passed to [Observer].GaveUp, with 0 attempts, for
// an accepted delivery that never ran because the Handler's Shutdown gave
// up waiting for it.
var ErrNotRun = errors.New("eachhook: accepted delivery not run before shutdown")

// Refusal describes a refused request.
type Refusal struct {
	// Reason says why the request was refused.
	Reason Reason
	// StatusCode is the HTTP status answered, such as 401.
	StatusCode int
	// ID is the key of a verified delivery refused at the store or the
	// queue (ReasonStore, ReasonQueueFull, ReasonNotStarted, and
	// ReasonShutdown when Shutdown began during the request), and ""
	// otherwise: an unverified id is never passed.
	ID string
	// Err is the error behind the refusal, such as one matching
	// signature.ErrInvalid or the store's error; nil when Reason says all.
	Err error
}

// DeliveryInfo identifies a verified delivery.
type DeliveryInfo struct {
	// ID is the delivery's key: the prediction id, or "workflow:" and the
	// workflow execution id.
	ID string
	// Status is the delivery's status as sent, such as "success".
	Status string
}

// WaitUnknown is [CallbackRun.Waited] when the queue did not say when it
// accepted the delivery (eachhook.Delivery.AcceptedAt zero). It is
// negative, so that no wait that was measured equals it.
const WaitUnknown time.Duration = -1

// CallbackRun describes one run (attempt) of a callback.
type CallbackRun struct {
	// ID is the delivery's key, as in [DeliveryInfo].
	ID string
	// Status is the delivery's status as sent: it tells which callback
	// runs.
	Status string
	// Attempt is 1 for the first run, 2 for the first retry, and so on.
	Attempt int
	// Request is the context of the request that delivered the
	// prediction, for its values only (such as a trace span to link to):
	// it is done by the time the callback runs. It is never nil.
	Request context.Context
	// Waited is how long the delivery waited between its acceptance (the
	// 200; for a durable queue, its job's insert) and the start of this
	// attempt; [WaitUnknown] when the queue did not say when it accepted
	// it.
	Waited time.Duration
	// Duration is how long the callback ran; zero in CallbackStarted.
	Duration time.Duration
	// Err is what the callback returned; it matches
	// eachhook.ErrCallbackPanic if the callback panicked. Nil in
	// CallbackStarted.
	Err error
}

// Observer receives every outcome of a Handler. Each field may be nil; a
// nil field costs the Handler one comparison. The functions are called
// concurrently from request and worker goroutines, must be safe for that,
// must not block (the request functions run before the response is
// written) and must not panic.
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
	// delivery with no callback to run (answered 200): a non-terminal
	// status (such as "processing"), or a status that became a dead
	// letter at once (unknown, or no callback registered for it).
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
	// its duration and error; after a successful attempt, once its id is
	// marked done in the Store.
	CallbackFinished func(ctx context.Context, run CallbackRun)
	// GaveUp is called for an accepted delivery whose callback will not
	// run again: every attempt failed (attempts is how many ran and err
	// the last one's error, the error the WithErrorHandler function gets
	// wraps it), or Shutdown gave up on it before it ran (attempts 0, err
	// matching [ErrNotRun]; the error handler does not see those).
	GaveUp func(ctx context.Context, d DeliveryInfo, attempts int, err error)
	// DeadLetterLost is called for a dead letter that no store kept: its
	// DeadLetterStore still failed at Shutdown, or 1000 others already
	// waited to be stored again. err is the store's last error.
	DeadLetterLost func(ctx context.Context, d DeliveryInfo, err error)
	// QueueChanged keeps the depth of the in-memory queue of deliveries
	// waiting for a worker: delta is +1 just before a delivery tries to
	// enter the queue and -1 when it leaves it (to a worker or to
	// Shutdown) or finds it full. The sum of the deltas is never negative;
	// it is the depth, plus the requests that are at that moment finding
	// the queue full. capacity is the queue's size (WithQueueSize).
	QueueChanged func(delta, capacity int)
}
