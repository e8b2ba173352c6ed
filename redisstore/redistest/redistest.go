// Package redistest finds the Redis server of the eachhook tests and gives
// each test a client and keys of its own. Every module's tests that need
// Redis use it.
package redistest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Addr returns the test server's address: $EACHHOOK_REDIS_ADDR, or
// 127.0.0.1:6379. When it does not answer, the test fails in CI (CI set)
// and is skipped elsewhere.
func Addr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("EACHHOOK_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis at %s: %v (CI is set: a missing server is a failure)", addr, err)
		}
		tb.Skipf("redis at %s: %v (set EACHHOOK_REDIS_ADDR)", addr, err)
	}
	return addr
}

// Client returns a new client of the test server (see Addr), closed when
// the test ends.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: Addr(tb)})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix of the test's own, whose keys c deletes when
// the test ends.
func Prefix(tb testing.TB, c *redis.Client) string {
	prefix := fmt.Sprintf("eachhooktest:%d:", time.Now().UnixNano())
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}
