package eachhook

// This file owns queueing: the contract between the Handler and a Queue
// (Queue, Runner, Delivery), the hand-over of an admitted delivery, and the
// default in-memory queue, which knows only its Runner and its settings.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook/observe"
)

// Delivery is a verified webhook that the Handler accepted and handed to
// its [Queue].
type Delivery struct {
	ID         string    // the dedupe key (see [WorkflowKeyPrefix])
	Status     string    // as sent, such as [StatusSuccess]
	Body       []byte    // the verified body; a persisting queue must keep it byte for byte
	AcceptedAt time.Time // when accepted (a durable queue: when inserted); zero when unknown
	// Claim is the token of the Handler's [Store] claim of ID, or "" when a
	// [DedupingQueue] decided. A persisting queue must give it back unchanged.
	Claim string

	req     context.Context // the request's context, kept for an observer; may be nil
	payload *wirePayload    // the request path's decoding of Body, for the in-memory queue; may be nil
}

func (d *Delivery) request() context.Context {
	if d.req == nil {
		return context.Background()
	}
	return d.req
}

// Runner is what a [Queue] gets from the Handler in Start. It is safe for
// concurrent use.
type Runner interface {
	// Run runs d's callback once as attempt number attempt (1 for the first)
	// and returns, once it returned, its error, one matching [ErrCallbackPanic]
	// after a panic or [runtime.Goexit], or an error when no callback handles
	// d.Status. On success it marks d.ID done and deletes its dead letter.
	Run(ctx context.Context, d Delivery, attempt int) error
	// GiveUp makes d a dead letter after attempts attempts, the last of which
	// returned err, and releases d.Claim. Call it once per delivery given up.
	GiveUp(ctx context.Context, d Delivery, attempts int, err error)
	// CallbackTimeout is how long Run lets one attempt run ([WithCallbackTimeout]).
	CallbackTimeout() time.Duration
}

// Queue queues and runs accepted deliveries ([WithQueue]). [Handler.Start]
// calls Start, the Handler calls Enqueue once per accepted delivery and
// Shutdown from [Handler.Shutdown]. The Queue calls [Runner.Run] once per
// attempt, retrying by its own policy, and [Runner.GiveUp] when it stops.
type Queue interface {
	// Start begins running queued deliveries through r; ctx bounds the start only.
	Start(ctx context.Context, r Runner) error
	// Enqueue returns nil only once d is safely queued (for a durable queue:
	// committed, with d.Claim) or was queued earlier under d.ID; the Handler
	// answers 200 only then. On error it releases the claim and answers 503.
	Enqueue(ctx context.Context, d Delivery) error
	// Shutdown stops intake and running, waits for callbacks in progress until
	// ctx ends, then returns ctx.Err(). It may be called again, and without Start.
	Shutdown(ctx context.Context) error
}

// DedupingQueue is an optional interface of a [Queue] that refuses a second
// delivery of an id itself, such as one whose insert is unique by id. The
// Handler then asks the queue, not only its [Store], whether a delivery is new.
type DedupingQueue interface {
	Queue
	// EnqueueOnce is Enqueue, returning false, nil when d.ID is already queued.
	EnqueueOnce(ctx context.Context, d Delivery) (queued bool, err error)
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
		default:
			fail(&h.failed.queue, h.cfg.now())
		}
		return o
	}
	recovered(&h.failed.queue)
	if !fresh {
		h.log.Debug("eachhook: duplicate delivery", "id", d.ID)
		return outcome{result: duplicate, env: env}
	}
	return outcome{result: accepted, env: env}
}

// maxBackoff caps the wait between two attempts of a callback.
const maxBackoff = time.Minute

// Errors of the in-memory queue; the Handler answers them with 503.
var (
	errQueueFull   = errors.New("eachhook: queue full")
	errQueueClosed = errors.New("eachhook: queue shut down")
)

// memQueue runs accepted deliveries on a fixed number of goroutines,
// started by Start. Sends to queue happen under mu.RLock after checking
// closed, so Shutdown can close queue under mu.Lock without a send racing.
type memQueue struct {
	memQueueConfig
	r       Runner // set by Start
	queue   chan Delivery
	mu      sync.RWMutex
	closed  bool
	started bool

	running sync.WaitGroup
	drained chan struct{} // closed when every worker has returned
	abandon atomic.Bool   // set when Shutdown's deadline passed

	ctx    context.Context // the callbacks' context
	cancel context.CancelFunc
}

