package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/eachhook/eachhook/redisstore/redistest"
	"github.com/eachhook/eachhook/storetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// newClient returns a client of the server at addr (not the test
// server's: a proxy's, or a server of the test's own), closed when the
// test ends.
func newClient(tb testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { c.Close() })
	return c
}

func newStore(tb testing.TB, c redis.UniversalClient, prefix string, opts ...redisstore.Option) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.New(c, append([]redisstore.Option{redisstore.WithKeyPrefix(prefix)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	addr := redistest.Addr(t)
	c, other := redistest.Client(t), redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) eachhook.Store { return newStore(t, c, redistest.Prefix(t, c)) },
		Replicas: func(t *testing.T) (a, b eachhook.Store) {
			prefix := redistest.Prefix(t, c)
			return newStore(t, c, prefix), newStore(t, other, prefix)
		},
		Outage: &storetest.Outage{
			Target: addr,
			NewStore: func(t *testing.T, addr string) eachhook.Store {
				return newStore(t, newClient(t, addr), prefix)
			},
			Claimed: func(t *testing.T, id string) bool {
				n, err := c.Exists(context.Background(), prefix+id).Result()
				require.NoError(t, err)
				return n == 1
			},
		},
	})
}

func TestNewRejectsUnworkableConfig(t *testing.T) {
	_, err := redisstore.New(nil)
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = redisstore.New(c, redisstore.WithMaxTokens(0))
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
	s, err := redisstore.New(c)
	require.NoError(t, err)
	_, _, err = s.Claim(context.Background(), "pred", 0)
	require.ErrorIs(t, err, redisstore.ErrInvalidTTL)
	require.ErrorIs(t, s.Complete(context.Background(), "pred", "", 0), redisstore.ErrInvalidTTL)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
}

func TestKeyLayout(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	s := newStore(t, c, prefix)
	ctx := context.Background()
	token, ok, err := s.Claim(ctx, "pred-1", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	ttl, err := c.PTTL(ctx, prefix+"pred-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 50*time.Second)
	require.LessOrEqual(t, ttl, time.Minute)
	v, err := c.Get(ctx, prefix+"pred-1").Result()
	require.NoError(t, err)
	require.Equal(t, token, v, "the key holds the claim's token")

	// Complete keeps the token and sets the dedupe TTL.
	require.NoError(t, s.Complete(ctx, "pred-1", token, time.Hour))
	ttl, err = c.PTTL(ctx, prefix+"pred-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 59*time.Minute)
	v, err = c.Get(ctx, prefix+"pred-1").Result()
	require.NoError(t, err)
	require.Equal(t, token, v)
}

// When the connection breaks after the server ran the claim, go-redis
// sends the command again; the claim must still be won, not taken for a
// duplicate of itself (which would drop the delivery).
func TestClaimWonThroughClientRetry(t *testing.T) {
	addr := redistest.Addr(t)
	direct := redistest.Client(t)
	prefix := redistest.Prefix(t, direct)
	const id = "pred-retried"
	proxy := storetest.NewReplyDropper(t, addr, prefix+id)
	s := newStore(t, newClient(t, proxy.Addr()), prefix)
	ctx := context.Background()

	token, ok, err := s.Claim(ctx, id, time.Hour)
	require.NoError(t, err)
	require.True(t, proxy.Dropped(), "the proxy did not drop the claim's reply")
	require.True(t, ok, "a claim retried by the client was taken for a duplicate")

	_, ok, err = s.Claim(ctx, id, time.Hour)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.Release(ctx, id, token))
	n, err := direct.Exists(ctx, prefix+id).Result()
	require.NoError(t, err)
	require.Zero(t, n, "release after a retried claim kept the claim")
}

// Ping is a real round trip: it fails while the server is unreachable.
func TestPing(t *testing.T) {
	addr := redistest.Addr(t)
	proxy := storetest.NewProxy(t, addr)
	noRetry := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
	t.Cleanup(func() { noRetry.Close() })
	s := newStore(t, noRetry, "eachhooktest:ping:")
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	proxy.Cut()
	require.Error(t, s.Ping(ctx))
	proxy.Restore(t)
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
}

// A Claim whose answer is lost after Redis applied it returns an error (the
// Handler answers 503) and leaves no claim behind: the store deletes it
// once Redis answers, so the sender's retry, on any replica, is processed.
func TestFailedClaimLeavesNoClaim(t *testing.T) {
	addr := redistest.Addr(t)
	direct := redistest.Client(t)
	prefix := redistest.Prefix(t, direct)
	ctx := context.Background()
	for _, sameStore := range []bool{false, true} {
		id := fmt.Sprintf("pred-lost-%v", sameStore)
		proxy := storetest.NewReplyDropper(t, addr, prefix+id)
		// No client retries, so the lost answer is Claim's error.
		noRetry := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
		t.Cleanup(func() { noRetry.Close() })
		s := newStore(t, noRetry, prefix)

		_, ok, err := s.Claim(ctx, id, time.Hour)
		require.Error(t, err)
		require.False(t, ok)
		require.True(t, proxy.Dropped())

		if sameStore {
			// The same store claims the id again before it was undone in
			// the background, or after: either way it wins.
			_, ok, err = s.Claim(ctx, id, time.Hour)
			require.NoError(t, err)
			require.True(t, ok)
			continue
		}
		require.Eventually(t, func() bool {
			n, err := direct.Exists(ctx, prefix+id).Result()
			require.NoError(t, err)
			return n == 0
		}, 10*time.Second, 10*time.Millisecond, "the failed claim was not undone")
		_, ok, err = newStore(t, direct, prefix).Claim(ctx, id, time.Hour)
		require.NoError(t, err)
		require.True(t, ok)
	}
}
