package eachhook

// This file owns the dedupe step's contract, the Store, and its default
// implementation, the in-process MemoryStore.

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Store records which prediction ids have been accepted, so that a
// redelivery or a concurrent copy of a delivery runs no callback twice.
// Implementations must be safe for concurrent use, including by several
// processes when the store is shared.
type Store interface {
	// Claim records id for ttl and reports whether this call claimed it.
	// It returns (true, nil) if id was not claimed or its claim expired,
	// (false, nil) if id is already claimed, and a non-nil error only for a
	// system failure; the Handler then answers 503 so that the sender
	// retries. A Claim that fails must leave id unclaimed, or undo its
	// claim before a later Claim of id can answer (false, nil): otherwise
	// the retry would be taken for a duplicate and never run. Among
	// simultaneous claims of one id, exactly one returns true.
	Claim(ctx context.Context, id string, ttl time.Duration) (bool, error)
	// Release forgets id so that a redelivery is processed again.
	// Releasing an id that is not claimed is not an error.
	Release(ctx context.Context, id string) error
}

// Pinger is an optional interface of a [Store] (or of a [Queue]) that can
// tell whether it is reachable. [Handler.Health] calls Ping when the store
// or the queue has it; Ping returns nil when it can serve. [MemoryStore]
// does not implement it: it is always reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}

// memoryShards spreads ids over independently locked maps so that
// concurrent requests rarely wait for each other or for a sweep.
const memoryShards = 64

// MemoryStore is the default in-process [Store]. It keeps a 128-bit digest
// of each id (not the id itself) with its expiry, in maps that hold no
// pointers, so a million ids cost a few tens of megabytes and no garbage
// collector work. A background sweep drops expired ids and shrinks the maps.
//
// It deduplicates within one process only and forgets everything when the
// process ends; use a shared store when several replicas receive webhooks.
type MemoryStore struct {
	seed1, seed2 maphash.Seed
	now          func() time.Time
	shards       [memoryShards]memoryShard

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

type memoryShard struct {
	mu   sync.Mutex
	ids  map[[2]uint64]int64 // digest -> expiry in Unix nanoseconds
	peak int                 // largest len(ids) since the map was last rebuilt
}

// NewMemoryStore returns an empty MemoryStore that reads the time from
// [time.Now] and sweeps expired ids every minute. Call [MemoryStore.Close]
// to stop the sweep. The Handler's own default store reads the time from
// [WithClock] instead.
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
		s.shards[i].ids = make(map[[2]uint64]int64)
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

// Claim implements [Store]. It fails only when ctx is already done.
func (s *MemoryStore) Claim(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d := s.digest(id)
	now := s.now().UnixNano()
	sh := s.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if exp, ok := sh.ids[d]; ok && exp > now {
		return false, nil
	}
	exp := now + int64(ttl)
	if exp < now { // a TTL too large to add: never expires
		exp = math.MaxInt64
	}
	sh.ids[d] = exp
	if n := len(sh.ids); n > sh.peak {
		sh.peak = n
	}
	return true, nil
}

// Release implements [Store]. It fails only when ctx is already done.
func (s *MemoryStore) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := s.digest(id)
	sh := s.shard(d)
	sh.mu.Lock()
	delete(sh.ids, d)
	sh.mu.Unlock()
	return nil
}

// Len reports how many ids are held, expired ones included until the next
// sweep.
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

// Sweep drops expired ids now. The background sweep calls it; it is exported
// for tests and for callers that want memory back at once.
func (s *MemoryStore) Sweep() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for d, exp := range sh.ids {
			if exp <= now {
				delete(sh.ids, d)
			}
		}
		// Go maps never shrink: rebuild one that lost most of its entries.
		if len(sh.ids) < sh.peak/4 {
			m := make(map[[2]uint64]int64, len(sh.ids))
			for d, exp := range sh.ids {
				m[d] = exp
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

// Close stops the background sweep and waits for it to end. The store still
// answers Claim and Release afterwards. Close is idempotent.
func (s *MemoryStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}
