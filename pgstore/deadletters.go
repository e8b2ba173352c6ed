package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/eachhook/eachhook"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultDeadLetterTable is the table of [NewDeadLetters] without
// [WithTable].
const DefaultDeadLetterTable = "eachhook_dead_letters"

// DeadLetters is an [eachhook.DeadLetterStore] on PostgreSQL, shared by
// every replica that uses the same table, for [eachhook.WithDeadLetters]:
//
//	dead, err := pgstore.NewDeadLetters(pool)
//	if err != nil { ... }
//	if err := dead.Migrate(ctx); err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithDeadLetters(dead))
//
// [DeadLetters.Migrate] creates its table (default name
// [DefaultDeadLetterTable]) if it does not exist:
//
//	CREATE TABLE IF NOT EXISTS eachhook_dead_letters (
//		id       text        PRIMARY KEY,
//		status   text        NOT NULL,
//		reason   text        NOT NULL,
//		body     bytea       NOT NULL,
//		attempts integer     NOT NULL,
//		err      text        NOT NULL,
//		at       timestamptz NOT NULL
//	);
//	CREATE INDEX IF NOT EXISTS eachhook_dead_letters_at_idx
//		ON eachhook_dead_letters (at, id COLLATE "C");
//
// Add is one INSERT ... ON CONFLICT (id) DO UPDATE, Delete one DELETE, and
// List orders by at and then by id in byte order (COLLATE "C"), as Go
// compares strings. At is kept to the microsecond. Rows never expire: a
// dead letter stays until it is deleted (by a successful replay or a
// discard). It is safe for concurrent use and does not close the pool.
type DeadLetters struct {
	pool  *pgxpool.Pool
	table string // as given, unquoted

	migrateSQL, addSQL, listSQL, getSQL, deleteSQL string
}

var _ eachhook.DeadLetterStore = (*DeadLetters)(nil)

// NewDeadLetters returns a DeadLetters on pool, configured by opts: in
// the table of [WithTable] ([DefaultDeadLetterTable] without it). It does
// not contact the server: create the table with [DeadLetters.Migrate].
func NewDeadLetters(pool *pgxpool.Pool, opts ...Option) (*DeadLetters, error) {
	cfg, err := newConfig(pool, DefaultDeadLetterTable, opts)
	if err != nil {
		return nil, err
	}
	table := cfg.table
	parts := strings.Split(table, ".")
	t := pgx.Identifier(parts).Sanitize()
	index := pgx.Identifier{parts[len(parts)-1] + "_at_idx"}.Sanitize()
	const cols = `id, status, reason, body, attempts, err, at`
	return &DeadLetters{
		pool:  pool,
		table: table,
		migrateSQL: fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	id       text        PRIMARY KEY,
	status   text        NOT NULL,
	reason   text        NOT NULL,
	body     bytea       NOT NULL,
	attempts integer     NOT NULL,
	err      text        NOT NULL,
	at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (at, id COLLATE "C")`, t, index),
		addSQL: fmt.Sprintf(`INSERT INTO %s (%s) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason, body = excluded.body,
	attempts = excluded.attempts, err = excluded.err, at = excluded.at`, t, cols),
		listSQL:   fmt.Sprintf(`SELECT %s FROM %s ORDER BY at, id COLLATE "C"`, cols, t),
		getSQL:    fmt.Sprintf(`SELECT %s FROM %s WHERE id = $1`, cols, t),
		deleteSQL: fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, t),
	}, nil
}

// Migrate creates the table and its index if they do not exist (the SQL
// is in the type's documentation). Replicas may run it at the same time.
func (d *DeadLetters) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "eachhook/pgstore/migrate:"+d.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, d.migrateSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", d.table, err)
	}
	return nil
}

// Add implements [eachhook.DeadLetterStore].
func (d *DeadLetters) Add(ctx context.Context, dl eachhook.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body := dl.Body
	if body == nil {
		body = []byte{}
	}
	if _, err := d.pool.Exec(ctx, d.addSQL, dl.ID, dl.Status, dl.Reason, body, dl.Attempts, dl.Err, dl.At); err != nil {
		return fmt.Errorf("pgstore: add dead letter: %w", err)
	}
	return nil
}

func scanDeadLetter(row pgx.Row) (eachhook.DeadLetter, error) {
	var dl eachhook.DeadLetter
	err := row.Scan(&dl.ID, &dl.Status, &dl.Reason, &dl.Body, &dl.Attempts, &dl.Err, &dl.At)
	return dl, err
}

// List implements [eachhook.DeadLetterStore].
func (d *DeadLetters) List(ctx context.Context) ([]eachhook.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := d.pool.Query(ctx, d.listSQL)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list dead letters: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (eachhook.DeadLetter, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: list dead letters: %w", err)
	}
	return list, nil
}

// Get implements [eachhook.DeadLetterStore].
func (d *DeadLetters) Get(ctx context.Context, id string) (eachhook.DeadLetter, bool, error) {
	if err := ctx.Err(); err != nil {
		return eachhook.DeadLetter{}, false, err
	}
	dl, err := scanDeadLetter(d.pool.QueryRow(ctx, d.getSQL, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return eachhook.DeadLetter{}, false, nil
	case err != nil:
		return eachhook.DeadLetter{}, false, fmt.Errorf("pgstore: get dead letter: %w", err)
	}
	return dl, true, nil
}

// Delete implements [eachhook.DeadLetterStore]. Among simultaneous
// Deletes of one id, only the one that deleted the row reports true.
func (d *DeadLetters) Delete(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	tag, err := d.pool.Exec(ctx, d.deleteSQL, id)
	if err != nil {
		return false, fmt.Errorf("pgstore: delete dead letter: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
