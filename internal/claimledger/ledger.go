// Package claimledger is the local memory of a shared store's claims, by
// per-claim token, used by the Redis and PostgreSQL stores:
//
//   - the tokens of the claims the store won, so that Release deletes a
//     claim only if it is still this store's (not one that expired and
//     was taken by another replica); at most a fixed number, the oldest
//     and the expired forgotten first;
//   - the tokens of claims whose outcome is unknown: the claim was sent,
//     then the connection broke, so the server may have applied it while
//     the Handler answered 503. Nobody will process such a claim, and the
//     sender's retry would be taken for a duplicate of it and dropped, so
//     the ledger undoes it (deletes it by its token) as soon as the server
//     answers again, from a goroutine that runs only while there are such
//     claims (or until [Ledger.Close]), and before this store claims the
//     same id again.
package claimledger

import (
	"container/list"
	"context"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Token identifies one claim. It need not be secret, only distinct from
// every other claim's, so it comes from the runtime's ChaCha8 generator
// (seeded by the operating system), much cheaper than crypto/rand.
type Token [16]byte

// NewToken returns a fresh token.
func NewToken() Token {
	var t Token
	a, b := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		t[i], t[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
	}
	return t
}

// String returns the token in hexadecimal.
func (t Token) String() string { return hex.EncodeToString(t[:]) }

// Undo deletes id's claim if it still holds token; it is not an error if
// it does not.
type Undo func(ctx context.Context, id string, token Token) error

// UndoInterval is the wait between two rounds of undoing claims whose
// outcome is unknown, while the server does not answer.
const UndoInterval = time.Second

// undoTimeout bounds one undo in the background.
const undoTimeout = 5 * time.Second

type entry struct {
	id      string
	token   Token
	expires time.Time
}

// Ledger remembers a store's claims. Create it with [New]. It is safe for
// concurrent use.
type Ledger struct {
	max      int
	now      func() time.Time
	undo     Undo
	interval time.Duration

	mu      sync.Mutex
	won     map[string]*list.Element // id -> element of order holding *entry
	order   list.List                // won claims, oldest first
	doubts  map[string][]entry       // claims of unknown outcome, by id
	ndoubts atomic.Int32             // claims in doubts, read without mu
	undoing sync.WaitGroup           // the undo goroutine, if it runs
	running bool                     // the undo goroutine runs
	closed  bool

	base     context.Context // the undo goroutine's, cancelled by Close
	cancel   context.CancelFunc
	stopOnce sync.Once
}

// New returns a Ledger that remembers at most max won claims (and at most
// max claims of unknown outcome) and undoes the latter with undo, retrying
// every interval while it fails.
func New(max int, interval time.Duration, undo Undo) *Ledger {
	base, cancel := context.WithCancel(context.Background())
	return &Ledger{
		base:     base,
		cancel:   cancel,
		max:      max,
		now:      time.Now,
		undo:     undo,
		interval: interval,
		won:      make(map[string]*list.Element),
		doubts:   make(map[string][]entry),
	}
}

// Close stops undoing claims of unknown outcome in the background and
// waits for the goroutine to end; the ones left stand until their TTL
// unless this store claims their id again. The ledger still works
// otherwise. Close is idempotent.
func (l *Ledger) Close() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.cancel()
	})
	l.undoing.Wait()
}

// Won records that this store's claim of id with token, expiring after
// ttl, was won. It replaces a remembered claim of the same id.
func (l *Ledger) Won(id string, token Token, ttl time.Duration) {
	l.remember(&entry{id: id, token: token, expires: l.now().Add(ttl)})
}

// Take removes and returns the token of id's won claim, for a release.
// It reports false if none is remembered or the claim has expired.
func (l *Ledger) Take(id string) (Token, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.won[id]
	if !ok {
		return Token{}, time.Time{}, false
	}
	l.order.Remove(e)
	delete(l.won, id)
	c := e.Value.(*entry)
	if !c.expires.After(l.now()) {
		return Token{}, time.Time{}, false
	}
	return c.token, c.expires, true
}

