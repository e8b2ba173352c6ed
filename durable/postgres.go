package durable

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// MigratePostgres creates or updates River's tables in schema ("" for the
// pool's search_path) with rivermigrate. Run it once per deployment, before
// [NewPostgres], or use River's CLI: river migrate-up --database-url ...
// River's migration logs go to [slog.Default], their INFO lines at DEBUG.
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: newMigrationLogger(slog.Default()), Schema: schema})
	if err != nil {
		return fmt.Errorf("durable: migrate: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("durable: migrate: %w", err)
	}
	return nil
}

// NewPostgres returns a Queue on the Postgres database of pool, whose
// River tables are in cfg.Schema and were created by [MigratePostgres]. Every replica uses its own Queue on the
// same database. The pool stays the caller's: Shutdown does not close it,
// and it must stay open until Shutdown returned. From Start until Shutdown
// the Queue holds its liveness lock (see Crash settings in the package
// doc) on a connection it takes out of the pool, which may open another in
// its place: one connection to the server more than the pool's. Its River
// client id is eachhook_<host name>_<time of NewPostgres to the µs>.
func NewPostgres(pool *pgxpool.Pool, cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &deliveryWorker{}
	rc := cfg.riverConfig(w)
	rc.ID = newClientID(time.Now())
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	q := newQueue(cfg, w, client, nil)
	q.liveness = newLiveness(pool, rc.ID, client.Queues(), cfg)
	q.recover = q.liveness.start
	return q, nil
}
