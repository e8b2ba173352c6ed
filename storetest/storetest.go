// Package storetest is the conformance suite for implementations of
// eachhook.Store. Every store in this project runs it; run it on your own:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eachhook.Store { return newMyStore(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
)

// Run exercises the Store contract on stores made by newStore, which is
// called once per subtest and must return an empty store (or one whose
// ids cannot collide with other subtests'). Expiry is tested with real
// time: TTLs of a few hundred milliseconds, so stores may count time in
// milliseconds.
func Run(t *testing.T, newStore func(t *testing.T) eachhook.Store) {
	t.Helper()
	ctx := context.Background()
	id := func(t *testing.T) string { return fmt.Sprintf("pred-%s-%d", t.Name(), time.Now().UnixNano()) }

	t.Run("ClaimThenDuplicate", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustClaim(t, s, k, time.Hour, true)
		mustClaim(t, s, k, time.Hour, false)
		mustClaim(t, s, k+"-other", time.Hour, true)
	})
	t.Run("Release", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustClaim(t, s, k, time.Hour, true)
		if err := s.Release(ctx, k); err != nil {
			t.Fatalf("Release: %v", err)
		}
		mustClaim(t, s, k, time.Hour, true)
		mustClaim(t, s, k, time.Hour, false)
	})
	t.Run("ReleaseUnclaimed", func(t *testing.T) {
		s := newStore(t)
		if err := s.Release(ctx, id(t)); err != nil {
			t.Fatalf("Release of an unclaimed id: %v, want nil", err)
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustClaim(t, s, k, 300*time.Millisecond, true)
		mustClaim(t, s, k, 300*time.Millisecond, false)
		time.Sleep(600 * time.Millisecond)
		mustClaim(t, s, k, time.Hour, true)
	})
	t.Run("ConcurrentClaims", func(t *testing.T) {
		s, k := newStore(t), id(t)
		const n = 100
		var wins, fails atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.Claim(ctx, k, time.Hour)
				if err != nil {
					fails.Add(1)
					return
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if fails.Load() != 0 || wins.Load() != 1 {
			t.Fatalf("%d concurrent claims: %d won, %d failed; want exactly 1 win, 0 failures", n, wins.Load(), fails.Load())
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		s, k := newStore(t), id(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ok, err := s.Claim(cctx, k, time.Hour)
		if !errors.Is(err, context.Canceled) || ok {
			t.Fatalf("Claim with a cancelled context = %v, %v; want false, context.Canceled", ok, err)
		}
		if err := s.Release(cctx, k); !errors.Is(err, context.Canceled) {
			t.Fatalf("Release with a cancelled context = %v; want context.Canceled", err)
		}
		// The failed claim must not have claimed.
		mustClaim(t, s, k, time.Hour, true)
	})
}

func mustClaim(t *testing.T, s eachhook.Store, id string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := s.Claim(context.Background(), id, ttl)
	if err != nil {
		t.Fatalf("Claim(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("Claim(%q) = %v, want %v", id, got, want)
	}
}
