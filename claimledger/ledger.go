// Package claimledger is for implementers of a shared [eachhook.Store]
// (one on a database server, such as modules redisstore and pgstore): the
// per-claim tokens such a store hands out, and the local memory of its
// claims of unknown outcome. Such a claim was sent, then the connection
// broke, so the server may have applied it while the Handler answered 503
// (or a Release was sent and its outcome is unknown). Nobody will process
// such a claim, and the sender's retry would be taken for a duplicate of
// it until its lease runs out, so the ledger undoes it (deletes it by its
// token, with the store's [Undo]) as soon as the server answers again,
// from a goroutine that runs only while there are such claims (or until
// [Ledger.Close]), and before this store claims the same id again.
//
// The Handler names the claim to complete or release by its token, so the
// ledger keeps no record of the claims a store won. The package imports
// only the standard library.
//
// [eachhook.Store]: https://pkg.go.dev/github.com/eachhook/eachhook#Store
package claimledger

import (
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

// ParseToken reads a token written by [Token.String]. It reports false for
// anything else, such as "" or another store's token: that names no claim
// of this store.
func ParseToken(s string) (Token, bool) {
	var t Token
	if len(s) != 2*len(t) {
		return t, false
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return Token{}, false
	}
	return t, true
}

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
	doubts  map[string][]entry // claims of unknown outcome, by id
	ndoubts atomic.Int32       // claims in doubts, read without mu
	undoing sync.WaitGroup     // the undo goroutine, if it runs
	running bool               // the undo goroutine runs
	closed  bool

	base     context.Context // the undo goroutine's, cancelled by Close
	cancel   context.CancelFunc
	stopOnce sync.Once
}

// New returns a Ledger that remembers at most max claims of unknown
// outcome and undoes them with undo, retrying every interval while it
// fails.
func New(max int, interval time.Duration, undo Undo) *Ledger {
	base, cancel := context.WithCancel(context.Background())
	return &Ledger{
		base:     base,
		cancel:   cancel,
		max:      max,
		now:      time.Now,
		undo:     undo,
		interval: interval,
		doubts:   make(map[string][]entry),
	}
}

// Close stops undoing claims of unknown outcome in the background and
// waits for the goroutine to end; the ones left stand until their lease
// or TTL unless this store claims their id again. The ledger still works
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

// Release deletes id's claim named by token with the Ledger's [Undo], for
// a store's Release. When the delete fails the claim may still stand: it
// becomes a claim of unknown outcome (see [Ledger.Doubt]) for at most
// horizon, undone in the background once the server answers, so that the
// sender's retry is not taken for a duplicate.
func (l *Ledger) Release(ctx context.Context, id string, token Token, horizon time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.undo(ctx, id, token); err != nil {
		l.Doubt(id, token, horizon)
		return err
	}
	return nil
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
