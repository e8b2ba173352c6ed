// Package deadlettertest is the conformance suite for implementations of
// eachhook.DeadLetterStore. Every dead-letter store in this project runs
// it; run it on your own:
//
//	func TestMyDeadLetters(t *testing.T) {
//		deadlettertest.Run(t, deadlettertest.Harness{
//			New: func(t *testing.T) eachhook.DeadLetterStore { return newMyStore(t) },
//		})
//	}
//
// A store that several replicas share also sets [Harness.Replicas], so
// that Run checks that a dead letter added through one replica is listed,
// replayed and discarded through another.
package deadlettertest

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

// Harness describes the DeadLetterStore implementation under test to
// [Run].
type Harness struct {
	// New returns an empty store. It is called once per subtest.
	// Required.
	New func(t *testing.T) eachhook.DeadLetterStore
	// Replicas returns two stores on one empty backend (the same table or
	// key prefix, each through a client of its own, as two processes'
	// stores are). Default nil: the Replicas subtest is not run, as for a
	// store whose instances share nothing (the in-memory one).
	Replicas func(t *testing.T) (a, b eachhook.DeadLetterStore)
}

// Run exercises the DeadLetterStore contract on the stores h makes. The
// subtests:
//
//   - AddGetDelete: a dead letter comes back from Get with every field as
//     added (Body byte for byte, also bytes that are not UTF-8; At equal
//     as a time); Delete reports true once, then false, and Get then
//     reports false with a nil error.
//   - GetAndDeleteMissing: Get and Delete of an id never added return
//     false and a nil error.
//   - AddReplaces: a second Add of an ID replaces the first: one dead
//     letter, with the second's fields.
//   - ListOrder: an empty store lists none with a nil error; List orders
//     by At, then by ID, whatever the order of the Adds.
//   - ConcurrentDeletes: of simultaneous Deletes of one id, exactly one
//     reports true.
//   - CancelledContext: every method called with a cancelled context
//     returns an error matching context.Canceled, and the Add stored
//     nothing.
//   - Replicas (with [Harness.Replicas]): a dead letter added through one
//     replica's store is listed and got through the other's; deleted
//     through the other, it is gone from both.
//
// Times used are whole microseconds in UTC.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("deadlettertest: Harness.New is required")
	}
	newStore := h.New
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Microsecond)

	t.Run("AddGetDelete", func(t *testing.T) {
		s := newStore(t)
		dl := eachhook.DeadLetter{
			ID:       "pred-1",
			Status:   "success",
			Reason:   "callback_failed",
			Body:     []byte("{\"id\":\"pred-1\",\"status\":\"success\",\"x\":\"\xff\x00\xfe\"}\n"),
			Attempts: 3,
			Err:      "downstream unavailable",
			At:       base,
		}
		mustAdd(t, s, dl)
		got, ok, err := s.Get(ctx, dl.ID)
		if err != nil || !ok {
			t.Fatalf("Get after Add = %v, %v; want true, nil", ok, err)
		}
		requireEqual(t, "Get", got, dl)
		mustDelete(t, s, dl.ID, true)
		mustDelete(t, s, dl.ID, false)
		if got, ok, err := s.Get(ctx, dl.ID); err != nil || ok {
			t.Fatalf("Get after Delete = %+v, %v, %v; want false, nil", got, ok, err)
		}
		if list := mustList(t, s); len(list) != 0 {
			t.Fatalf("List after Delete = %d dead letters, want 0", len(list))
		}
	})
	t.Run("GetAndDeleteMissing", func(t *testing.T) {
		s := newStore(t)
		if got, ok, err := s.Get(ctx, "never-added"); err != nil || ok || got.ID != "" {
			t.Fatalf("Get of a missing id = %+v, %v, %v; want zero, false, nil", got, ok, err)
		}
		mustDelete(t, s, "never-added", false)
	})
	t.Run("AddReplaces", func(t *testing.T) {
		s := newStore(t)
		first := eachhook.DeadLetter{ID: "pred-r", Status: "failed", Reason: "no_callback", Body: []byte(`{"a":1}`), At: base}
		second := eachhook.DeadLetter{ID: "pred-r", Status: "success", Reason: "callback_failed", Body: []byte(`{"b":2}`), Attempts: 2, Err: "again", At: base.Add(time.Second)}
		mustAdd(t, s, first)
		mustAdd(t, s, second)
		list := mustList(t, s)
		if len(list) != 1 {
			t.Fatalf("List after two Adds of one ID = %d dead letters, want 1", len(list))
		}
		requireEqual(t, "List", list[0], second)
	})
	t.Run("ListOrder", func(t *testing.T) {
		s := newStore(t)
		if list := mustList(t, s); len(list) != 0 {
			t.Fatalf("List of an empty store = %d dead letters, want 0", len(list))
		}
		// Added out of order; b and c share an At.
		want := []eachhook.DeadLetter{
			{ID: "a", Status: "success", Reason: "callback_failed", Body: []byte(`{}`), At: base.Add(-time.Hour)},
			{ID: "b", Status: "success", Reason: "callback_failed", Body: []byte(`{}`), At: base},
			{ID: "c", Status: "failed", Reason: "no_callback", Body: []byte(`{}`), At: base},
			{ID: "d", Status: "weird", Reason: "unknown_status", Body: []byte(`{}`), At: base.Add(time.Microsecond)},
		}
		for _, i := range []int{3, 2, 0, 1} {
			mustAdd(t, s, want[i])
		}
		list := mustList(t, s)
		if len(list) != len(want) {
			t.Fatalf("List = %d dead letters, want %d", len(list), len(want))
		}
		for i := range want {
			requireEqual(t, fmt.Sprintf("List[%d]", i), list[i], want[i])
		}
	})
	t.Run("ConcurrentDeletes", func(t *testing.T) {
		s := newStore(t)
		mustAdd(t, s, eachhook.DeadLetter{ID: "pred-c", Status: "success", Reason: "callback_failed", Body: []byte(`{}`), At: base})
		const n = 20
		var wins, fails atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				ok, err := s.Delete(ctx, "pred-c")
				switch {
				case err != nil:
					fails.Add(1)
				case ok:
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || fails.Load() != 0 {
			t.Fatalf("%d concurrent Deletes: %d reported true, %d failed; want exactly 1 true, 0 failures", n, wins.Load(), fails.Load())
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		dl := eachhook.DeadLetter{ID: "pred-x", Status: "success", Reason: "callback_failed", Body: []byte(`{}`), At: base}
		if err := s.Add(cctx, dl); !errors.Is(err, context.Canceled) {
			t.Fatalf("Add with a cancelled context = %v, want context.Canceled", err)
		}
		if _, err := s.List(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("List with a cancelled context = %v, want context.Canceled", err)
		}
		if _, _, err := s.Get(cctx, dl.ID); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get with a cancelled context = %v, want context.Canceled", err)
		}
		if _, err := s.Delete(cctx, dl.ID); !errors.Is(err, context.Canceled) {
			t.Fatalf("Delete with a cancelled context = %v, want context.Canceled", err)
		}
		if _, ok, err := s.Get(ctx, dl.ID); err != nil || ok {
			t.Fatalf("Get after a cancelled Add = %v, %v; want false, nil", ok, err)
		}
	})
	if h.Replicas == nil {
		// The stores share no backend (as the in-memory store's instances
		// do not), so the replica subtest does not apply and is not run.
		return
	}
	t.Run("Replicas", func(t *testing.T) {
		a, b := h.Replicas(t)
		dl := eachhook.DeadLetter{ID: "pred-shared", Status: "success", Reason: "callback_failed", Body: []byte(`{"id":"pred-shared"}`), Attempts: 1, Err: "boom", At: base}
		mustAdd(t, a, dl)
		list := mustList(t, b)
		if len(list) != 1 {
			t.Fatalf("List through the other replica = %d dead letters, want 1", len(list))
		}
		requireEqual(t, "List through the other replica", list[0], dl)
		if got, ok, err := b.Get(ctx, dl.ID); err != nil || !ok {
			t.Fatalf("Get through the other replica = %v, %v; want true, nil", ok, err)
		} else {
			requireEqual(t, "Get through the other replica", got, dl)
		}
		mustDelete(t, b, dl.ID, true)
		if _, ok, err := a.Get(ctx, dl.ID); err != nil || ok {
			t.Fatalf("Get through the first replica after the other's Delete = %v, %v; want false, nil", ok, err)
		}
		mustDelete(t, a, dl.ID, false)
	})
}

func mustAdd(t *testing.T, s eachhook.DeadLetterStore, dl eachhook.DeadLetter) {
	t.Helper()
	if err := s.Add(context.Background(), dl); err != nil {
		t.Fatalf("Add(%s): %v", dl.ID, err)
	}
}

func mustList(t *testing.T, s eachhook.DeadLetterStore) []eachhook.DeadLetter {
	t.Helper()
	list, err := s.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return list
}

func mustDelete(t *testing.T, s eachhook.DeadLetterStore, id string, want bool) {
	t.Helper()
	ok, err := s.Delete(context.Background(), id)
	if err != nil || ok != want {
		t.Fatalf("Delete(%s) = %v, %v; want %v, nil", id, ok, err, want)
	}
}

func requireEqual(t *testing.T, what string, got, want eachhook.DeadLetter) {
	t.Helper()
	if got.ID != want.ID || got.Status != want.Status || got.Reason != want.Reason ||
		string(got.Body) != string(want.Body) || got.Attempts != want.Attempts ||
		got.Err != want.Err || !got.At.Equal(want.At) {
		t.Fatalf("%s = %+v (body %q)\nwant %+v (body %q)", what, got, got.Body, want, want.Body)
	}
}
