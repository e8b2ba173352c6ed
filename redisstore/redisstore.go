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
// A claim is one command, SET key token PX lease NX (EX when the lease is
// whole seconds), where key is the key prefix ([WithKeyPrefix]) followed
// by the delivery's key and token is a random value drawn for that claim;
// Redis expires the key after the lease, so a claim whose process died
// frees its id by itself, and nothing else is kept on the server. When
// the SET finds the key taken, a GET tells whether the value there is
// this claim's own token: go-redis resends a command whose connection
// broke after it was written, and the resent SET NX then finds the first
// attempt's token. Such a claim is won, not a duplicate of itself (which
// would drop the delivery). A winning claim thus costs one round trip, as
// a raw SET NX does, and a duplicate two. Any Redis from 2.6.12 on will
// do.
//
// # Completions and releases
//
// Complete sets the key to the claim's token again with the dedupe TTL,
// only if it still holds that token or is absent (a Lua script), so that
// it never overwrites a claim another replica took after the lease ran
// out. Release deletes the key only if it holds the token it is given (a
// compare-and-delete script), so that it never removes another claim. The
// token travels with the delivery ([eachhook.Delivery.Claim]), so the
// store keeps no record of the claims it won.
//
// # Outages
//
// A Claim that fails leaves no claim behind. When the connection breaks
// after the SET was sent, Redis may have applied it although Claim
// returned an error (and the Handler answered 503); the sender's retry
// would then be taken for a duplicate until the lease runs out. So the
// store deletes such a claim by its token as soon as Redis answers again
// (likewise a Release that failed): from a goroutine that tries every
// second while there are such claims and ends when there are none (or at
// [Store.Close]), and before it claims the same id again. [Store.Ping]
// tells [eachhook.Handler.Health] whether Redis answers.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/claimledger"
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

// complete sets KEYS[1] to ARGV[1], the completing claim's token, for
// ARGV[2] milliseconds if it holds that token or is absent.
var complete = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v == false or v == ARGV[1] then
	redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
	return 1
end
return 0`)

// Store is an [eachhook.Store] on Redis. Create it with [New]. It is safe
// for concurrent use. It does not close the client.
type Store struct {
	client redis.UniversalClient
	prefix string
	ledger *claimledger.Ledger
}

var (
	_ eachhook.Store  = (*Store)(nil)
	_ eachhook.Pinger = (*Store)(nil)
)

type config struct {
	prefix    string
	maxTokens int
}

// Option configures a [Store] or [DeadLetters]; an option that concerns
// only claims does nothing for DeadLetters.
type Option func(*config) error

// WithKeyPrefix sets the prefix of every key the store writes. Give each
// deployment that shares a Redis database its own prefix. Default
// [DefaultKeyPrefix] ("eachhook:claim:") for [New], followed by the
// prediction id, and [DefaultDeadLetterPrefix] ("eachhook:deadletters:")
// for [NewDeadLetters]; it may be empty.
func WithKeyPrefix(prefix string) Option {
	return func(c *config) error { c.prefix = prefix; return nil }
}

// WithMaxTokens sets how many tokens of claims of unknown outcome (see
// Outages in the package documentation) the store keeps in memory to undo
// (about 150 bytes each). Default [DefaultMaxTokens] (65536); it must be
// at least 1.
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
	cfg, err := newConfig(client, DefaultKeyPrefix, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{client: client, prefix: cfg.prefix}
	s.ledger = claimledger.New(cfg.maxTokens, claimledger.UndoInterval, s.deleteIfHeld)
	return s, nil
}

// newConfig applies opts over the defaults, with prefix the default key
// prefix.
func newConfig(client redis.UniversalClient, prefix string, opts []Option) (config, error) {
	cfg := config{prefix: prefix, maxTokens: DefaultMaxTokens}
	if client == nil {
		return cfg, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// releaseHorizon bounds how long a Release that failed is retried in the
// background: past it the claim has expired in any case.
const releaseHorizon = eachhook.DefaultDedupeTTL

// Claim implements [eachhook.Store]. Leases are kept to the millisecond; a
// lease below one millisecond counts as one.
func (s *Store) Claim(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if lease <= 0 {
		return "", false, fmt.Errorf("%w: %v", ErrInvalidTTL, lease)
	}
	lease = max(lease, time.Millisecond)
	if err := s.ledger.Settle(ctx, id); err != nil {
		return "", false, fmt.Errorf("redisstore: claim: %w", err)
	}
	key, token := s.prefix+id, claimledger.NewToken()
	value := token.String()
	// Twice at most: once more if the claim that stood is gone by the time
	// it is read, so that a released or expired claim counts as absent.
	for try := 0; ; try++ {
		won, err := s.client.SetNX(ctx, key, value, lease).Result()
		if err != nil {
			s.ledger.Doubt(id, token, lease)
			return "", false, fmt.Errorf("redisstore: claim: %w", err)
		}
		if won {
			break
		}
		// A retried SET finds its own first attempt's token.
		v, err := s.client.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil) && try == 0:
			continue // the claim that stood has just expired or been released
		case errors.Is(err, redis.Nil):
			return "", false, nil
		case err != nil:
			s.ledger.Doubt(id, token, lease)
			return "", false, fmt.Errorf("redisstore: claim: %w", err)
		case v != value:
			return "", false, nil
		}
		break // our own token: the first attempt's SET won
	}
	return value, true, nil
}

// Complete implements [eachhook.Store]. TTLs are kept to the millisecond;
// a TTL below one millisecond counts as one. A token this store did not
// issue (such as "") completes only an absent key, under a new token.
func (s *Store) Complete(ctx context.Context, id, token string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	if _, ok := claimledger.ParseToken(token); !ok {
		token = claimledger.NewToken().String() // names no claim: matches none
	}
	ms := max(ttl.Milliseconds(), 1)
	if err := complete.Run(ctx, s.client, []string{s.prefix + id}, token, ms).Err(); err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	return nil
}

// Release implements [eachhook.Store]. It deletes id's key only if it
// holds token.
func (s *Store) Release(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, ok := claimledger.ParseToken(token)
	if !ok {
		return nil // names no claim of this store
	}
	if err := s.ledger.Release(ctx, id, t, releaseHorizon); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

// Ping implements [eachhook.Pinger] with a PING round trip, so that
// [eachhook.Handler.Health] answers 503 while Redis is unreachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// deleteIfHeld deletes id's claim if it holds token.
func (s *Store) deleteIfHeld(ctx context.Context, id string, token claimledger.Token) error {
	return release.Run(ctx, s.client, []string{s.prefix + id}, token.String()).Err()
}

// Close stops deleting the claims of failed Claims in the background (see
// Outages in the package documentation) and waits for that goroutine,
// which otherwise ends on its own once none is left; the ones left stand
// until their lease or TTL. The store still answers Claim, Complete and
// Release afterwards.
// Call it at exit, after the Handlers' Shutdown. Close is idempotent.
func (s *Store) Close() error {
	s.ledger.Close()
	return nil
}
