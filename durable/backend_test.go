package durable_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook/durable"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// defaultPostgresDSN is used when EACHHOOK_POSTGRES_DSN is unset: the local
// server .ci/services.sh starts.
const defaultPostgresDSN = "postgres://eachhook:eachhook@127.0.0.1:5432/eachhook?sslmode=disable"

func postgresDSN() string {
	if dsn := os.Getenv("EACHHOOK_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return defaultPostgresDSN
}

// postgresPool connects to the test server. Without a server the test fails
// in CI (CI=true) and is skipped elsewhere.
func postgresPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, postgresDSN())
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("Postgres unavailable at EACHHOOK_POSTGRES_DSN (CI=true): %v", err)
		}
		tb.Skipf("Postgres unavailable (set EACHHOOK_POSTGRES_DSN): %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

var schemaSeq atomic.Int64

// postgresSchema creates an empty schema holding River's tables, dropped at
// the end of the test, so that tests never see each other's jobs.
func postgresSchema(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("eachhook_durable_%d_%d", os.Getpid(), schemaSeq.Add(1))
	_, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		require.NoError(tb, err)
	})
	require.NoError(tb, durable.MigratePostgres(ctx, pool, schema))
	return schema
}

// backendNames are the drivers every driver-independent test runs on.
var backendNames = []string{"sqlite", "postgres"}

// backend opens Queues on one database of the test, so that a test can run
// the same steps on SQLite and on Postgres.
type backend struct {
	name string
	// open returns a new Queue on the test's database.
	open func(tb testing.TB, cfg durable.Config) *durable.Queue
	// path is the SQLite file; pool and schema are the Postgres database.
	path   string
	pool   *pgxpool.Pool
	schema string
}

// newBackend returns a backend on a new SQLite file or a new Postgres
// schema, removed at the end of the test.
func newBackend(tb testing.TB, name string) backend {
	tb.Helper()
	switch name {
	case "sqlite":
		path := filepath.Join(tb.TempDir(), "webhooks.db")
		return backend{name: name, path: path, open: func(tb testing.TB, cfg durable.Config) *durable.Queue {
			q, err := durable.OpenSQLite(context.Background(), path, cfg)
			require.NoError(tb, err)
			return q
		}}
	case "postgres":
		pool := postgresPool(tb)
		schema := postgresSchema(tb, pool)
		return backend{name: name, pool: pool, schema: schema, open: func(tb testing.TB, cfg durable.Config) *durable.Queue {
			cfg.Schema = schema
			q, err := durable.NewPostgres(pool, cfg)
			require.NoError(tb, err)
			return q
		}}
	}
	panic("unknown backend " + name)
}
