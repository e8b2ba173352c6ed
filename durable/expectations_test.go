package durable_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/stretchr/testify/require"
)

func openExpectations(tb testing.TB, path string, opts ...durable.ExpectationsOption) *durable.SQLiteExpectations {
	tb.Helper()
	e, err := durable.OpenSQLiteExpectations(context.Background(), path, opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, e.Close()) })
	return e
}

func TestSQLiteExpectationsConformance(t *testing.T) {
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return openExpectations(t, filepath.Join(t.TempDir(), "expectations.db"))
	})
}

func TestSQLiteExpectationsRetention(t *testing.T) {
	ctx := context.Background()
	// A retention of a microsecond has passed by the next statement.
	e := openExpectations(t, filepath.Join(t.TempDir(), "expectations.db"), durable.WithRetention(time.Microsecond))
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: time.Now()}))
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "pending", Secret: "s2", CreatedAt: time.Now()}))
	require.NoError(t, e.Done(ctx, "done"))
	require.Eventually(t, func() bool { // once the clock has moved past the microsecond
		got, err := e.Secrets(ctx, "done")
		return err == nil && got == nil
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, e.Reopen(ctx, "done"))
	n, err := e.Cleanup(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	got, err := e.Secrets(ctx, "pending")
	require.NoError(t, err)
	require.Equal(t, []string{"s2"}, got, "a pending expectation is never deleted")
}

func TestOpenSQLiteExpectationsValidates(t *testing.T) {
	for _, path := range []string{"", "a?b", "a#b"} {
		_, err := durable.OpenSQLiteExpectations(context.Background(), path)
		require.ErrorIs(t, err, durable.ErrInvalidConfig, path)
	}
	path := filepath.Join(t.TempDir(), "expectations.db")
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := durable.OpenSQLiteExpectations(context.Background(), path, durable.WithRetention(d))
		require.ErrorIs(t, err, durable.ErrInvalidConfig, "retention %v", d)
	}
}

// TestRestartBetweenCreationAndOutcome runs the restart suite on one
// SQLite file that holds both the River queue and the expectations. Each
// process has a fresh in-memory dedupe store, as a restarted process
// does: River's unique jobs keep the late webhook from running a second
// callback.
func TestRestartBetweenCreationAndOutcome(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhooks.db")
	expectationstest.RunRestart(t, func(t *testing.T) expectationstest.Process {
		q, err := durable.OpenSQLite(context.Background(), path, durable.Config{Logger: quiet})
		require.NoError(t, err)
		store := eachhook.NewMemoryStore()
		t.Cleanup(func() { store.Close() })
		return expectationstest.Process{
			Expectations: openExpectations(t, path),
			Store:        store,
			Options:      []eachhook.Option{eachhook.WithQueue(q)},
		}
	})
}
