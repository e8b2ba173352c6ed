package eachhook

// This file owns deduplication: the Store contract, its default
// implementation (MemoryStore) and admission's claim step, which claims a
// delivery's id before it is handed to the queue.

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook/observe"
)

// Store records which delivery ids were accepted, so that no callback runs
// twice for one id: an id is claimed for a lease, then marked done for the
// dedupe TTL (see [WithRetry]). Implementations must be safe for concurrent
// use, also across processes.
type Store interface {
	// Claim claims id for lease. It returns (token, true, nil) when it
	// claimed id (unclaimed, or its lease or done record expired), and
	// ("", false, nil) when id is in progress under a live lease, or done.
	// Among simultaneous claims of one id exactly one returns true. An error
	// means a system failure (answered 503); a failed Claim must leave id
	// unclaimed, or undo its claim before a later Claim of id can return false.
	Claim(ctx context.Context, id string, lease time.Duration) (token string, claimed bool, err error)
	// Complete marks id done for ttl if token's claim still holds it (or id is
	// unclaimed), keeping token so that Release with it forgets the record.
	// The error is nil unless a system failure.
	Complete(ctx context.Context, id, token string, ttl time.Duration) error
	// Release forgets token's claim of id, in progress or done; a claim not
	// held by token is left alone, and that is no error.
	Release(ctx context.Context, id, token string) error
}

// DeadLetterReleaser is an optional interface of a [Store] wrapper (module
// eachloop's): for an id kept as a dead letter the Handler calls
// ReleaseDeadLetter, which releases as Release does, instead of Release.
type DeadLetterReleaser interface {
	Store
	ReleaseDeadLetter(ctx context.Context, id, token string) error
}

// memoryShards spreads ids over independently locked maps so that
// concurrent requests rarely wait for each other or for a sweep.
const memoryShards = 64

// MemoryStore is the default in-process [Store], holding a 128-bit digest of
// each id (about 84 bytes). It deduplicates within one process only and
// forgets everything when the process ends.
type MemoryStore struct {
	seed1, seed2 maphash.Seed
	now          func() time.Time
	shards       [memoryShards]memoryShard
	tokens       atomic.Uint64 // the last token issued

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// memoryClaim is a claim in progress or a done record.
type memoryClaim struct {
	exp   int64  // expiry in Unix nanoseconds
	token uint64 // never 0
}

type memoryShard struct {
	mu   sync.Mutex
	ids  map[[2]uint64]memoryClaim // digest -> claim
	peak int                       // largest len(ids) since the map was last rebuilt
}

// NewMemoryStore returns an empty MemoryStore that reads time.Now and sweeps
// expired ids every minute until [MemoryStore.Close].
func NewMemoryStore() *MemoryStore { return newMemoryStore(0, nil) }

// newMemoryStore returns a MemoryStore whose sweep runs every interval
// (every minute if interval <= 0) and reads the time from now (time.Now if
// nil).
func newMemoryStore(interval time.Duration, now func() time.Time) *MemoryStore {
	if interval <= 0 {
		interval = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	s := &MemoryStore{
		seed1: maphash.MakeSeed(),
		seed2: maphash.MakeSeed(),
		now:   now,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].ids = make(map[[2]uint64]memoryClaim)
	}
	go s.sweepEvery(interval)
	return s
}

func (s *MemoryStore) digest(id string) [2]uint64 {
	return [2]uint64{maphash.String(s.seed1, id), maphash.String(s.seed2, id)}
}

func (s *MemoryStore) shard(d [2]uint64) *memoryShard {
	return &s.shards[d[0]%memoryShards]
}

// expiry returns now + d, saturating: a duration too large to add never
// expires.
func expiry(now int64, d time.Duration) int64 {
	exp := now + int64(d)
	if exp < now {
		return math.MaxInt64
	}
	return exp
}

// parseMemoryToken returns the sequence number of a token this store
// issued, or 0 (which names no claim).
func parseMemoryToken(token string) uint64 {
	n, err := strconv.ParseUint(token, 36, 64)
	if err != nil {
		return 0
	}
	return n
}

// Claim implements [Store]. It fails only when ctx is already done.
func (s *MemoryStore) Claim(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	d := s.digest(id)
	now := s.now().UnixNano()
	sh := s.shard(d)
	sh.mu.Lock()
	if c, ok := sh.ids[d]; ok && c.exp > now {
		sh.mu.Unlock()
		return "", false, nil
	}
	token := s.tokens.Add(1)
	sh.ids[d] = memoryClaim{exp: expiry(now, lease), token: token}
	if n := len(sh.ids); n > sh.peak {
		sh.peak = n
	}
	sh.mu.Unlock()
	return strconv.FormatUint(token, 36), true, nil
}

// Complete implements [Store]. It fails only when ctx is already done.
func (s *MemoryStore) Complete(ctx context.Context, id, token string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tok := parseMemoryToken(token)
	d := s.digest(id)
	now := s.now().UnixNano()
	sh := s.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c, ok := sh.ids[d]
	switch {
	case ok && c.exp > now && c.token != tok:
		return nil // another claim holds id
	case tok == 0:
		tok = s.tokens.Add(1) // id is unclaimed: the record needs a token of its own
	}
	sh.ids[d] = memoryClaim{exp: expiry(now, ttl), token: tok}
	if n := len(sh.ids); n > sh.peak {
		sh.peak = n
	}
	return nil
}

// Release implements [Store]. It fails only when ctx is already done.
func (s *MemoryStore) Release(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tok := parseMemoryToken(token)
	if tok == 0 {
		return nil
	}
	d := s.digest(id)
	sh := s.shard(d)
	sh.mu.Lock()
	if c, ok := sh.ids[d]; ok && c.token == tok {
		delete(sh.ids, d)
	}
	sh.mu.Unlock()
	return nil
}

// Len reports how many ids are held, including expired ones not yet swept.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.ids)
		sh.mu.Unlock()
	}
	return n
}

