package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
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
	table := "river_job"
	if cfg.Schema != "" {
		table = pgx.Identifier{cfg.Schema, table}.Sanitize()
	}
	q.inTx = func(ctx context.Context, f func(jobTx) error) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return f(pgTx{client: client, tx: tx, table: table}) })
	}
	q.liveness = newLiveness(pool, rc.ID, client.Queues(), cfg)
	q.recover = q.liveness.start
	return q, nil
}

// pgTx is River's client bound to one Postgres transaction.
type pgTx struct {
	client *river.Client[pgx.Tx]
	tx     pgx.Tx
	table  string // river_job, schema-qualified
}

func (t pgTx) InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return t.client.InsertManyTx(ctx, t.tx, params)
}

func (t pgTx) JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return t.client.JobRetryTx(ctx, t.tx, id)
}

func (t pgTx) lockState(ctx context.Context, id int64) (rivertype.JobState, error) {
	var state string
	err := t.tx.QueryRow(ctx, "SELECT state FROM "+t.table+" WHERE id = $1 FOR UPDATE", id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return rivertype.JobState(state), err
}
