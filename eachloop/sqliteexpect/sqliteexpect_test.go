package sqliteexpect_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/eachhook/eachhook/eachloop/sqliteexpect"
	"github.com/stretchr/testify/require"
)

var quiet = slog.New(slog.DiscardHandler)

func openExpectations(tb testing.TB, path string, opts ...sqliteexpect.Option) *sqliteexpect.Expectations {
	tb.Helper()
	e, err := sqliteexpect.New(path, opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, e.Close()) })
	require.NoError(tb, e.Migrate(context.Background()))
	return e
}

func TestConformance(t *testing.T) {
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return openExpectations(t, filepath.Join(t.TempDir(), "expectations.db"))
	})
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	// A retention of a microsecond has passed by the next statement.
	e := openExpectations(t, filepath.Join(t.TempDir(), "expectations.db"), sqliteexpect.WithRetention(time.Microsecond))
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

func TestNewValidates(t *testing.T) {
	for _, path := range []string{"", "a?b", "a#b"} {
		_, err := sqliteexpect.New(path)
		require.ErrorIs(t, err, eachloop.ErrInvalidOption, path)
	}
	path := filepath.Join(t.TempDir(), "expectations.db")
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := sqliteexpect.New(path, sqliteexpect.WithRetention(d))
		require.ErrorIs(t, err, eachloop.ErrInvalidOption, "retention %v", d)
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
