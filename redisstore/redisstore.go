// Package redisstore is an [eachhook.Store] on Redis, shared by every
// replica that receives webhooks, through any [redis.UniversalClient]
// (a single server, a cluster or a sentinel failover client).
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	store, err := redisstore.New(rdb)
//	if err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithStore(store))
//
// # Claims
//
// A claim is one command, SET key token PX ttl NX (EX when the TTL is
// whole seconds), where key is the key
// prefix ([WithKeyPrefix]) followed by the prediction id and token is a
// random value drawn for that claim; Redis expires the key after the TTL,
// so nothing else is kept on the server. When the SET finds the key taken,
// a GET tells whether the value there is this claim's own token: go-redis
// resends a command whose connection broke after it was written, and the
// resent SET NX then finds the first attempt's token. Such a claim is won,
// not a duplicate of itself (which would drop the delivery). A winning
// claim thus costs one round trip, as a raw SET NX does, and a duplicate
// two. Any Redis from 2.6.12 on will do.
//
// # Releases
//
// Release deletes the key only if it still holds the token of this store's
// own claim (a compare-and-delete Lua script), so that it never removes a
// claim that expired and was then taken by another replica. The tokens of
// the claims a store won are kept in memory, at most [WithMaxTokens] of
// them: when the limit is reached, the oldest are forgotten, and expired
// ones are forgotten as they are met. Release of an id whose token was
// forgotten (or that another process claimed) deletes nothing and returns
// nil; that claim then lasts until its TTL. The Handler releases a claim
// within seconds or minutes of taking it (queue full, callback failed on
// every attempt, shutdown), long before the default limit is reached at
// ordinary rates.
package redisstore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/redis/go-redis/v9"
)

// Defaults for the options.
const (
	DefaultKeyPrefix = "eachhook:claim:"
	DefaultMaxTokens = 1 << 16
)

// ErrInvalidOption is matched by every error [New] returns for a
// configuration that cannot work.
var ErrInvalidOption = errors.New("redisstore: invalid option")

// ErrInvalidTTL is matched by the error of a Claim with a TTL of zero or
// less.
var ErrInvalidTTL = errors.New("redisstore: TTL must be positive")

// release deletes KEYS[1] if it holds ARGV[1], the releasing claim's token.
var release = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Store is an [eachhook.Store] on Redis. Create it with [New]. It is safe
// for concurrent use and holds no goroutine, so it needs no closing; it
// does not close the client.
type Store struct {
	client    redis.UniversalClient
	prefix    string
	maxTokens int
	now       func() time.Time

	mu     sync.Mutex
	tokens map[string]*list.Element // id -> element of order holding *claim
	order  list.List                // claims won, oldest first
}

var _ eachhook.Store = (*Store)(nil)

// claim is a claim this store won, remembered so that Release can tell it
// apart from another process's claim of the same id.
type claim struct {
	id      string
	token   string
	expires time.Time
}

type config struct {
	prefix    string
	maxTokens int
}

// Option configures a [Store].
type Option func(*config) error

// WithKeyPrefix sets the prefix of every key the store writes, followed by
// the prediction id. Give each deployment that shares a Redis database its
// own prefix. Default [DefaultKeyPrefix] ("eachhook:claim:"); it may be
// empty.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) error { c.prefix = prefix; return nil }
}

// WithMaxTokens sets how many of its own claims' tokens the store keeps in
// memory for Release (about 150 bytes each). Default [DefaultMaxTokens]
// (65536); it must be at least 1.
func WithMaxTokens(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max tokens %d < 1", ErrInvalidOption, n)
		}
		c.maxTokens = n
		return nil
	}
}

// New returns a Store that keeps its claims in client, configured by opts.
// It does not contact the server; a server that cannot be reached makes
// Claim fail (and the Handler answer 503).
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	cfg := config{prefix: DefaultKeyPrefix, maxTokens: DefaultMaxTokens}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Store{
		client:    client,
		prefix:    cfg.prefix,
		maxTokens: cfg.maxTokens,
		now:       time.Now,
		tokens:    make(map[string]*list.Element),
	}, nil
}

// Claim implements [eachhook.Store]. TTLs are kept to the millisecond; a
// TTL below one millisecond counts as one.
func (s *Store) Claim(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if ttl <= 0 {
		return false, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	ttl = max(ttl, time.Millisecond)
	key, token := s.prefix+id, newToken()
	won, err := s.client.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim: %w", err)
	}
	if !won {
		// A retried SET finds its own first attempt's token.
		v, err := s.client.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return false, nil // the claim that stood has just expired
		case err != nil:
			return false, fmt.Errorf("redisstore: claim: %w", err)
		case v != token:
			return false, nil
		}
	}
	s.remember(&claim{id: id, token: token, expires: s.now().Add(ttl)}, true)
	return true, nil
}

// Release implements [eachhook.Store]. It deletes id's claim only if this
// store holds it.
func (s *Store) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.forget(id)
	if c == nil {
		return nil
	}
	if err := release.Run(ctx, s.client, []string{s.prefix + id}, c.token).Err(); err != nil {
		// The claim may still stand: keep its token for another try,
		// unless this store has claimed id again meanwhile.
		s.remember(c, false)
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

// remember records c, replacing a remembered claim of the same id if
// replace is set (else keeping it), and forgets the oldest claims beyond the
// limit and the expired ones at the front.
func (s *Store) remember(c *claim, replace bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.tokens[c.id]; ok {
		if !replace {
			return
		}
		s.order.Remove(e)
	}
	s.tokens[c.id] = s.order.PushBack(c)
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		old := e.Value.(*claim)
		if s.order.Len() <= s.maxTokens && old.expires.After(now) {
			break
		}
		s.order.Remove(e)
		delete(s.tokens, old.id)
	}
}

// forget removes and returns id's remembered claim, nil if there is none
// or it has expired.
func (s *Store) forget(id string) *claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tokens[id]
	if !ok {
		return nil
	}
	s.order.Remove(e)
	delete(s.tokens, id)
	c := e.Value.(*claim)
	if !c.expires.After(s.now()) {
		return nil
	}
	return c
}

// newToken returns a value unique to one claim. It need not be secret, only
// distinct from every other claim's, so it comes from the runtime's
// ChaCha8 generator (seeded from the operating system), which is much
// cheaper than crypto/rand.
func newToken() string {
	var b [32]byte
	n := strconv.AppendUint(b[:0], rand.Uint64(), 36)
	n = append(n, '.')
	n = strconv.AppendUint(n, rand.Uint64(), 36)
	return string(n)
}
