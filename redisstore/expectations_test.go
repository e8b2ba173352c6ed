package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newExpectations(tb testing.TB, c redis.UniversalClient, prefix string, opts ...redisstore.ExpectationsOption) *redisstore.Expectations {
	tb.Helper()
	e, err := redisstore.NewExpectations(c, append([]redisstore.ExpectationsOption{redisstore.WithExpectationsPrefix(prefix)}, opts...)...)
	require.NoError(tb, err)
	return e
}

func TestExpectationsConformance(t *testing.T) {
	c := newClient(t, redisAddr(t))
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return newExpectations(t, c, newPrefix(t, c))
	})
}

func TestExpectationsKeyLayout(t *testing.T) {
	c := newClient(t, redisAddr(t))
	prefix := newPrefix(t, c)
	e := newExpectations(t, c, prefix, redisstore.WithRetention(time.Hour))
	ctx := context.Background()
	created := time.Date(2026, 11, 27, 8, 0, 0, 123456000, time.UTC)
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "pred-1", Secret: "s1", CreatedAt: created}))
	require.Equal(t, map[string]string{"secret": "s1", "created": "1795766400123456"}, c.HGetAll(ctx, prefix+"{x}:id:pred-1").Val())
	require.Equal(t, []redis.Z{{Score: 1795766400123456, Member: "pred-1"}}, c.ZRangeWithScores(ctx, prefix+"{x}:pending", 0, -1).Val())
	require.Equal(t, time.Duration(-1), c.TTL(ctx, prefix+"{x}:id:pred-1").Val(), "a pending expectation never expires")

	require.NoError(t, e.Done(ctx, "pred-1"))
	require.Empty(t, c.ZRange(ctx, prefix+"{x}:pending", 0, -1).Val())
	ttl := c.PTTL(ctx, prefix+"{x}:id:pred-1").Val()
	require.True(t, ttl > 59*time.Minute && ttl <= time.Hour, "ttl %v", ttl)

	require.NoError(t, e.Reopen(ctx, "pred-1"))
	require.Equal(t, time.Duration(-1), c.TTL(ctx, prefix+"{x}:id:pred-1").Val())
	got, err := e.Pending(ctx, created)
	require.NoError(t, err)
	require.Equal(t, []eachloop.Expectation{{ID: "pred-1", Secret: "s1", CreatedAt: created}}, got)
}

func TestExpectationsRetention(t *testing.T) {
	c := newClient(t, redisAddr(t))
	e := newExpectations(t, c, newPrefix(t, c), redisstore.WithRetention(time.Millisecond))
	ctx := context.Background()
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: time.Now()}))
	require.NoError(t, e.Done(ctx, "done"))
	// Redis expires the done expectation after a millisecond.
	require.Eventually(t, func() bool {
		got, err := e.Secrets(ctx, "done")
		return err == nil && got == nil
	}, 5*time.Second, time.Millisecond)
}

func TestNewExpectationsValidates(t *testing.T) {
	_, err := redisstore.NewExpectations(nil)
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = redisstore.NewExpectations(c, redisstore.WithRetention(time.Microsecond))
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
	_, err = redisstore.NewExpectations(c, redisstore.WithExpectationsPrefix("a{b}:"))
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
}

// TestRestartBetweenCreationAndOutcome runs the restart suite on Redis:
// each process opens a client of its own on the same keys.
func TestRestartBetweenCreationAndOutcome(t *testing.T) {
	addr := redisAddr(t)
	prefix := newPrefix(t, newClient(t, addr))
	expectationstest.RunRestart(t, func(t *testing.T) expectationstest.Process {
		c := newClient(t, addr)
		return expectationstest.Process{Expectations: newExpectations(t, c, prefix+"expect:"), Store: newStore(t, c, prefix+"claim:")}
	})
}

// BenchmarkExpectations measures the two commands on a webhook's path:
// Secrets (the Handler's SecretLookup) and Done (the Loop's tracking
// Store, after a won claim).
func BenchmarkExpectations(b *testing.B) {
	c := newClient(b, redisAddr(b))
	expectationstest.Benchmark(b, newExpectations(b, c, newPrefix(b, c)))
}
