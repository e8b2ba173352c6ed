// Package redisexpect keeps the reconciler's [eachloop.Expectations] in
// Redis: the predictions a service created and waits for, with their
// webhook secrets, survive a restart and are shared by every replica.
package redisexpect

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the default prefix of the keys of [Expectations].
const DefaultPrefix = "eachhook:expect:"

// Expectations is an [eachloop.Expectations] on Redis: the predictions a
// service created and waits for, with their webhook secrets, survive a
// restart and are shared by every replica (as far as the server persists
// its data: enable AOF or RDB snapshots for that). Create it with
// [New]; it is safe for concurrent use.
//
// # Keys
//
// With the prefix P ([WithPrefix]), an expectation is the hash
// P{x}:id:<prediction id> with the fields secret, created (Unix
// microseconds) and, once done, done ("1"); a pending one is
// also a member of the sorted set P{x}:pending, scored by its creation
// time. Done removes it from the set and lets the hash expire after the
// retention ([WithRetention]); Reopen makes it persistent and pending
// again. The hash tag {x} keeps every key in one cluster slot, so each
// change is one atomic Lua script or transaction. Secrets are stored as
// given: HMAC verification needs them in clear, so restrict access to the
// database as you would to the secrets themselves.
type Expectations struct {
	client    redis.UniversalClient
	pending   string // the sorted set's key
	idPrefix  string // the hashes' key prefix
	retention time.Duration
}

var _ eachloop.Expectations = (*Expectations)(nil)

type config struct {
	prefix    string
	retention time.Duration
}

// Option configures [Expectations].
type Option func(*config) error

// WithPrefix sets the prefix of every key; give each
// deployment that shares a database its own. It must not contain braces,
// which would change the keys' hash tag. Default
// [DefaultPrefix].
func WithPrefix(prefix string) Option {
	return func(c *config) error {
		if strings.ContainsAny(prefix, "{}") {
			return fmt.Errorf("%w: key prefix %q contains a brace", eachloop.ErrInvalidOption, prefix)
		}
		c.prefix = prefix
		return nil
	}
}

// WithRetention sets how long a done expectation's secret is kept, so
// that redeliveries of its webhook still verify. Default
// [eachhook.DefaultDedupeTTL] (24h), the Handler's default dedupe TTL, so
// that a redelivery verifies for as long as it is recognised as a
// duplicate; it must be at least a millisecond.
func WithRetention(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: retention %v < 1ms", eachloop.ErrInvalidOption, d)
		}
		c.retention = d
		return nil
	}
}

// New returns Expectations kept in client. It does not contact the
// server. It returns an error matching [eachloop.ErrInvalidOption] for a
// nil client or an invalid option.
func New(client redis.UniversalClient, opts ...Option) (*Expectations, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", eachloop.ErrInvalidOption)
	}
	cfg := config{prefix: DefaultPrefix, retention: eachhook.DefaultDedupeTTL}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Expectations{
		client:    client,
		pending:   cfg.prefix + "{x}:pending",
		idPrefix:  cfg.prefix + "{x}:id:",
		retention: cfg.retention,
	}, nil
}

// expect records an expectation as pending: KEYS = hash, set; ARGV = id,
// secret, created (µs).
var expect = redis.NewScript(`redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "secret", ARGV[2], "created", ARGV[3])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
return 1`)

// done marks a pending expectation done: KEYS = hash, set; ARGV = id,
// retention (ms).
var done = redis.NewScript(`if redis.call("EXISTS", KEYS[1]) == 0 or redis.call("HEXISTS", KEYS[1], "done") == 1 then
	return 0
end
redis.call("HSET", KEYS[1], "done", "1")
redis.call("PEXPIRE", KEYS[1], ARGV[2])
redis.call("ZREM", KEYS[2], ARGV[1])
return 1`)

// reopen makes a done expectation pending again: KEYS = hash, set; ARGV = id.
var reopen = redis.NewScript(`if redis.call("HEXISTS", KEYS[1], "done") == 0 then
	return 0
end
redis.call("HDEL", KEYS[1], "done")
redis.call("PERSIST", KEYS[1])
redis.call("ZADD", KEYS[2], redis.call("HGET", KEYS[1], "created"), ARGV[1])
return 1`)

// Expect implements [eachloop.Expectations]. Creation times are kept to
// the microsecond.
func (e *Expectations) Expect(ctx context.Context, x eachloop.Expectation) error {
	if x.ID == "" || x.Secret == "" {
		return eachloop.ErrInvalidExpectation
	}
	created := strconv.FormatInt(x.CreatedAt.UnixMicro(), 10)
	if err := expect.Run(ctx, e.client, []string{e.idPrefix + x.ID, e.pending}, x.ID, x.Secret, created).Err(); err != nil {
		return fmt.Errorf("redisexpect: expect: %w", err)
	}
	return nil
}

// Secrets implements [eachloop.Expectations].
func (e *Expectations) Secrets(ctx context.Context, id string) ([]string, error) {
	s, err := e.client.HGet(ctx, e.idPrefix+id, "secret").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("redisexpect: secrets: %w", err)
	}
	return []string{s}, nil
}

// Done implements [eachloop.Expectations]. The retention is counted by the
// server's clock from this call.
func (e *Expectations) Done(ctx context.Context, id string) error {
	err := done.Run(ctx, e.client, []string{e.idPrefix + id, e.pending}, id, e.retention.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("redisexpect: done: %w", err)
	}
	return nil
}

// Reopen implements [eachloop.Expectations].
func (e *Expectations) Reopen(ctx context.Context, id string) error {
	if err := reopen.Run(ctx, e.client, []string{e.idPrefix + id, e.pending}, id).Err(); err != nil {
		return fmt.Errorf("redisexpect: reopen: %w", err)
	}
	return nil
}

// Pending implements [eachloop.Expectations]: the members of the sorted set
// up to before, with their secrets read in one pipeline. Equal creation
// times come in id order, as Redis orders equal scores.
func (e *Expectations) Pending(ctx context.Context, before time.Time) ([]eachloop.Expectation, error) {
	members, err := e.client.ZRangeByScoreWithScores(ctx, e.pending, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(before.UnixMicro(), 10),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisexpect: pending: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(members))
	_, err = e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HGet(ctx, e.idPrefix+m.Member.(string), "secret")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisexpect: pending: %w", err)
	}
	out := make([]eachloop.Expectation, 0, len(members))
	for i, m := range members {
		secret, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			continue // done and expired since the range was read
		}
		if err != nil {
			return nil, fmt.Errorf("redisexpect: pending: %w", err)
		}
		out = append(out, eachloop.Expectation{
			ID: m.Member.(string), Secret: secret, CreatedAt: time.UnixMicro(int64(m.Score)).UTC(),
		})
	}
	return out, nil
}
