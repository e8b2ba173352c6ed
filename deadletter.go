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
	"sync/atomic"
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

	// held are the dead letters made after the 200 that the store has not
	// taken yet, at most memoryDeadLettersMax; a goroutine of their own
	// stores them again until it does, or Shutdown.
	mu       sync.Mutex
	held     map[string]DeadLetter
	nheld    atomic.Int32 // len(held), read without mu
	retrying bool         // the goroutine runs
	closed   bool         // Shutdown: held ones are stored once more, then lost
	stop     chan struct{}
	retried  sync.WaitGroup
}

// holding reports whether a dead letter waits to be stored again.
func (d *deadLetters) holding() bool { return d.nheld.Load() > 0 }

// newDeadLetter returns the dead letter of d for reason after attempts
// attempts, the last of which returned err.
func (h *Handler) newDeadLetter(d Delivery, reason string, attempts int, err error) DeadLetter {
	dl := DeadLetter{ID: d.ID, Status: d.Status, Reason: reason, Body: d.Body, Attempts: attempts, At: h.cfg.now()}
	if err != nil {
		dl.Err = err.Error()
	}
	return dl
}

// addDeadLetter writes dl to the dead-letter store, within
// deadLetterStoreTimeout, and records the store's failure for Health.
func (h *Handler) addDeadLetter(ctx context.Context, dl DeadLetter) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterStoreTimeout)
	defer cancel()
	if err := h.dead.store.Add(ctx, dl); err != nil {
		fail(&h.failed.deadLetters, h.cfg.now())
		return err
	}
	recovered(&h.failed.deadLetters)
	return nil
}

// release gives up d's claim of its id, so that a resend of it runs; kept
// says d became a dead letter (see DeadLetterReleaser).
func (h *Handler) release(ctx context.Context, d Delivery, kept bool) {
	if d.Claim == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	release := h.store.Release
	if r, ok := h.store.(DeadLetterReleaser); ok && kept {
		release = r.ReleaseDeadLetter
	}
	if err := release(ctx, d.ID, d.Claim); err != nil {
		h.log.Error("eachhook: release failed: the id is processed again after its claim lease", "id", d.ID, "err", err)
	}
}

// reportDeadLetter logs the dead letter and passes a [*CallbackError] to
// the error handler, once per dead letter.
func (h *Handler) reportDeadLetter(ctx context.Context, dl DeadLetter, err error) {
	h.log.Error("eachhook: dead letter", "id", dl.ID, "status", dl.Status, "reason", dl.Reason, "attempts", dl.Attempts, "err", err)
	h.callErrorHandler(ctx, &CallbackError{ID: dl.ID, Status: dl.Status, Attempts: dl.Attempts, Err: err})
}

// keepDeadLetter keeps d, admitted with a status no callback handles, as a
// dead letter before the 200, and releases its claim. When the store fails
// it returns the error: the claim is released and the request answered
// 503, so that the sender retries.
func (h *Handler) keepDeadLetter(ctx context.Context, d Delivery, reason string, err error) error {
	dl := h.newDeadLetter(d, reason, 0, err)
	serr := h.addDeadLetter(ctx, dl)
	h.release(ctx, d, serr == nil)
	if serr != nil {
		return fmt.Errorf("eachhook: dead letter not stored: %w", serr) // answered 503 and logged as a refusal
	}
	h.reportDeadLetter(ctx, dl, err)
	return nil
}

// GiveUp implements [Runner]: it tells the observer, keeps d as a dead
// letter (in the store, unless the queue keeps its own, as a durable
// queue's discarded job) and releases d's claim, so that a resend runs.
// A dead letter the store refuses is held in memory and stored again.
func (r runner) GiveUp(ctx context.Context, d Delivery, attempts int, err error) {
	h := r.h
	reason := reasonCallbackFailed
	if errors.Is(err, errNoCallback) {
		reason = reasonNoCallback
	}
	if f := h.cfg.observer.GaveUp; f != nil {
		f(ctx, observe.DeliveryInfo{ID: d.ID, Status: d.Status}, attempts, err)
	}
	ctx = context.WithoutCancel(ctx)
	dl := h.newDeadLetter(d, reason, attempts, err)
	if _, queueKeeps := h.queue.(DeadLetterQueue); !queueKeeps || reason != reasonCallbackFailed {
		if serr := h.addDeadLetter(ctx, dl); serr != nil {
			h.hold(dl, serr)
		}
	}
	h.release(ctx, d, true)
	h.reportDeadLetter(ctx, dl, err)
}

// hold keeps dl, which the store refused with err, to store it again
// later, or loses it (logged, and told to the observer) when
// memoryDeadLettersMax wait already or Shutdown has begun.
func (h *Handler) hold(dl DeadLetter, err error) {
	d := &h.dead
	d.mu.Lock()
	if _, again := d.held[dl.ID]; d.closed || (!again && len(d.held) >= memoryDeadLettersMax) {
		d.mu.Unlock()
		h.loseDeadLetter(dl, err)
		return
	}
	if d.held == nil {
		d.held = make(map[string]DeadLetter)
	}
	d.held[dl.ID] = dl
	d.nheld.Store(int32(len(d.held)))
	if !d.retrying {
		d.retrying = true
		d.retried.Add(1)
		go h.retryHeld()
	}
	d.mu.Unlock()
	h.log.Error("eachhook: dead letter not stored yet: stored again until the store takes it; a resend of the id runs meanwhile",
		"id", dl.ID, "status", dl.Status, "reason", dl.Reason, "err", err)
}

