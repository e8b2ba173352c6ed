package durable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eachhook/eachhook"
)

// deadLettersSchema is the table of [SQLiteDeadLetters]. Times are Unix
// microseconds.
const deadLettersSchema = `CREATE TABLE IF NOT EXISTS eachhook_dead_letters (
	id       TEXT    PRIMARY KEY,
	status   TEXT    NOT NULL,
	reason   TEXT    NOT NULL,
	body     BLOB    NOT NULL,
	attempts INTEGER NOT NULL,
	err      TEXT    NOT NULL,
	at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS eachhook_dead_letters_at_idx ON eachhook_dead_letters (at, id)`

// SQLiteDeadLetters is an [eachhook.DeadLetterStore] in a SQLite file, for
// [eachhook.WithDeadLetters] in the single-process mode of [OpenSQLite]
// (or with the in-memory queue, to keep dead letters across restarts):
//
//	dead, err := durable.OpenSQLiteDeadLetters(ctx, "webhooks.db")
//	if err != nil { ... }
//	defer dead.Close()
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithQueue(q), eachhook.WithDeadLetters(dead))
//
// With the durable Queue, the deliveries whose callback failed on every
// attempt are River's discarded jobs and stay in River's table; this store
// keeps the dead letters the Queue never saw (a terminal status with no
// callback registered, a status the Handler does not know), which would
// otherwise be kept in memory only. The file may be the Queue's own; it is
// opened with the pragmas of OpenSQLite, so an Add is on disk when it
// returns. The table:
//
//	CREATE TABLE IF NOT EXISTS eachhook_dead_letters (
//		id       TEXT    PRIMARY KEY,
//		status   TEXT    NOT NULL,
//		reason   TEXT    NOT NULL,
//		body     BLOB    NOT NULL,
//		attempts INTEGER NOT NULL,
//		err      TEXT    NOT NULL,
//		at       INTEGER NOT NULL -- Unix microseconds
//	);
//	CREATE INDEX IF NOT EXISTS eachhook_dead_letters_at_idx
//		ON eachhook_dead_letters (at, id);
//
// Rows never expire: a dead letter stays until it is deleted (by a
// successful replay or a discard). List orders by at, then by id (SQLite
// compares TEXT bytewise, as Go compares strings). With [NewPostgres], use
// the DeadLetters of module pgstore on the same database instead.
type SQLiteDeadLetters struct {
	db *sql.DB
}

var _ eachhook.DeadLetterStore = (*SQLiteDeadLetters)(nil)

// OpenSQLiteDeadLetters opens (creating it if needed) the SQLite file at
// path and its dead-letter table. It returns an error matching
// [ErrInvalidConfig] for an empty path or one with ? or #.
func OpenSQLiteDeadLetters(ctx context.Context, path string) (*SQLiteDeadLetters, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: SQLite path %q must be non-empty, without ? or #", ErrInvalidConfig, path)
	}
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("durable: open %s: %w", path, err)
	}
	// One writer at a time, as for the Queue's connection.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, deadLettersSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("durable: create the dead-letter table in %s: %w", path, err)
	}
	return &SQLiteDeadLetters{db: db}, nil
}

// Close closes the database.
func (s *SQLiteDeadLetters) Close() error { return s.db.Close() }

// Add implements [eachhook.DeadLetterStore]. At is kept to the
// microsecond.
func (s *SQLiteDeadLetters) Add(ctx context.Context, dl eachhook.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body := dl.Body
	if body == nil {
		body = []byte{}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO eachhook_dead_letters (id, status, reason, body, attempts, err, at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason, body = excluded.body,
	attempts = excluded.attempts, err = excluded.err, at = excluded.at`,
		dl.ID, dl.Status, dl.Reason, body, dl.Attempts, dl.Err, dl.At.UnixMicro())
	if err != nil {
		return fmt.Errorf("durable: add dead letter: %w", err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanDeadLetter(row scanner) (eachhook.DeadLetter, error) {
	var dl eachhook.DeadLetter
	var at int64
	if err := row.Scan(&dl.ID, &dl.Status, &dl.Reason, &dl.Body, &dl.Attempts, &dl.Err, &at); err != nil {
		return eachhook.DeadLetter{}, err
	}
	dl.At = time.UnixMicro(at).UTC()
	return dl, nil
}

// List implements [eachhook.DeadLetterStore].
func (s *SQLiteDeadLetters) List(ctx context.Context) ([]eachhook.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, status, reason, body, attempts, err, at FROM eachhook_dead_letters ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("durable: list dead letters: %w", err)
	}
	defer rows.Close()
	var list []eachhook.DeadLetter
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("durable: list dead letters: %w", err)
		}
		list = append(list, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("durable: list dead letters: %w", err)
	}
	return list, nil
}

// Get implements [eachhook.DeadLetterStore].
func (s *SQLiteDeadLetters) Get(ctx context.Context, id string) (eachhook.DeadLetter, bool, error) {
	if err := ctx.Err(); err != nil {
		return eachhook.DeadLetter{}, false, err
	}
	dl, err := scanDeadLetter(s.db.QueryRowContext(ctx, `SELECT id, status, reason, body, attempts, err, at FROM eachhook_dead_letters WHERE id = ?`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return eachhook.DeadLetter{}, false, nil
	case err != nil:
		return eachhook.DeadLetter{}, false, fmt.Errorf("durable: get dead letter: %w", err)
	}
	return dl, true, nil
}

// Delete implements [eachhook.DeadLetterStore]. Among simultaneous
// Deletes of one id, only the one that deleted the row reports true.
func (s *SQLiteDeadLetters) Delete(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM eachhook_dead_letters WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("durable: delete dead letter: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("durable: delete dead letter: %w", err)
	}
	return n == 1, nil
}
