// Package storetest is the conformance suite for implementations of
// eachhook.Store. Every store in this project runs it; run it on your own:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eachhook.Store { return newMyStore(t) })
//	}
//
// A store that several replicas share (one database behind many
// processes) also passes [WithReplicas], so that Run checks what replicas
// rely on:
//
//	storetest.Run(t, newMyStore, storetest.WithReplicas(func(t *testing.T) (a, b eachhook.Store) {
//		table := newTable(t)
//		return newMyStore(t, conn1, table), newMyStore(t, conn2, table)
//	}))
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

// Option configures [Run]. An Option that cannot work fails the test.
type Option func(*config) error

type config struct {
	newReplicas func(t *testing.T) (a, b eachhook.Store)
}

// WithReplicas makes [Run] also exercise a store shared by replicas:
// newReplicas returns two stores on one backend (the same table or key
// prefix, each through a client of its own, as two processes' stores are),
// empty or keyed apart from other subtests'. It is called once per replica
// subtest; a nil newReplicas is an error. Default: the replica subtests are
// skipped, as for a store whose instances share nothing (the in-memory
// store).
func WithReplicas(newReplicas func(t *testing.T) (a, b eachhook.Store)) Option {
	return func(c *config) error {
		if newReplicas == nil {
			return errors.New("storetest: WithReplicas(nil)")
		}
		c.newReplicas = newReplicas
		return nil
	}
}

// Run exercises the Store contract on stores made by newStore, which is
// called once per subtest and must return an empty store (or one whose
// ids cannot collide with other subtests'). Expiry is tested with real
// time: TTLs of a few hundred milliseconds, so stores may count time in
// milliseconds.
//
// The subtests under Replicas need [WithReplicas]:
//
//   - ClaimIsShared: an id claimed through one replica's store is a
//     duplicate through the other's.
//   - ReleaseKeepsAnotherReplicasClaim: a claim that expired and was then
//     taken through the other replica's store survives a Release through
//     the first (the first's Release removes only its own claim); a
//     Release by the holder does remove it.
func Run(t *testing.T, newStore func(t *testing.T) eachhook.Store, opts ...Option) {
	t.Helper()
	var cfg config
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			t.Fatal(err)
		}
	}
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
	t.Run("Replicas", func(t *testing.T) {
		if cfg.newReplicas == nil {
			t.Skip("no storetest.WithReplicas: the stores share no backend (as the in-memory store's instances do not)")
		}
		t.Run("ClaimIsShared", func(t *testing.T) {
			a, b := cfg.newReplicas(t)
			k := id(t)
			mustClaim(t, a, k, time.Hour, true)
			mustClaimBecause(t, b, k, time.Hour, false, "a claim through one replica must be a duplicate through the other")
		})
		t.Run("ReleaseKeepsAnotherReplicasClaim", func(t *testing.T) {
			a, b := cfg.newReplicas(t)
			k := id(t)
			mustClaim(t, a, k, 300*time.Millisecond, true)
			time.Sleep(600 * time.Millisecond) // a's claim expires
			mustClaimBecause(t, b, k, time.Hour, true, "an expired claim must count as absent")

			if err := a.Release(ctx, k); err != nil {
				t.Fatalf("Release through the replica whose claim expired: %v", err)
			}
			mustClaimBecause(t, b, k, time.Hour, false, "the release through a deleted the claim b took after a's expired")
			mustClaimBecause(t, a, k, time.Hour, false, "the release through a deleted the claim b took after a's expired")

			if err := b.Release(ctx, k); err != nil {
				t.Fatalf("Release through the replica that holds the claim: %v", err)
			}
			mustClaimBecause(t, a, k, time.Hour, true, "the release through b kept b's claim")
		})
	})
}

// mustClaim fails t unless Claim(id, ttl) answers exactly want and no
// error.
func mustClaim(t *testing.T, s eachhook.Store, id string, ttl time.Duration, want bool) {
	t.Helper()
	mustClaimBecause(t, s, id, ttl, want, "")
}

// mustClaimBecause is mustClaim with the reason want is expected.
func mustClaimBecause(t *testing.T, s eachhook.Store, id string, ttl time.Duration, want bool, why string) {
	t.Helper()
	got, err := s.Claim(context.Background(), id, ttl)
	if err != nil {
		t.Fatalf("Claim(%q): %v", id, err)
	}
	if got != want {
		if why != "" {
			why = ": " + why
		}
		t.Fatalf("Claim(%q) = %v, want %v%s", id, got, want, why)
	}
}