// Release deletes id's claim with the Ledger's [Undo] if this store holds
// it, for a store's Release: a claim it does not remember (never won here,
// forgotten, or expired) is left alone, and nil returned. When the delete
// fails the claim may still stand: it becomes a claim of unknown outcome
// (see [Ledger.Doubt]), undone in the background once the server answers,
// so that the sender's retry is not taken for a duplicate.
func (l *Ledger) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	token, expires, ok := l.Take(id)
	if !ok {
		return nil
	}
	if err := l.undo(ctx, id, token); err != nil {
		l.Doubt(id, token, expires.Sub(l.now()))
		return err
	}
	return nil
}

func (l *Ledger) remember(c *entry) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.won[c.id]; ok {
		l.order.Remove(e)
	}
	l.won[c.id] = l.order.PushBack(c)
	for e := l.order.Front(); e != nil; e = l.order.Front() {
		old := e.Value.(*entry)
		if l.order.Len() <= l.max && old.expires.After(now) {
			break
		}
		l.order.Remove(e)
		delete(l.won, old.id)
	}
}

// Doubt records a claim of id with token whose outcome is unknown, to be
// undone in the background as soon as the server answers.
func (l *Ledger) Doubt(id string, token Token, ttl time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if int(l.ndoubts.Load()) >= l.max {
		for old, ds := range l.doubts { // forget some, the map's choice
			delete(l.doubts, old)
			l.ndoubts.Add(-int32(len(ds)))
			break
		}
	}
	l.doubts[id] = append(l.doubts[id], entry{id: id, token: token, expires: now.Add(ttl)})
	l.ndoubts.Add(1)
	if !l.running && !l.closed {
		l.running = true
		l.undoing.Add(1)
		go l.undoDoubts()
	}
}

// Settle undoes id's claims of unknown outcome, if there are any, before
// this store claims id again. An error means one could not be undone.
func (l *Ledger) Settle(ctx context.Context, id string) error {
	if l.ndoubts.Load() == 0 {
		return nil
	}
	l.mu.Lock()
	ds := slices.Clone(l.doubts[id])
	l.mu.Unlock()
	for _, d := range ds {
		if err := l.undo(ctx, id, d.token); err != nil {
			return err
		}
		l.settled(d)
	}
	return nil
}

// Doubts reports how many claims of unknown outcome wait to be undone.
func (l *Ledger) Doubts() int { return int(l.ndoubts.Load()) }

// settled forgets d.
func (l *Ledger) settled(d entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := l.doubts[d.id]
	i := slices.IndexFunc(ds, func(e entry) bool { return e.token == d.token })
	if i < 0 {
		return
	}
	if len(ds) == 1 {
		delete(l.doubts, d.id)
	} else {
		l.doubts[d.id] = slices.Delete(ds, i, i+1)
	}
	l.ndoubts.Add(-1)
}

// undoDoubts undoes the claims of unknown outcome, in rounds every
// interval, until none is left or Close; expired ones are forgotten.
func (l *Ledger) undoDoubts() {
	defer l.undoing.Done()
	for {
		l.mu.Lock()
		pending := make([]entry, 0, l.ndoubts.Load())
		for _, ds := range l.doubts {
			pending = append(pending, ds...)
		}
		if len(pending) == 0 || l.closed {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		now := l.now()
		for _, d := range pending {
			if !d.expires.After(now) {
				l.settled(d)
				continue
			}
			ctx, cancel := context.WithTimeout(l.base, undoTimeout)
			err := l.undo(ctx, d.id, d.token)
			cancel()
			if err != nil {
				break // the server is still away: wait for the next round
			}
			l.settled(d)
		}
		if l.ndoubts.Load() > 0 {
			t := time.NewTimer(l.interval)
			select {
			case <-l.base.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}
