package durable_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// postgresSchema returns a new schema holding River's tables, dropped at
// the end of the test, so that tests never see each other's jobs.
func postgresSchema(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	schema := pgtest.Schema(tb, pool)
	require.NoError(tb, durable.MigratePostgres(context.Background(), pool, schema))
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
		pool := pgtest.Pool(tb)
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
