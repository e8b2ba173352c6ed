package eachhook

// This file owns the dead letters: deliveries acknowledged with 200 whose
// callback will not run again by itself (every attempt failed, or no
// callback handles their status). They are kept in a DeadLetterStore (by
// default a bounded one in memory) or, for a queue that keeps its own (the
// durable queue's discarded jobs), in the queue, and the Handler lists,
// replays and discards them.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/eachhook/eachhook/observe"
)

// ErrNoDeadLetter is returned by [Handler.Replay] and [Handler.Discard]
// for an id that is not a dead letter.
var ErrNoDeadLetter = errors.New("eachhook: no such dead letter")

// Reasons of a [DeadLetter].
const (
	reasonCallbackFailed = "callback_failed" // every attempt failed
	reasonNoCallback     = "no_callback"     // a terminal status with no callback registered
	reasonUnknownStatus  = "unknown_status"  // a status the Handler does not know
)

// DeadLetter is a delivery acknowledged with 200 whose callback will not
// run again unless [Handler.Replay] says so; it is the only copy of the event.
type DeadLetter struct {
	ID       string    // the delivery's dedupe key as reported elsewhere
	Status   string    // as sent
	Reason   string    // "callback_failed", "no_callback" or "unknown_status"
	Body     []byte    // the raw body as received
	Attempts int       // callback attempts made (0 when none ran)
	Err      string    // the last attempt's error, if any
	At       time.Time // when it became a dead letter
}

// DeadLetterStore keeps the [DeadLetter]s of a Handler, one per ID.
// Implementations must be safe for concurrent use, also across processes,
// and keep Body byte for byte; At may come back truncated to the microsecond.
// An error means a system failure only, or a context already done.
type DeadLetterStore interface {
	// Add stores dl, replacing any dead letter of the same ID.
	Add(ctx context.Context, dl DeadLetter) error
	// List returns every dead letter ordered by At, then ID.
	List(ctx context.Context) ([]DeadLetter, error)
	// Get returns id's dead letter and true, or a zero DeadLetter, false, nil.
	Get(ctx context.Context, id string) (DeadLetter, bool, error)
	// Delete removes id's dead letter and reports whether there was one.
	Delete(ctx context.Context, id string) (bool, error)
}

// DeadLetterQueue is an optional interface of a [Queue] that keeps the
// deliveries it gave up on itself. The Handler then lists them and sends it
// the Replay and Discard of an id its own store does not hold.
type DeadLetterQueue interface {
	Queue
	// DeadLetters lists the queue's dead letters, oldest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	// Replay queues the dead letter id again, or returns [ErrNoDeadLetter].
	Replay(ctx context.Context, id string) error
	// Discard deletes the dead letter id, or returns [ErrNoDeadLetter].
	Discard(ctx context.Context, id string) error
}

// deadLetterStoreTimeout bounds a write to the dead-letter store made
// after the 200 (its caller cannot retry it).
const deadLetterStoreTimeout = 10 * time.Second

// deadLetters is the Handler's part that keeps its dead letters.
type deadLetters struct {
	store DeadLetterStore
	// replaying holds the ids replayed through this Handler's queue whose
	// callback has not succeeded since: their dead letter is deleted when
	// it does.
	replaying sync.Map // id -> struct{}
}

// deadLetter records that the delivery d became a dead letter for reason,
// after attempts attempts, the last of which returned err: it stores the
// dead letter (unless the queue keeps its own, as a durable queue's
// discarded job), logs it at error level and passes a [*CallbackError] to
// the error handler, once per dead letter.
func (h *Handler) deadLetter(ctx context.Context, d Delivery, reason string, attempts int, err error) {
	dl := DeadLetter{ID: d.ID, Status: d.Status, Reason: reason, Body: d.Body, Attempts: attempts, At: h.cfg.now()}
	if err != nil {
		dl.Err = err.Error()
	}
	if _, queueKeeps := h.queue.(DeadLetterQueue); !queueKeeps || reason != reasonCallbackFailed {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterStoreTimeout)
		serr := h.dead.store.Add(sctx, dl)
		cancel()
		if serr != nil {
			h.log.Error("eachhook: dead letter not stored: the delivery is lost", "id", d.ID, "status", d.Status, "reason", reason, "err", serr)
		}
	}
	h.log.Error("eachhook: dead letter", "id", d.ID, "status", d.Status, "reason", reason, "attempts", attempts, "err", err)
	h.callErrorHandler(ctx, &CallbackError{ID: d.ID, Status: d.Status, Attempts: attempts, Err: err})
}

// succeeded is called after a callback of d succeeded: a dead letter
// replayed through this Handler's queue is deleted.
func (h *Handler) succeeded(ctx context.Context, d Delivery) {
	if _, ok := h.dead.replaying.LoadAndDelete(d.ID); !ok {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterStoreTimeout)
	defer cancel()
	if _, err := h.dead.store.Delete(sctx, d.ID); err != nil {
		h.log.Error("eachhook: replayed dead letter succeeded but could not be deleted", "id", d.ID, "err", err)
		return
	}
	h.log.Info("eachhook: replayed dead letter succeeded", "id", d.ID, "status", d.Status)
}

