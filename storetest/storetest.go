// Package storetest is the conformance suite for implementations of
// eachhook.Store. Every store in this project runs it; run it on your own:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) eachhook.Store { return newMyStore(t) },
//		})
//	}
//
// A store that several replicas share (one database behind many
// processes) also sets [Harness.Replicas], so that Run checks what
// replicas rely on, over real HTTP between two Handlers too; and
// [Harness.Outage], so that Run checks the Handler's answers while the
// store's server is unreachable:
//
//	storetest.Run(t, storetest.Harness{
//		New: newMyStore,
//		Replicas: func(t *testing.T) (a, b eachhook.Store) {
//			table := newTable(t)
//			return newMyStore(t, conn1, table), newMyStore(t, conn2, table)
//		},
//	})
//
// [Proxy] and [ReplyDropper], the TCP proxies the Outage subtests use,
// serve a store's own tests of connection failures too.
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

// Harness describes the Store implementation under test to [Run].
type Harness struct {
	// New returns a store, called once per subtest: an empty one, or one
	// whose ids cannot collide with other subtests' (the suite's ids
	// include the test's name and the time). Required.
	New func(t *testing.T) eachhook.Store
	// Replicas returns two stores on one backend (the same table or key
	// prefix, each through a client of its own, as two processes' stores
	// are), empty or keyed apart from other subtests'. It is called once
	// per replica subtest. Default nil: the replica subtests are not run,
	// as for a store whose instances share nothing (the in-memory store).
	Replicas func(t *testing.T) (a, b eachhook.Store)
	// Outage describes how to make the store's server unreachable.
	// Default nil: the Outage subtest is not run.
	Outage *Outage
}

// Outage describes a store whose server a test can make unreachable, for
// [Harness.Outage].
type Outage struct {
	// Target is the server's address (host:port).
	Target string
	// NewStore returns a store whose every connection goes to addr (a
	// proxy to Target) instead of Target. It is called once for each of
	// two replicas; the stores it returns in one test must share their
	// server-side state, which must be empty or keyed apart from other
	// tests'. The stores must implement [eachhook.Pinger].
	NewStore func(t *testing.T, addr string) eachhook.Store
	// Claimed reports whether a claim of id is committed on the server,
	// asked over a connection of its own (not through the proxy).
	Claimed func(t *testing.T, id string) bool
}

