// Package expectationstest is the conformance suite for implementations of
// eachloop.Expectations. Every implementation in this project runs it; run
// it on your own:
//
//	func TestMyExpectations(t *testing.T) {
//		expectationstest.Run(t, func(t *testing.T) eachloop.Expectations { return newMine(t) })
//	}
package expectationstest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop"
)

// Run exercises the Expectations contract on values made by newExp, which
// is called once per subtest and must return an empty Expectations, since
// Pending lists everything. Creation times are whole milliseconds in UTC,
// so implementations may store them at that precision.
func Run(t *testing.T, newExp func(t *testing.T) eachloop.Expectations) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

	t.Run("ExpectThenSecrets", func(t *testing.T) {
		s := newExp(t)
		mustExpect(t, s, eachloop.Expectation{ID: "a", Secret: "sa", CreatedAt: at(0)})
		mustSecrets(t, s, "a", []string{"sa"})
		mustSecrets(t, s, "unknown", nil)
	})
	t.Run("ExpectRefusesEmptyFields", func(t *testing.T) {
		s := newExp(t)
		for _, e := range []eachloop.Expectation{{Secret: "s", CreatedAt: at(0)}, {ID: "a", CreatedAt: at(0)}} {
			if err := s.Expect(ctx, e); !errors.Is(err, eachloop.ErrInvalidExpectation) {
				t.Fatalf("Expect(%+v) = %v, want ErrInvalidExpectation", e, err)
			}
		}
		mustPending(t, s, at(10))
	})
	t.Run("PendingOldestFirstUpToBefore", func(t *testing.T) {
		s := newExp(t)
		c := eachloop.Expectation{ID: "c", Secret: "sc", CreatedAt: at(2)}
		a := eachloop.Expectation{ID: "a", Secret: "sa", CreatedAt: at(1)}
		b := eachloop.Expectation{ID: "b", Secret: "sb", CreatedAt: at(1)}
		d := eachloop.Expectation{ID: "d", Secret: "sd", CreatedAt: at(3)}
		for _, e := range []eachloop.Expectation{c, a, d, b} {
			mustExpect(t, s, e)
		}
		mustPending(t, s, at(2), a, b, c)
		mustPending(t, s, at(0))
		mustPending(t, s, at(60), a, b, c, d)
	})
	t.Run("DoneKeepsTheSecret", func(t *testing.T) {
		s := newExp(t)
		a := eachloop.Expectation{ID: "a", Secret: "sa", CreatedAt: at(0)}
		b := eachloop.Expectation{ID: "b", Secret: "sb", CreatedAt: at(1)}
		mustExpect(t, s, a)
		mustExpect(t, s, b)
		mustDone(t, s, "a")
		mustDone(t, s, "a")
		mustPending(t, s, at(10), b)
		mustSecrets(t, s, "a", []string{"sa"})
	})
	t.Run("Reopen", func(t *testing.T) {
		s := newExp(t)
		a := eachloop.Expectation{ID: "a", Secret: "sa", CreatedAt: at(0)}
		mustExpect(t, s, a)
		if err := s.Reopen(ctx, "a"); err != nil { // pending already
			t.Fatalf("Reopen of a pending id: %v", err)
		}
		mustPending(t, s, at(10), a)
		mustDone(t, s, "a")
		mustPending(t, s, at(10))
		if err := s.Reopen(ctx, "a"); err != nil {
			t.Fatalf("Reopen: %v", err)
		}
		mustPending(t, s, at(10), a)
		mustSecrets(t, s, "a", []string{"sa"})
	})
	t.Run("UnknownIDs", func(t *testing.T) {
		s := newExp(t)
		mustDone(t, s, "unknown")
		if err := s.Reopen(ctx, "unknown"); err != nil {
			t.Fatalf("Reopen of an unknown id: %v, want nil", err)
		}
		mustPending(t, s, at(10))
		mustSecrets(t, s, "unknown", nil)
	})
	t.Run("ExpectAgainReplaces", func(t *testing.T) {
		s := newExp(t)
		mustExpect(t, s, eachloop.Expectation{ID: "a", Secret: "old", CreatedAt: at(0)})
		mustDone(t, s, "a")
		again := eachloop.Expectation{ID: "a", Secret: "new", CreatedAt: at(5)}
		mustExpect(t, s, again)
		mustSecrets(t, s, "a", []string{"new"})
		mustPending(t, s, at(10), again)
	})
	t.Run("UntrustedIDs", func(t *testing.T) {
		// Ids come from unverified bodies: quotes, wildcards and
		// non-ASCII must be stored and looked up literally.
		s := newExp(t)
		odd := []string{`a'b"c`, "x%_*?", "ünïcödé/🙂", "a b"}
		for i, id := range odd {
			mustExpect(t, s, eachloop.Expectation{ID: id, Secret: fmt.Sprint("s", i), CreatedAt: at(i)})
		}
		for i, id := range odd {
			mustSecrets(t, s, id, []string{fmt.Sprint("s", i)})
		}
		mustSecrets(t, s, "x%", nil)
		mustSecrets(t, s, "%", nil)
	})
	t.Run("Concurrent", func(t *testing.T) {
		s := newExp(t)
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, 3*n)
		for i := range n {
			wg.Go(func() {
				id := fmt.Sprint("p", i)
				errs <- s.Expect(ctx, eachloop.Expectation{ID: id, Secret: "s" + id, CreatedAt: at(i)})
				if i%2 == 0 {
					errs <- s.Done(ctx, id)
				}
				_, err := s.Secrets(ctx, id)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Pending(ctx, at(n))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n/2 {
			t.Fatalf("Pending returned %d expectations, want %d", len(got), n/2)
		}
	})
}

func mustExpect(t *testing.T, s eachloop.Expectations, e eachloop.Expectation) {
	t.Helper()
	if err := s.Expect(context.Background(), e); err != nil {
		t.Fatalf("Expect(%q): %v", e.ID, err)
	}
}

func mustDone(t *testing.T, s eachloop.Expectations, id string) {
	t.Helper()
	if err := s.Done(context.Background(), id); err != nil {
		t.Fatalf("Done(%q): %v", id, err)
	}
}

func mustSecrets(t *testing.T, s eachloop.Expectations, id string, want []string) {
	t.Helper()
	got, err := s.Secrets(context.Background(), id)
	if err != nil {
		t.Fatalf("Secrets(%q): %v", id, err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Secrets(%q) = %q, want %q", id, got, want)
	}
}

func mustPending(t *testing.T, s eachloop.Expectations, before time.Time, want ...eachloop.Expectation) {
	t.Helper()
	got, err := s.Pending(context.Background(), before)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Pending(%v) = %v, want %v", before, got, want)
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Secret != want[i].Secret || !got[i].CreatedAt.Equal(want[i].CreatedAt) {
			t.Fatalf("Pending(%v)[%d] = %+v, want %+v", before, i, got[i], want[i])
		}
	}
}
