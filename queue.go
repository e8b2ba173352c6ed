package eachhook

// This file owns admission, the step after authentication: the dedupe
// claim in the Store and the hand-over to the Queue, with the contract
// between the Handler and a Queue (Queue, Runner, Delivery).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eachhook/eachhook/observe"
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
	// AcceptedAt is when the Handler accepted the delivery (for a
	// durable queue: when its job was inserted); the observer reports the
	// wait from it. Zero when unknown.
	AcceptedAt time.Time
	// Claim is the token of the Handler's claim of ID in its [Store], or
	// "" when the Handler did not win the claim (a [DedupingQueue] decided
	// the delivery was new). The [Runner] completes or releases that
	// claim by this token, so a queue that persists a delivery must store
	// it with the delivery and give it back unchanged.
	Claim string

	req context.Context // the request's context, kept for an observer; may be nil
}

func (d *Delivery) request() context.Context {
	if d.req == nil {
		return context.Background()
	}
	return d.req
}

// Runner is what a [Queue] gets from the Handler in Start: the two
// operations that run a delivery. It is safe for concurrent use.
type Runner interface {
	// Run runs the callback registered for d.Status once, as attempt
	// number attempt (1 for the first), which the callback reads with
	// [AttemptFromContext]. It returns the callback's error; a panic, or a
	// call of [runtime.Goexit] (what testing.T.FailNow does), ends the
	// attempt only: it is logged and returned as an error matching
	// [ErrCallbackPanic], and the calling goroutine goes on. A status with
	// no callback registered is an error too, so that the queue keeps the
	// delivery. When the callback succeeded, Run marks d.ID done in the
	// [Store] (by d.Claim, for the dedupe TTL), so that a redelivery is a
	// duplicate. Errors are logged. Retrying is the queue's business.
	Run(ctx context.Context, d Delivery, attempt int) error
	// GiveUp records that the callback of d failed and will not be run
	// again after attempts attempts, the last of which returned err: it
	// releases the id's claim in the [Store] and makes d a dead letter
	// (see [Handler.DeadLetters]; kept in the dead-letter store unless the
	// queue keeps its own, see [Queue]), logged at error level and passed
	// as a [*CallbackError] to the function set with [WithErrorHandler].
	// Call it once per delivery given up.
	GiveUp(ctx context.Context, d Delivery, attempts int, err error)
	// CallbackTimeout is how long Run lets one attempt run
	// ([WithCallbackTimeout]). A queue with a timeout or a lease of its
	// own (a durable queue's job timeout and rescue) derives them from
	// it, so that the two never disagree.
	CallbackTimeout() time.Duration
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
// A Queue serves one Handler. [Handler.Start] calls Start; the Handler
// then calls Enqueue once per accepted delivery, and Shutdown from
// [Handler.Shutdown]. A Queue runs each delivery by calling the Runner's
// Run once per attempt, with its own retry policy, and GiveUp when it
// stops retrying.
//
// The Handler keeps what is common to every queue: verification, the
// dedupe claim before Enqueue, its release when Enqueue fails, decoding
// the body for the callbacks and the attempt number in their context.
// Retrying belongs to the queue, because only the queue knows where the
// attempt count lives: in a goroutine's loop for the in-memory queue, in
// the stored job for a durable one, which also survives a restart.
//
// A Queue that keeps the deliveries it gave up on itself, as the durable
// queue keeps its discarded jobs, may also have these three methods, which
// the Handler then calls (their contract is that of the Handler's methods
// of the same names, for the queue's dead letters):
//
//	DeadLetters(ctx context.Context) ([]DeadLetter, error)
//	Replay(ctx context.Context, id string) error
//	Discard(ctx context.Context, id string) error
//
// [Handler.DeadLetters] then lists the queue's dead letters with those of
// its [DeadLetterStore]; [Handler.Replay] and [Handler.Discard] go to the
// queue for an id the store does not hold; and [Runner.GiveUp] no longer
// stores a dead letter, since the queue keeps it.
type Queue interface {
	// Start begins running queued deliveries through r, including, for
	// a durable queue, those an earlier process left unfinished. ctx
	// bounds the start only; running goes on until Shutdown. After an
	// error the Handler answers 503 until a later [Handler.Start]
	// succeeds.
	Start(ctx context.Context, r Runner) error
	// Enqueue queues d. It returns nil only once d is safely queued (for a
	// durable queue: once the insert is committed, with d.Claim) or was
	// queued earlier under the same id; the Handler answers 200 only then.
	// On any error the Handler releases the id's claim and answers 503 with
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

// admit claims a decoded delivery's id and queues it: the steps a verified
// webhook and the reconciler's deliveries share. A refusal means nothing
// was accepted (a claim already taken is released). A non-terminal status
// is acknowledged with nothing to run; a status this package does not know,
// or a terminal one with no callback registered, is acknowledged and kept
// as a dead letter.
func (h *Handler) admit(ctx context.Context, env envelope, body []byte) outcome {
	ev := eventOf(env.Kind, env.Status)
	reason := ""
	switch {
	case ev == eventNone:
		h.log.Debug("eachhook: acknowledged delivery with a non-terminal status", "id", env.ID, "status", env.Status)
		return outcome{result: ignored, env: env}
	case ev == eventUnknown:
		reason = reasonUnknownStatus
	case !h.callbacks.has(ev):
		reason = reasonNoCallback
	}
	token, claimed, err := h.store.Claim(ctx, env.ID, h.claimLease)
	if err != nil {
		return outcome{result: refused, reason: observe.ReasonStore, err: err, env: env}
	}
	d := Delivery{ID: env.ID, Status: env.Status, Body: body, Claim: token, AcceptedAt: h.cfg.now()}
	if reason != "" {
		if !claimed {
			h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
			return outcome{result: duplicate, env: env}
		}
		h.keepDeadLetter(ctx, d, reason, 0, fmt.Errorf("%w: %q", errNoCallback, env.Status))
		return outcome{result: ignored, env: env}
	}
	_, deduping := h.queue.(DedupingQueue)
	if !claimed && !deduping {
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return outcome{result: duplicate, env: env}
	}
	return h.handOver(ctx, d, claimed)
}

// handOver queues d, whose claim this Handler holds when claimed: the
// step admit and a dead letter's replay share. A refusal means nothing
// was accepted (the claim is released).
func (h *Handler) handOver(ctx context.Context, d Delivery, claimed bool) outcome {
	env := envelope{ID: d.ID, Status: d.Status}
	if obs := &h.cfg.observer; obs.CallbackStarted != nil || obs.CallbackFinished != nil {
		d.req = ctx
	}
	var err error
	fresh := true
	if dq, ok := h.queue.(DedupingQueue); ok {
		// A DedupingQueue decides duplicates itself, also when the claim
		// was not won: see DedupingQueue.
		fresh, err = dq.EnqueueOnce(ctx, d)
	} else {
		err = h.queue.Enqueue(ctx, d)
	}
	if err != nil {
		if claimed {
			// Release so that the sender's retry of this delivery is processed.
			if rerr := h.store.Release(context.WithoutCancel(ctx), d.ID, d.Claim); rerr != nil {
				h.log.Error("eachhook: release after failed enqueue failed", "id", d.ID, "err", rerr)
			}
		}
		o := outcome{result: refused, reason: observe.ReasonStore, err: err, env: env, queueErr: err}
		switch {
		case h.closing.Load():
			o.reason, o.err = observe.ReasonShutdown, nil
		case errors.Is(err, errQueueFull):
			o.reason, o.err = observe.ReasonQueueFull, nil
		}
		return o
	}
	if !fresh {
		h.log.Debug("eachhook: duplicate delivery", "id", d.ID)
		return outcome{result: duplicate, env: env}
	}
	return outcome{result: accepted, env: env}
}