// Run exercises the Store contract on the stores h makes. Expiry is
// tested with real time: leases and TTLs of a few hundred milliseconds,
// so stores may count time in milliseconds.
//
// The subtests:
//
//   - ClaimThenDuplicate: a claimed id is a duplicate; tokens are
//     non-empty and distinct.
//   - CompleteThenDuplicate: an id marked done stays a duplicate after its
//     claim's lease, until the done record's TTL.
//   - LeaseExpiresAfterCrash: a claim never completed nor released (its
//     process died) is a duplicate within its lease and claimable after.
//   - DoneExpires: a done record is forgotten after its TTL.
//   - Release, ReleaseAfterComplete: Release by the claim's token forgets
//     the claim, in progress or done.
//   - ReleaseOtherToken, ReleaseUnclaimed: a Release that names no held
//     claim is no error and changes nothing.
//   - CompleteOtherToken: a Complete by a claim whose lease ran out and
//     was taken over leaves the new claim alone.
//   - CompleteUnclaimed: Complete of an unclaimed id marks it done.
//   - ConcurrentClaims: of 100 simultaneous claims exactly one wins.
//   - CancelledContext: every method fails with the context's error and
//     claims nothing.
//
// The subtests under Replicas need [Harness.Replicas]:
//
//   - ClaimIsShared, CompleteIsShared: a claim, and a done record, made
//     through one replica's store are seen through the other's.
//   - LeaseExpiryIsShared: a claim of a replica that died is claimable
//     through the other once its lease ran out.
//   - ReleaseKeepsAnotherReplicasClaim: a claim that expired and was then
//     taken through the other replica's store survives a Release and a
//     Complete by the first claim's token; a Release by the holder's
//     token does remove it.
//   - TwoHandlers/OneStore, TwoHandlers/StorePerReplica: two Handlers,
//     each behind its own HTTP server, on one store or on the two
//     replicas' stores, answer 100 concurrent copies of one delivery
//     split between them with 200 and run its callback exactly once.
//   - LeaseExpiryOverHTTP: a delivery whose claim was taken through one
//     replica's store by a process that then died is a duplicate for a
//     Handler on the other's while the lease lasts, and is processed
//     exactly once by it after the lease ran out.
//
// The Outage subtest needs [Harness.Outage]; it cuts the server's
// connections with a [Proxy], with two Handlers sharing the store:
//
//   - while the server is unreachable, every delivery (new ones and
//     copies of accepted ones) is answered 503 with Retry-After and no
//     claim is committed, and Health answers 503 "store unreachable";
//     once it is back, Health answers 200 and the resent deliveries are
//     answered 200 and processed exactly once;
//   - when the server goes away in the middle of a stream of deliveries,
//     every delivery is answered 200 or 503, every 200 has a committed
//     claim and its callback runs exactly once; every 503 leaves no claim
//     once the server is back (a claim the server applied although its
//     answer was lost with the connection must be undone by the store),
//     and is processed exactly once when resent.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is required")
	}
	newStore := h.New
	ctx := context.Background()
	id := func(t *testing.T) string { return fmt.Sprintf("pred-%s-%d", t.Name(), time.Now().UnixNano()) }
	const short, long = 300 * time.Millisecond, time.Hour
	pastShort := func() { time.Sleep(2 * short) }

	t.Run("ClaimThenDuplicate", func(t *testing.T) {
		s, k := newStore(t), id(t)
		t1 := mustClaim(t, s, k, long, true)
		mustClaim(t, s, k, long, false)
		t2 := mustClaim(t, s, k+"-other", long, true)
		if t1 == "" || t2 == "" || t1 == t2 {
			t.Fatalf("tokens %q and %q: want two distinct non-empty tokens", t1, t2)
		}
	})
	t.Run("CompleteThenDuplicate", func(t *testing.T) {
		s, k := newStore(t), id(t)
		tok := mustClaim(t, s, k, short, true)
		mustComplete(t, s, k, tok, long)
		mustClaimBecause(t, s, k, long, false, "a done id is a duplicate")
		pastShort()
		mustClaimBecause(t, s, k, long, false, "a done id stays a duplicate after its claim's lease")
	})
	t.Run("LeaseExpiresAfterCrash", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustClaim(t, s, k, short, true) // then the process dies: no Complete, no Release
		mustClaimBecause(t, s, k, long, false, "a claim is a duplicate within its lease")
		pastShort()
		mustClaimBecause(t, s, k, long, true, "a claim whose lease ran out must count as absent, so that a redelivery is processed")
		mustClaim(t, s, k, long, false)
	})
	t.Run("DoneExpires", func(t *testing.T) {
		s, k := newStore(t), id(t)
		tok := mustClaim(t, s, k, long, true)
		mustComplete(t, s, k, tok, short)
		mustClaim(t, s, k, long, false)
		pastShort()
		mustClaimBecause(t, s, k, long, true, "a done record whose TTL ran out must count as absent")
	})
	t.Run("Release", func(t *testing.T) {
		s, k := newStore(t), id(t)
		tok := mustClaim(t, s, k, long, true)
		mustRelease(t, s, k, tok)
		mustClaimBecause(t, s, k, long, true, "a released id must be claimable")
		mustClaim(t, s, k, long, false)
	})
	t.Run("ReleaseAfterComplete", func(t *testing.T) {
		s, k := newStore(t), id(t)
		tok := mustClaim(t, s, k, long, true)
		mustComplete(t, s, k, tok, long)
		mustRelease(t, s, k, tok)
		mustClaimBecause(t, s, k, long, true, "Release by the token of a done record must forget it")
	})
	t.Run("ReleaseOtherToken", func(t *testing.T) {
		s, k := newStore(t), id(t)
		tok := mustClaim(t, s, k, long, true)
		other := mustClaim(t, s, k+"-other", long, true)
		mustRelease(t, s, k, other)
		mustRelease(t, s, k, "")
		mustRelease(t, s, k, "not-a-token")
		mustClaimBecause(t, s, k, long, false, "a Release by another token must leave the claim alone")
		mustComplete(t, s, k, tok, long)
		mustRelease(t, s, k, other)
		mustClaimBecause(t, s, k, long, false, "a Release by another token must leave the done record alone")
	})
	t.Run("ReleaseUnclaimed", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustRelease(t, s, k, "")
		mustRelease(t, s, k, mustClaim(t, s, k+"-other", long, true))
		mustClaim(t, s, k, long, true)
	})
	t.Run("CompleteOtherToken", func(t *testing.T) {
		s, k := newStore(t), id(t)
		old := mustClaim(t, s, k, short, true)
		pastShort()
		mustClaim(t, s, k, short, true) // takes over the claim whose lease ran out
		mustComplete(t, s, k, old, long)
		pastShort()
		mustClaimBecause(t, s, k, long, true, "a Complete by a claim that was taken over must leave the new claim alone")
	})
	t.Run("CompleteUnclaimed", func(t *testing.T) {
		s, k := newStore(t), id(t)
		mustComplete(t, s, k, "", long)
		mustClaimBecause(t, s, k, long, false, "Complete of an unclaimed id must mark it done")
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
				_, ok, err := s.Claim(ctx, k, long)
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
		tok, ok, err := s.Claim(cctx, k, long)
		if !errors.Is(err, context.Canceled) || ok || tok != "" {
			t.Fatalf("Claim with a cancelled context = %q, %v, %v; want \"\", false, context.Canceled", tok, ok, err)
		}
		if err := s.Complete(cctx, k, "", long); !errors.Is(err, context.Canceled) {
			t.Fatalf("Complete with a cancelled context = %v; want context.Canceled", err)
		}
		// The failed calls must not have claimed.
		tok = mustClaim(t, s, k, long, true)
		if err := s.Release(cctx, k, tok); !errors.Is(err, context.Canceled) {
			t.Fatalf("Release with a cancelled context = %v; want context.Canceled", err)
		}
	})
	if h.Outage != nil {
		t.Run("Outage", func(t *testing.T) { runOutage(t, *h.Outage) })
	}
	if h.Replicas == nil {
		// The stores share no backend (as the in-memory store's instances
		// do not), so the replica subtests do not apply and are not run.
		return
	}
	t.Run("Replicas", func(t *testing.T) {
		t.Run("ClaimIsShared", func(t *testing.T) {
			a, b := h.Replicas(t)
			k := id(t)
			mustClaim(t, a, k, long, true)
			mustClaimBecause(t, b, k, long, false, "a claim through one replica must be a duplicate through the other")
		})
		t.Run("CompleteIsShared", func(t *testing.T) {
			a, b := h.Replicas(t)
			k := id(t)
			tok := mustClaim(t, a, k, short, true)
			mustComplete(t, a, k, tok, long)
			pastShort()
			mustClaimBecause(t, b, k, long, false, "an id done through one replica must be a duplicate through the other")
			mustRelease(t, b, k, tok)
			mustClaimBecause(t, a, k, long, true, "a Release by the token through the other replica must forget the done record")
		})
		t.Run("LeaseExpiryIsShared", func(t *testing.T) {
			a, b := h.Replicas(t)
			k := id(t)
			mustClaim(t, a, k, short, true) // then a's process dies
			mustClaim(t, b, k, long, false)
			pastShort()
			mustClaimBecause(t, b, k, long, true, "the claim of a replica that died must be claimable through the other once its lease ran out")
		})
		t.Run("ReleaseKeepsAnotherReplicasClaim", func(t *testing.T) {
			a, b := h.Replicas(t)
			k := id(t)
			ta := mustClaim(t, a, k, short, true)
			pastShort() // a's lease runs out
			tb := mustClaimBecause(t, b, k, long, true, "an expired claim must count as absent")

			mustRelease(t, a, k, ta)
			mustClaimBecause(t, b, k, long, false, "the release by a's token deleted the claim b took after a's expired")
			mustComplete(t, a, k, ta, short)
			pastShort()
			mustClaimBecause(t, a, k, long, false, "the Complete by a's token must leave alone the claim b took after a's expired")

			mustRelease(t, b, k, tb)
			mustClaimBecause(t, a, k, long, true, "the release by b's token kept b's claim")
		})
		t.Run("TwoHandlers", func(t *testing.T) {
			t.Run("OneStore", func(t *testing.T) {
				a, _ := h.Replicas(t)
				runSharedStore(t, a, a)
			})
			t.Run("StorePerReplica", func(t *testing.T) {
				a, b := h.Replicas(t)
				runSharedStore(t, a, b)
			})
		})
		t.Run("LeaseExpiryOverHTTP", func(t *testing.T) {
			a, b := h.Replicas(t)
			runLeaseExpiry(t, a, b)
		})
	})
}

