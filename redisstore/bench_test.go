package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook/redisstore"
	"github.com/eachhook/eachhook/redisstore/redistest"
)

// benchTTL has a millisecond part, so that both benchmarks send PX.
const benchTTL = 10*time.Second + time.Millisecond

// benchPrefix returns a key prefix of the benchmark's own. Its keys expire
// after benchTTL, sooner than deleting them one by one would take.
func benchPrefix() string {
	return "eachhookbench:" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
}

// loop runs op b.N times and reports, besides the mean ns/op, the median
// and the 90th percentile of single operations' latencies (over the last
// 65536), which a machine shared with other work disturbs less than the
// mean, and the client process's CPU time per operation (cpu-ns), which
// such work does not disturb.
func loop(b *testing.B, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, 1<<16)
	n := 0
	cpu := cpuTime()
	for b.Loop() {
		start := time.Now()
		if err := op(n); err != nil {
			b.Fatal(err)
		}
		lat[n%len(lat)] = time.Since(start)
		n++
	}
	cpu = cpuTime() - cpu
	lat = lat[:min(n, len(lat))]
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*9/10]), "p90-ns")
	b.ReportMetric(float64(cpu)/float64(n), "cpu-ns")
}

// BenchmarkClaim measures a winning Claim (SET NX PX with a fresh token,
// plus remembering the token), to compare with BenchmarkRawSetNX through
// the same kind of client.
func BenchmarkClaim(b *testing.B) {
	c := redistest.Client(b)
	s := newStore(b, c, benchPrefix())
	ctx := context.Background()
	loop(b, func(i int) error {
		_, ok, err := s.Claim(ctx, strconv.Itoa(i), benchTTL)
		if err == nil && !ok {
			b.Fatal("Claim of a fresh id lost")
		}
		return err
	})
}

// BenchmarkRawSetNX measures the floor: SET key value PX ttl NX through
// the client, on fresh keys like BenchmarkClaim's.
func BenchmarkRawSetNX(b *testing.B) {
	c := redistest.Client(b)
	prefix := benchPrefix()
	ctx := context.Background()
	loop(b, func(i int) error {
		ok, err := c.SetNX(ctx, prefix+strconv.Itoa(i), "1", benchTTL).Result()
		if err == nil && !ok {
			b.Fatal("SET NX of a fresh key lost")
		}
		return err
	})
}

// BenchmarkClaimDuplicate measures a losing Claim (a duplicate delivery):
// SET NX, then GET to tell a duplicate from the client's own retry.
func BenchmarkClaimDuplicate(b *testing.B) {
	c := redistest.Client(b)
	s := newStore(b, c, benchPrefix())
	ctx := context.Background()
	_, ok, err := s.Claim(ctx, "dup", benchTTL)
	if err != nil || !ok {
		b.Fatalf("Claim = %v, %v", ok, err)
	}
	loop(b, func(int) error {
		_, ok, err := s.Claim(ctx, "dup", benchTTL)
		if err == nil && ok {
			b.Fatal("Claim of a duplicate won")
		}
		return err
	})
}

// BenchmarkDeadLettersDeleteMissing measures what a successful delivery
// adds with Redis dead letters: the Handler deletes the id's dead letter,
// which is almost always missing (one MULTI/HDEL/ZREM/EXEC round trip).
// Compare with BenchmarkClaim, the round trip every delivery makes anyway.
func BenchmarkDeadLettersDeleteMissing(b *testing.B) {
	c := redistest.Client(b)
	d, err := redisstore.NewDeadLetters(c, redisstore.WithKeyPrefix(benchPrefix()))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	loop(b, func(i int) error {
		found, err := d.Delete(ctx, strconv.Itoa(i))
		if found {
			b.Fatal("a dead letter that was never added")
		}
		return err
	})
}
