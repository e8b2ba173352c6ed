package pgexpect_test

import (
	"context"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/expectationstest"
	"github.com/eachhook/eachhook/eachloop/pgexpect"
	"github.com/eachhook/eachhook/pgstore"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// newExpectations returns migrated Expectations on a table of the test's
// own.
func newExpectations(tb testing.TB, pool *pgxpool.Pool, table string, opts ...pgexpect.Option) *pgexpect.Expectations {
	tb.Helper()
	e, err := pgexpect.New(pool, append([]pgexpect.Option{pgexpect.WithTable(table)}, opts...)...)
	require.NoError(tb, err)
	require.NoError(tb, e.Migrate(context.Background()))
	return e
}

func TestExpectationsConformance(t *testing.T) {
	pool := pgtest.Pool(t)
	expectationstest.Run(t, func(t *testing.T) eachloop.Expectations {
		return newExpectations(t, pool, pgtest.Table(t, pool))
	})
}

func TestExpectationsRetention(t *testing.T) {
	pool := pgtest.Pool(t)
	table := pgtest.Table(t, pool)
	ctx := context.Background()
	// A retention of a microsecond has passed by the next statement.
	e := newExpectations(t, pool, table, pgexpect.WithRetention(time.Microsecond))
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "done", Secret: "s1", CreatedAt: time.Now()}))
	require.NoError(t, e.Expect(ctx, eachloop.Expectation{ID: "pending", Secret: "s2", CreatedAt: time.Now()}))
	require.NoError(t, e.Done(ctx, "done"))
	got, err := e.Secrets(ctx, "done")
	require.NoError(t, err)
	require.Nil(t, got)
	require.NoError(t, e.Reopen(ctx, "done"))
	n, err := e.Cleanup(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	got, err = e.Secrets(ctx, "pending")
	require.NoError(t, err)
	require.Equal(t, []string{"s2"}, got, "a pending expectation is never deleted")

	long := newExpectations(t, pool, table)
	require.NoError(t, long.Done(ctx, "pending"))
	got, err = long.Secrets(ctx, "pending")
	require.NoError(t, err)
	require.Equal(t, []string{"s2"}, got)
}

func TestNewValidates(t *testing.T) {
	_, err := pgexpect.New(nil)
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	require.NoError(t, err)
	defer pool.Close()
	_, err = pgexpect.New(pool, pgexpect.WithTable("x;drop"))
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
	_, err = pgexpect.New(pool, pgexpect.WithRetention(0))
	require.ErrorIs(t, err, eachloop.ErrInvalidOption)
}

// TestRestartBetweenCreationAndOutcome runs the restart suite on
// PostgreSQL: each process opens a pool of its own on the same tables.
func TestRestartBetweenCreationAndOutcome(t *testing.T) {
	admin := pgtest.Pool(t)
	claims, expTable := pgtest.Table(t, admin), pgtest.Table(t, admin)
	expectationstest.RunRestart(t, func(t *testing.T) expectationstest.Process {
		pool := pgtest.Pool(t)
		store, err := pgstore.New(pool, pgstore.WithTable(claims))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, store.Close()) })
		require.NoError(t, store.Migrate(context.Background()))
		return expectationstest.Process{Expectations: newExpectations(t, pool, expTable), Store: store}
	})
}

// BenchmarkExpectations measures the two statements on a webhook's path:
// Secrets (the Handler's SecretLookup) and Done (the Loop's tracking
// Store, after a won claim).
func BenchmarkExpectations(b *testing.B) {
	pool := pgtest.Pool(b)
	expectationstest.Benchmark(b, newExpectations(b, pool, pgtest.Table(b, pool)))
}
