// Package pgtest finds the Postgres database of the eachhook tests and
// gives each test a pool and a table or schema of its own. Every module's
// tests that need Postgres use it.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DSN returns the test database: $EACHHOOK_POSTGRES_DSN, or the local
// default .ci/services.sh creates. When it does not answer, the test fails
// in CI (CI set) and is skipped elsewhere.
func DSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("EACHHOOK_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://eachhook:eachhook@127.0.0.1:5432/eachhook?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(ctx)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("postgres: %v (CI is set: a missing server is a failure)", err)
		}
		tb.Skipf("postgres: %v (set EACHHOOK_POSTGRES_DSN)", err)
	}
	return dsn
}

// Pool returns a new pool on the test database (see DSN), closed when the
// test ends.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), DSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Table returns a table name of the test's own, which pool drops when the
// test ends.
func Table(tb testing.TB, pool *pgxpool.Pool) string {
	name := fmt.Sprintf("eachhook_test_%d", time.Now().UnixNano())
	tb.Cleanup(func() { exec(tb, pool, "DROP TABLE IF EXISTS "+name) })
	return name
}

var schemas atomic.Int64

// Schema creates an empty schema of the test's own in pool's database and
// returns its name; pool drops it, with all it holds, when the test ends.
func Schema(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	name := fmt.Sprintf("eachhook_test_%d_%d", os.Getpid(), schemas.Add(1))
	exec(tb, pool, "DROP SCHEMA IF EXISTS "+name+" CASCADE; CREATE SCHEMA "+name)
	tb.Cleanup(func() { exec(tb, pool, "DROP SCHEMA "+name+" CASCADE") })
	return name
}

// exec runs sql on pool, failing the test on an error.
func exec(tb testing.TB, pool *pgxpool.Pool, sql string) {
	tb.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		tb.Fatal(err)
	}
}