// loseDeadLetter logs and tells the observer of a dead letter no store kept.
func (h *Handler) loseDeadLetter(dl DeadLetter, err error) {
	h.log.Error("eachhook: dead letter lost: its store failed", "id", dl.ID, "status", dl.Status, "reason", dl.Reason, "err", err)
	if f := h.cfg.observer.DeadLetterLost; f != nil {
		f(context.Background(), observe.DeliveryInfo{ID: dl.ID, Status: dl.Status}, err)
	}
}

// retryHeld stores the held dead letters again, waiting the backoff of
// WithRetry (at least retryHeldMin) doubling up to a minute between
// rounds, until none is held or Shutdown.
func (h *Handler) retryHeld() {
	defer h.dead.retried.Done()
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(backoffFor(max(h.cfg.backoff, retryHeldMin), attempt))
		select {
		case <-h.dead.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if h.storeHeld(context.Background()) == nil {
			return
		}
	}
}

// retryHeldMin is the least wait between two rounds of retryHeld.
const retryHeldMin = 100 * time.Millisecond

// storeHeld stores the held dead letters; it returns nil, and marks the
// retrying goroutine stopped, once none is left, else the last error. It
// holds mu throughout, so that a success deleting a held one (see
// succeeded) cannot be undone by a write in flight.
func (h *Handler) storeHeld(ctx context.Context) error {
	d := &h.dead
	d.mu.Lock()
	defer d.mu.Unlock()
	var last error
	for id, dl := range d.held {
		if err := h.addDeadLetter(ctx, dl); err != nil {
			last = err
			continue
		}
		delete(d.held, id)
		h.log.Info("eachhook: held dead letter stored", "id", id)
	}
	d.nheld.Store(int32(len(d.held)))
	if len(d.held) == 0 {
		d.retrying = false
	}
	return last
}

// stopRetrying ends the retries of held dead letters at Shutdown: they are
// stored once more within ctx, and those the store refuses then are lost.
func (h *Handler) stopRetrying(ctx context.Context) {
	d := &h.dead
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.stop)
	}
	d.mu.Unlock()
	d.retried.Wait()
	err := h.storeHeld(ctx)
	d.mu.Lock()
	lost := d.held
	d.held = nil
	d.nheld.Store(0)
	d.mu.Unlock()
	for _, dl := range lost {
		h.loseDeadLetter(dl, err)
	}
}

// succeeded is called after a callback of d succeeded: d's dead letter,
// held or stored, is deleted, since the event it kept has been handled.
func (h *Handler) succeeded(ctx context.Context, d Delivery) {
	if h.dead.holding() {
		h.dead.mu.Lock()
		delete(h.dead.held, d.ID)
		h.dead.nheld.Store(int32(len(h.dead.held)))
		h.dead.mu.Unlock()
	}
	if _, local := h.dead.store.(*memoryDeadLetters); !local {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadLetterStoreTimeout)
		defer cancel()
	}
	found, err := h.dead.store.Delete(ctx, d.ID)
	switch {
	case err != nil:
		h.log.Error("eachhook: callback succeeded but its dead letter could not be deleted", "id", d.ID, "err", err)
	case found:
		h.log.Info("eachhook: dead letter deleted: a run of its callback succeeded", "id", d.ID, "status", d.Status)
	}
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

// ErrInProgress is returned by [Handler.Replay] while another run holds the id.
var ErrInProgress = errors.New("eachhook: delivery in progress")

// Replay claims id in the [Store] and queues its dead letter again (with
// [WithQueue], call [Handler.Start] first); nil means queued. It returns
// [ErrInProgress] when id is claimed, [ErrNoDeadLetter] when id is not a
// dead letter, and another error, keeping it, when no callback handles its
// status, the queue refused it ([ErrShutdown] after [Handler.Shutdown]) or
// a store failed. A [DeadLetterQueue] replays the ids the store lacks.
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

// replay claims the id of dl from the store and queues its delivery again.
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
	token, claimed, err := h.store.Claim(ctx, env.ID, h.claimLease)
	switch {
	case err != nil:
		return fmt.Errorf("eachhook: replay %s: %w", dl.ID, err)
	case !claimed:
		return fmt.Errorf("eachhook: replay %s: %w", dl.ID, ErrInProgress)
	}
	o := h.handOver(ctx, Delivery{ID: env.ID, Status: env.Status, Body: dl.Body, AcceptedAt: h.cfg.now(), Claim: token}, true)
	if o.result == refused {
		err := cmp.Or(o.err, o.queueErr)
		switch {
		case o.reason == observe.ReasonShutdown:
			err = ErrShutdown
		case err == nil:
			err = errors.New(string(o.reason))
		}
		return fmt.Errorf("eachhook: replay %s: not queued: %w", dl.ID, err)
	}
	if o.result == duplicate { // a DedupingQueue holds a delivery of id already: it runs that one
		h.release(ctx, Delivery{ID: env.ID, Claim: token}, false)
	}
	if _, queueKeeps := h.queue.(DeadLetterQueue); queueKeeps {
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