// Sweep drops expired ids now, as the background sweep does.
func (s *MemoryStore) Sweep() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for d, c := range sh.ids {
			if c.exp <= now {
				delete(sh.ids, d)
			}
		}
		// Go maps never shrink: rebuild one that lost most of its entries.
		if len(sh.ids) < sh.peak/4 {
			m := make(map[[2]uint64]memoryClaim, len(sh.ids))
			for d, c := range sh.ids {
				m[d] = c
			}
			sh.ids = m
			sh.peak = len(m)
		}
		sh.mu.Unlock()
	}
}

func (s *MemoryStore) sweepEvery(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close stops the background sweep; the store still works. It is idempotent.
func (s *MemoryStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// admit claims a decoded delivery's id and queues it: the steps a verified
// webhook and the reconciler's deliveries share. A refusal means nothing
// was accepted (a claim already taken is released). A non-terminal status
// is acknowledged with nothing to run; a status this package does not know,
// or a terminal one with no callback registered, is acknowledged and kept
// as a dead letter.
func (h *Handler) admit(ctx context.Context, env envelope, d Delivery) outcome {
	ev := env.Event
	reason := ""
	switch {
	case ev == eventNone:
		h.log.Debug("eachhook: acknowledged delivery with a non-terminal status", "id", env.ID, "status", env.Status)
		return outcome{result: ignored, env: env}
	case ev == eventUnknown:
		reason = reasonUnknownStatus
	case !h.callbacks.has[ev]:
		reason = reasonNoCallback
	}
	token, claimed, err := h.store.Claim(ctx, env.ID, h.claimLease)
	if err != nil {
		fail(&h.failed.store, h.cfg.now())
		return outcome{result: refused, reason: observe.ReasonStore, err: err, env: env}
	}
	recovered(&h.failed.store)
	d.ID, d.Status, d.Claim, d.AcceptedAt = env.ID, env.Status, token, h.cfg.now()
	if reason != "" {
		if !claimed {
			h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
			return outcome{result: duplicate, env: env}
		}
		if err := h.keepDeadLetter(ctx, d, reason, fmt.Errorf("%w: %q", errNoCallback, env.Status)); err != nil {
			return outcome{result: refused, reason: observe.ReasonStore, err: err, env: env}
		}
		return outcome{result: ignored, env: env}
	}
	_, deduping := h.queue.(DedupingQueue)
	if !claimed && !deduping {
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return outcome{result: duplicate, env: env}
	}
	return h.handOver(ctx, d, claimed)
}
