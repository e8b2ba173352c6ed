package eachloop_test

import (
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/stretchr/testify/require"
)

// newMemoryExpectations is eachloop.NewMemoryExpectations for options
// that must be valid.
func newMemoryExpectations(tb testing.TB, opts ...eachloop.MemoryOption) *eachloop.MemoryExpectations {
	tb.Helper()
	exp, err := eachloop.NewMemoryExpectations(opts...)
	require.NoError(tb, err)
	return exp
}

func TestMemoryExpectations(t *testing.T) {
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return newMemoryExpectations(t)
	})
}

func TestNewMemoryExpectationsValidates(t *testing.T) {
	for name, opt := range map[string]eachloop.MemoryOption{
		"zero retention":     eachloop.WithRetention(0),
		"negative retention": eachloop.WithRetention(-time.Second),
		"nil clock":          eachloop.WithMemoryClock(nil),
	} {
		t.Run(name, func(t *testing.T) {
			exp, err := eachloop.NewMemoryExpectations(opt)
			require.ErrorIs(t, err, eachloop.ErrInvalidOption)
			require.Nil(t, exp)
		})
	}
}

func TestMemoryExpectationsDefaultRetentionIsTheDedupeTTL(t *testing.T) {
	now := t0
	s := newMemoryExpectations(t, eachloop.WithMemoryClock(func() time.Time { return now }))
	ctx := t.Context()
	require.NoError(t, s.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: now}))
	require.NoError(t, s.Done(ctx, "done"))

	now = now.Add(eachhook.DefaultDedupeTTL - time.Nanosecond)
	got, err := s.Secrets(ctx, "done")
	require.NoError(t, err)
	require.Equal(t, []string{"s1"}, got)

	now = now.Add(time.Nanosecond)
	got, err = s.Secrets(ctx, "done")
	require.NoError(t, err)
	require.Nil(t, got)
}

func TestMemoryExpectationsForgetDoneAfterRetention(t *testing.T) {
	now := t0
	s := newMemoryExpectations(t, eachloop.WithRetention(time.Hour), eachloop.WithMemoryClock(func() time.Time { return now }))
	ctx := t.Context()
	require.NoError(t, s.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: now}))
	require.NoError(t, s.Expect(ctx, eachloop.Expectation{ID: "pending", Secret: "s2", CreatedAt: now}))
	require.NoError(t, s.Done(ctx, "done"))

	now = now.Add(time.Hour - time.Nanosecond)
	got, err := s.Secrets(ctx, "done")
	require.NoError(t, err)
	require.Equal(t, []string{"s1"}, got)

	now = now.Add(time.Nanosecond)
	got, err = s.Secrets(ctx, "done")
	require.NoError(t, err)
	require.Nil(t, got)
	require.NoError(t, s.Reopen(ctx, "done"))
	pending, err := s.Pending(ctx, now)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, "pending", pending[0].ID)
	require.Equal(t, 1, s.Len(), "the expired entry is dropped; a pending one never is")

	now = now.Add(30 * 24 * time.Hour)
	pending, err = s.Pending(ctx, now)
	require.NoError(t, err)
	require.Len(t, pending, 1)
}

// TestRestartSuite runs the restart suite on a memory backend that
// outlives the two processes, as a database does: the durable stores run
// the same suite on their own storage.
func TestRestartSuite(t *testing.T) {
	exp := newMemoryExpectations(t)
	store := eachhook.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	expectationstest.RunRestart(t, func(t *testing.T) expectationstest.Process {
		return expectationstest.Process{Expectations: exp, Store: store}
	})
}