var _ Queue = (*memQueue)(nil)

// memQueueConfig holds the in-memory queue's settings.
type memQueueConfig struct {
	workers, size, attempts int
	backoff                 time.Duration // before the second attempt, doubling (see backoffFor)
	// changed, if set, is told of every change of the number of waiting
	// deliveries (observe.Observer.QueueChanged).
	onChange func(delta, capacity int)
	// lost, if set, is called for each accepted delivery Shutdown drops
	// unrun when its deadline passed.
	onLost func(Delivery)
}

func newMemQueue(cfg memQueueConfig) *memQueue {
	q := &memQueue{memQueueConfig: cfg, queue: make(chan Delivery, cfg.size), drained: make(chan struct{})}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Start implements [Queue]: it starts the worker goroutines.
func (q *memQueue) Start(_ context.Context, r Runner) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return errQueueClosed
	case q.started:
		return nil
	}
	q.started, q.r = true, r
	q.running.Add(q.workers)
	for range q.workers {
		go q.work(nil, 0, nil)
	}
	go func() {
		q.running.Wait()
		close(q.drained)
	}()
	return nil
}

// Enqueue implements [Queue] without blocking: it fails when the queue is
// full or shut down.
func (q *memQueue) Enqueue(_ context.Context, d Delivery) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return errQueueClosed
	}
	// Count the delivery in before the send, so that a worker's count out
	// can never come first.
	q.changed(1)
	select {
	case q.queue <- d:
		return nil
	default:
		q.changed(-1)
		return errQueueFull
	}
}

// full reports whether a delivery would find the queue full now.
func (q *memQueue) full() bool { return len(q.queue) >= cap(q.queue) }

func (q *memQueue) changed(delta int) {
	if q.onChange != nil {
		q.onChange(delta, cap(q.queue))
	}
}

// work runs deliveries from the queue until it is closed, starting with
// the rest of d's attempts from attempt next (the last one's error last)
// when d is not nil. A runtime.Goexit in a Runner's Run ends the
// goroutine: a new one takes its place and goes on with the attempts of
// the delivery it ran, that attempt counted failed with errGoexit.
func (q *memQueue) work(d *Delivery, next int, last error) {
	var cur Delivery
	attempt, returned := 0, false
	defer func() {
		if !returned {
			q.running.Add(1) // before Done: Shutdown's wait never sees the workers gone
			go q.work(&cur, attempt+1, errGoexit)
		}
		q.running.Done()
	}()
	if d != nil {
		cur = *d
		q.run(&cur, &attempt, next, last)
	}
	for cur = range q.queue {
		q.changed(-1)
		if q.abandon.Load() {
			q.lose(cur)
			continue
		}
		q.run(&cur, &attempt, 1, nil)
	}
	returned = true
}

// run runs d's callback from attempt first until it succeeds or the
// attempts are used up, keeping the attempt running in *attempt; err is
// the error of the attempt before first.
func (q *memQueue) run(d *Delivery, attempt *int, first int, err error) {
	ran := first - 1
	for *attempt = first; *attempt <= q.attempts; *attempt++ {
		if *attempt > 1 && !sleep(q.ctx, backoffFor(q.backoff, *attempt)) {
			break // shutdown gave up waiting: report what ran so far
		}
		ran = *attempt
		if err = q.r.Run(q.ctx, *d, *attempt); err == nil {
			return
		}
	}
	q.r.GiveUp(q.ctx, *d, ran, err)
}

// lose hands a delivery Shutdown drops unrun to onLost.
func (q *memQueue) lose(d Delivery) {
	if q.onLost != nil {
		q.onLost(d)
	}
}

// Shutdown implements [Queue]; see [Handler.Shutdown] for its behaviour.
func (q *memQueue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.queue)
	}
	started := q.started
	q.mu.Unlock()
	if !started { // nothing was ever queued
		q.cancel()
		return nil
	}

	var err error
	select {
	case <-q.drained:
	case <-ctx.Done():
		err = ctx.Err()
		q.abandon.Store(true)
		for d := range q.queue {
			q.changed(-1)
			q.lose(d)
		}
	}
	q.cancel()
	return err
}

// backoffFor returns the wait before attempt (2 or more): base, doubling
// on each later attempt, capped at maxBackoff, without overflow.
func backoffFor(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		return 0
	}
	if shift := attempt - 2; shift < 32 && base <= maxBackoff>>shift {
		return base << shift
	}
	return maxBackoff
}

// sleep waits for d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
