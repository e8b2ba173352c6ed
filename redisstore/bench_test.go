package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// benchTTL has a millisecond part, so that both benchmarks send PX.
const benchTTL = 10*time.Second + time.Millisecond

// benchPrefix returns a key prefix of the benchmark's own. Its keys expire
// after benchTTL, sooner than deleting them one by one would take.
func benchPrefix() string {
	return "eachhookbench:" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
}

// BenchmarkClaim measures a winning Claim (SET NX PX GET with a fresh
// token, plus remembering the token), to compare with BenchmarkRawSetNX
// through the same kind of client.
func BenchmarkClaim(b *testing.B) {
	c := newClient(b, redisAddr(b))
	s := newStore(b, c, benchPrefix())
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		ok, err := s.Claim(ctx, strconv.Itoa(i), benchTTL)
		if err != nil || !ok {
			b.Fatalf("Claim = %v, %v", ok, err)
		}
	}
}

// BenchmarkRawSetNX measures the floor: SET key value NX PX ttl through
// the client, on fresh keys like BenchmarkClaim's.
func BenchmarkRawSetNX(b *testing.B) {
	c := newClient(b, redisAddr(b))
	prefix := benchPrefix()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		ok, err := c.SetNX(ctx, prefix+strconv.Itoa(i), "1", benchTTL).Result()
		if err != nil || !ok {
			b.Fatalf("SetNX = %v, %v", ok, err)
		}
	}
}

// BenchmarkClaimDuplicate measures a losing Claim (a duplicate delivery):
// SET NX, then GET to tell a duplicate from the client's own retry.
func BenchmarkClaimDuplicate(b *testing.B) {
	c := newClient(b, redisAddr(b))
	s := newStore(b, c, benchPrefix())
	ctx := context.Background()
	ok, err := s.Claim(ctx, "dup", benchTTL)
	if err != nil || !ok {
		b.Fatalf("Claim = %v, %v", ok, err)
	}
	for b.Loop() {
		ok, err := s.Claim(ctx, "dup", benchTTL)
		if err != nil || ok {
			b.Fatalf("Claim of a duplicate = %v, %v", ok, err)
		}
	}
}