// DeadLetters returns the dead letters, oldest first (by [DeadLetter.At],
// then ID), from the [DeadLetterStore] and from a [DeadLetterQueue].
func (h *Handler) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	list, err := h.dead.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("eachhook: dead letters: %w", err)
	}
	if q, ok := h.queue.(DeadLetterQueue); ok {
		more, err := q.DeadLetters(ctx)
		if err != nil {
			return nil, fmt.Errorf("eachhook: dead letters: %w", err)
		}
		list = append(list, more...)
		slices.SortStableFunc(list, func(a, b DeadLetter) int {
			return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
		})
	}
	return list, nil
}

// Replay queues the dead letter id again, starting the default queue if
// needed (with [WithQueue], call [Handler.Start] first), and returns nil once
// queued; if every attempt fails, it becomes a dead letter again. It returns
// [ErrNoDeadLetter] when id is not a dead letter, and another error, keeping
// the dead letter, when no callback handles its status, the queue refused it
// ([ErrShutdown] after [Handler.Shutdown]) or the store failed. The dead
// letter stays listed until a replayed attempt succeeds, except with a
// [DeadLetterQueue], which then keeps it (and replays ids the store lacks).
func (h *Handler) Replay(ctx context.Context, id string) error {
	dl, ok, err := h.dead.store.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("eachhook: replay %s: %w", id, err)
	}
	if !ok {
		if q, own := h.queue.(DeadLetterQueue); own {
			return q.Replay(ctx, id)
		}
		return ErrNoDeadLetter
	}
	return h.replay(ctx, dl)
}

// replay queues the delivery of dl from the store again.
func (h *Handler) replay(ctx context.Context, dl DeadLetter) error {
	if h.closing.Load() {
		return ErrShutdown
	}
	if !h.started.Load() {
		if _, err := h.startLazily(); err != nil {
			return err
		}
	}
	env, err := decodeEnvelope(dl.Body)
	if err != nil {
		return fmt.Errorf("eachhook: replay %s: %w", dl.ID, err)
	}
	if !h.callbacks.has[env.Event] {
		return fmt.Errorf("eachhook: replay %s: %w: %q", dl.ID, errNoCallback, env.Status)
	}
	// A dead letter keeps its id claimed as done, so that a redelivery
	// runs nothing; the replay is queued without a claim of its own: the
	// user asked for the callback to run again. Its success removes the
	// dead letter; its failure makes it one again.
	_, queueKeeps := h.queue.(DeadLetterQueue)
	if !queueKeeps {
		// Marked before the queue can run it, so that its success finds
		// the mark.
		h.dead.replaying.Store(env.ID, struct{}{})
	}
	o := h.handOver(ctx, Delivery{ID: env.ID, Status: env.Status, Body: dl.Body, AcceptedAt: h.cfg.now()}, false)
	switch {
	case o.result == refused:
		err := cmp.Or(o.err, o.queueErr)
		switch {
		case o.reason == observe.ReasonShutdown:
			err = ErrShutdown
		case err == nil:
			err = errors.New(string(o.reason))
		}
		return fmt.Errorf("eachhook: replay %s: not queued: %w", dl.ID, err)
	case queueKeeps:
		// The queue now holds a delivery of id durably (this one, or one
		// stored since), and keeps it as its own dead letter if it fails.
		if _, err := h.dead.store.Delete(context.WithoutCancel(ctx), dl.ID); err != nil {
			h.log.Error("eachhook: replayed dead letter queued but could not be deleted", "id", dl.ID, "err", err)
		}
	}
	h.log.Info("eachhook: dead letter replayed", "id", dl.ID, "status", dl.Status, "reason", dl.Reason)
	return nil
}

// Discard deletes the dead letter id (also from a [DeadLetterQueue]) without
// running its callback, or returns [ErrNoDeadLetter].
func (h *Handler) Discard(ctx context.Context, id string) error {
	found, err := h.dead.store.Delete(ctx, id)
	if err != nil {
		return fmt.Errorf("eachhook: discard %s: %w", id, err)
	}
	h.dead.replaying.Delete(id)
	if q, own := h.queue.(DeadLetterQueue); own {
		err := q.Discard(ctx, id)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, ErrNoDeadLetter):
			return err
		}
	}
	if !found {
		return ErrNoDeadLetter
	}
	h.log.Info("eachhook: dead letter discarded", "id", id)
	return nil
}

// Bounds of the default dead-letter store, stated in [WithDeadLetters].
const (
	memoryDeadLettersMax      = 1000
	memoryDeadLettersMaxBytes = 64 << 20
)

