package eachhook

// This file owns admission, the step after authentication: the dedupe
// claim in the Store and the hand-over to the Queue, with the contract
// between the Handler and a Queue (Queue, Runner, Delivery).

import (
	"context"
	"errors"
	"fmt"

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
	// [AttemptFromContext]. It returns the callback's error; a panic is
	// recovered, logged with its stack and returned as an error matching
	// [ErrCallbackPanic]; a status with no callback registered is an
	// error too, so that the queue keeps the delivery. Errors are logged.
	// Retrying is the queue's business.
	Run(ctx context.Context, d Delivery, attempt int) error
	// GiveUp records that the callback of d failed and will not be run
	// again after attempts attempts, the last of which returned err: it
	// releases the id's claim in the [Store] and makes d a dead letter
	// (see [Handler.DeadLetters]; kept in the dead-letter store unless the
	// queue keeps its own, see [Queue]), logged at error level and passed
	// as a [*CallbackError] to the function set with [WithErrorHandler].
	// Call it once per delivery given up.
	GiveUp(ctx context.Context, d Delivery, attempts int, err error)
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

// admit claims a decoded delivery's id and queues it: the steps a verified
// webhook and the reconciler's deliveries share. A refusal means nothing
// was accepted (a claim already taken is released).
func (h *Handler) admit(ctx context.Context, env envelope, body []byte) outcome {
	if !h.callbacks.has(env) {
		if eventOf(env.Kind, env.Status) != eventNone {
			// Terminal, but nothing handles it: acknowledged and kept.
			h.deadLetter(ctx, Delivery{ID: env.ID, Status: env.Status, Body: body}, reasonNoCallback, 0, fmt.Errorf("%w: %q", errNoCallback, env.Status))
			return outcome{result: ignored, env: env}
		}
		h.log.Info("eachhook: acknowledged delivery with no callback", "id", env.ID, "status", env.Status)
		return outcome{result: ignored, env: env}
	}
	claimed, err := h.store.Claim(ctx, env.ID, h.cfg.dedupeTTL)
	if err != nil {
		return outcome{result: refused, reason: observe.ReasonStore, err: err, env: env}
	}
	dq, deduping := h.queue.(DedupingQueue)
	if !claimed && !deduping {
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return outcome{result: duplicate, env: env}
	}
	d := Delivery{ID: env.ID, Status: env.Status, Body: body}
	if obs := &h.cfg.observer; obs.CallbackStarted != nil || obs.CallbackFinished != nil {
		d.req = ctx
	}
	fresh := true
	if deduping {
		// A DedupingQueue decides duplicates itself, also when the claim
		// was not won: see DedupingQueue.
		fresh, err = dq.EnqueueOnce(ctx, d)
	} else {
		err = h.queue.Enqueue(ctx, d)
	}
	if err != nil {
		if claimed {
			// Release so that the sender's retry of this delivery is processed.
			if rerr := h.store.Release(context.WithoutCancel(ctx), env.ID); rerr != nil {
				h.log.Error("eachhook: release after failed enqueue failed", "id", env.ID, "err", rerr)
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
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return outcome{result: duplicate, env: env}
	}
	return outcome{result: accepted, env: env}
}