// mustClaim fails t unless Claim(id, lease) answers exactly want and no
// error, and returns the token.
func mustClaim(t *testing.T, s eachhook.Store, id string, lease time.Duration, want bool) string {
	t.Helper()
	return mustClaimBecause(t, s, id, lease, want, "")
}

// mustClaimBecause is mustClaim with the reason want is expected.
func mustClaimBecause(t *testing.T, s eachhook.Store, id string, lease time.Duration, want bool, why string) string {
	t.Helper()
	token, got, err := s.Claim(context.Background(), id, lease)
	if err != nil {
		t.Fatalf("Claim(%q): %v", id, err)
	}
	if got != want {
		if why != "" {
			why = ": " + why
		}
		t.Fatalf("Claim(%q) = %v, want %v%s", id, got, want, why)
	}
	if got == (token == "") {
		t.Fatalf("Claim(%q) = %q, %v: a won claim has a token, a lost one none", id, token, got)
	}
	return token
}

func mustComplete(t *testing.T, s eachhook.Store, id, token string, ttl time.Duration) {
	t.Helper()
	if err := s.Complete(context.Background(), id, token, ttl); err != nil {
		t.Fatalf("Complete(%q, %q): %v", id, token, err)
	}
}

func mustRelease(t *testing.T, s eachhook.Store, id, token string) {
	t.Helper()
	if err := s.Release(context.Background(), id, token); err != nil {
		t.Fatalf("Release(%q, %q): %v", id, token, err)
	}
}