// memoryDeadLetters is the default [DeadLetterStore]: in memory, holding
// at most max dead letters and maxBytes of bodies. Adding beyond either
// evicts the oldest, each logged at error level with its id (its event is
// then lost); the newest is kept even when its body alone is larger.
type memoryDeadLetters struct {
	log           *slog.Logger
	max, maxBytes int

	mu    sync.Mutex
	byID  map[string]DeadLetter
	bytes int
}

func newMemoryDeadLetters(log *slog.Logger, max, maxBytes int) *memoryDeadLetters {
	return &memoryDeadLetters{log: log, max: max, maxBytes: maxBytes, byID: make(map[string]DeadLetter)}
}

// Add implements [DeadLetterStore].
func (m *memoryDeadLetters) Add(ctx context.Context, dl DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl.Body = slices.Clone(dl.Body)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.byID[dl.ID]; ok {
		m.bytes -= len(old.Body)
	}
	m.byID[dl.ID] = dl
	m.bytes += len(dl.Body)
	for len(m.byID) > m.max || (m.bytes > m.maxBytes && len(m.byID) > 1) {
		oldest := m.oldestLocked(dl.ID)
		delete(m.byID, oldest.ID)
		m.bytes -= len(oldest.Body)
		m.log.Error("eachhook: dead letter evicted: the in-memory dead letters are full, the delivery is lost",
			"id", oldest.ID, "status", oldest.Status, "reason", oldest.Reason, "at", oldest.At, "max", m.max, "max_bytes", m.maxBytes)
	}
	return nil
}

// oldestLocked returns the oldest dead letter other than keep. Eviction
// is rare enough (the store is full) for a scan.
func (m *memoryDeadLetters) oldestLocked(keep string) DeadLetter {
	var oldest DeadLetter
	first := true
	for _, dl := range m.byID {
		if dl.ID == keep {
			continue
		}
		if first || compareDeadLetters(dl, oldest) < 0 {
			oldest, first = dl, false
		}
	}
	return oldest
}

func compareDeadLetters(a, b DeadLetter) int {
	return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
}

// List implements [DeadLetterStore].
func (m *memoryDeadLetters) List(ctx context.Context) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	list := make([]DeadLetter, 0, len(m.byID))
	for _, dl := range m.byID {
		dl.Body = slices.Clone(dl.Body)
		list = append(list, dl)
	}
	m.mu.Unlock()
	slices.SortFunc(list, compareDeadLetters)
	return list, nil
}

// Get implements [DeadLetterStore].
func (m *memoryDeadLetters) Get(ctx context.Context, id string) (DeadLetter, bool, error) {
	if err := ctx.Err(); err != nil {
		return DeadLetter{}, false, err
	}
	m.mu.Lock()
	dl, ok := m.byID[id]
	m.mu.Unlock()
	dl.Body = slices.Clone(dl.Body)
	return dl, ok, nil
}

// Delete implements [DeadLetterStore].
func (m *memoryDeadLetters) Delete(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	dl, ok := m.byID[id]
	if ok {
		delete(m.byID, id)
		m.bytes -= len(dl.Body)
	}
	return ok, nil
}

// GiveUp implements [Runner]: it keeps the delivery as a dead letter
// (marked done first, then logged and reported to the error handler
// once) and tells the observer.
func (r runner) GiveUp(ctx context.Context, d Delivery, attempts int, err error) {
	h := r.h
	reason := reasonCallbackFailed
	if errors.Is(err, errNoCallback) {
		reason = reasonNoCallback
	}
	h.markDeadLetterDone(ctx, d)
	if f := h.cfg.observer.GaveUp; f != nil {
		f(ctx, observe.DeliveryInfo{ID: d.ID, Status: d.Status}, attempts, err)
	}
	h.deadLetter(context.WithoutCancel(ctx), d, reason, attempts, err)
}

// keepDeadLetter marks d's id done and then hands d to the dead-letter
// path, so that whoever learns of the dead letter (the error handler, the
// log) finds a redelivery of it a duplicate already.
func (h *Handler) keepDeadLetter(ctx context.Context, d Delivery, reason string, attempts int, err error) {
	h.markDeadLetterDone(ctx, d)
	h.deadLetter(context.WithoutCancel(ctx), d, reason, attempts, err)
}

// markDeadLetterDone keeps a dead letter's id claimed, marked done for the
// dedupe TTL by d.Claim, so that a redelivery of it is a duplicate and runs
// nothing a second time; Replay runs it again without a claim.
func (h *Handler) markDeadLetterDone(ctx context.Context, d Delivery) {
	if d.Claim == "" {
		return // a replay's, or a DedupingQueue's delivery: no claim of its own
	}
	if cerr := h.store.Complete(context.WithoutCancel(ctx), d.ID, d.Claim, h.cfg.dedupeTTL); cerr != nil {
		h.log.Error("eachhook: marking a dead letter done failed: a redelivery after the claim lease runs it again", "id", d.ID, "err", cerr)
	}
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
