package redisexpect_test

import (
	"context"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/eachhook/eachhook/eachloop/redisexpect"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/eachhook/eachhook/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newExpectations(tb testing.TB, c redis.UniversalClient, prefix string, opts ...redisexpect.Option) *redisexpect.Expectations {
	tb.Helper()
	e, err := redisexpect.New(c, append([]redisexpect.Option{redisexpect.WithPrefix(prefix)}, opts...)...)
	require.NoError(tb, err)
	return e
}

func TestExpectationsConformance(t *testing.T) {
	c := redistest.Client(t)
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return newExpectations(t, c, redistest.Prefix(t, c))
	})
}

func TestExpectationsKeyLayout(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	e := newExpectations(t, c, prefix, redisexpect.WithRetention(time.Hour))
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
	c := redistest.Client(t)
	e := newExpectations(t, c, redistest.Prefix(t, c), redisexpect.WithRetention(time.Millisecond))
	ctx := context.Background()
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: time.Now()}))
	require.NoError(t, e.Done(ctx, "done"))
	// Redis expires the done expectation after a millisecond.
	require.Eventually(t, func() bool {
		got, err := e.Secrets(ctx, "done")
		return err == nil && got == nil
	}, 5*time.Second, time.Millisecond)
}

func TestNewValidates(t *testing.T) {
	_, err := redisexpect.New(nil)
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = redisexpect.New(c, redisexpect.WithRetention(time.Microsecond))
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
	_, err = redisexpect.New(c, redisexpect.WithPrefix("a{b}:"))
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
}

// TestRestartBetweenCreationAndOutcome runs the restart suite on Redis:
// each process opens a client of its own on the same keys.
func TestRestartBetweenCreationAndOutcome(t *testing.T) {
	prefix := redistest.Prefix(t, redistest.Client(t))
	expectationstest.RunRestart(t, func(t *testing.T) expectationstest.Process {
		c := redistest.Client(t)
		store, err := redisstore.New(c, redisstore.WithKeyPrefix(prefix+"claim:"))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, store.Close()) })
		return expectationstest.Process{Expectations: newExpectations(t, c, prefix+"expect:"), Store: store}
	})
}

// BenchmarkExpectations measures the two commands on a webhook's path:
// Secrets (the Handler's SecretLookup) and Done (the Loop's tracking
// Store, after a won claim).
func BenchmarkExpectations(b *testing.B) {
	c := redistest.Client(b)
	expectationstest.Benchmark(b, newExpectations(b, c, redistest.Prefix(b, c)))
}
