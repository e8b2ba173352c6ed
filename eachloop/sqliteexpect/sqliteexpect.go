// Package sqliteexpect keeps the reconciler's [eachloop.Expectations] in a
// SQLite file, for a service that runs as a single process (such as one
// on the SQLite queue of module durable): the predictions it created and
// waits for, with their webhook secrets, survive a restart.
package sqliteexpect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	_ "modernc.org/sqlite" // registers the driver "sqlite"
)

// expectationsCleanupEvery is how often Pending also deletes the
// expectations whose retention has passed.
const expectationsCleanupEvery = 5 * time.Minute

// expectationsSchema is the table of [Expectations]. Times are Unix
// microseconds.
const expectationsSchema = `CREATE TABLE IF NOT EXISTS eachhook_expectations (
	id         TEXT    PRIMARY KEY,
	secret     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	done_at    INTEGER
);
CREATE INDEX IF NOT EXISTS eachhook_expectations_pending_idx
	ON eachhook_expectations (created_at) WHERE done_at IS NULL`

// Expectations is an [eachloop.Expectations] in a SQLite file: the
// predictions a service created and waits for, with their webhook
// secrets, survive a restart (and a power cut: the file is opened with the
// pragmas of durable.OpenSQLite). The file may be that queue's own. Create
// it with [New] and its table with [Expectations.Migrate], and close it at
// exit. With several replicas, use package pgexpect or redisexpect
// instead.
//
// The table:
//
//	CREATE TABLE IF NOT EXISTS eachhook_expectations (
//		id         TEXT    PRIMARY KEY,
//		secret     TEXT    NOT NULL,
//		created_at INTEGER NOT NULL, -- Unix microseconds
//		done_at    INTEGER           -- Unix microseconds; NULL while pending
//	);
//	CREATE INDEX IF NOT EXISTS eachhook_expectations_pending_idx
//		ON eachhook_expectations (created_at) WHERE done_at IS NULL;
//
// Secrets are stored as given: HMAC verification needs them in clear, so
// protect the file as you would the secrets themselves. A done row is
// deleted by Pending once its retention ([WithRetention]) has passed
// (checked every five minutes).
type Expectations struct {
	db        *sql.DB
	path      string
	retention time.Duration
	now       func() time.Time

	mu          sync.Mutex
	lastCleanup time.Time
}

var _ eachloop.Expectations = (*Expectations)(nil)

type config struct {
	retention time.Duration
}

// Option configures [Expectations].
type Option func(*config) error

// WithRetention sets how long a done expectation's secret is kept, so
// that redeliveries of its webhook still verify. Default
// [eachhook.DefaultDedupeTTL] (24h), the Handler's default dedupe window;
// it must be positive.
func WithRetention(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: retention %v <= 0", eachloop.ErrInvalidOption, d)
		}
		c.retention = d
		return nil
	}
}

// sqlitePragmas make a commit durable before it returns (WAL with
// synchronous FULL) and wait for a busy database, as durable.OpenSQLite's.
const sqlitePragmas = "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"

// New returns Expectations in the SQLite file at path (created at the
// first statement if needed), configured by opts. It does not touch the
// file: call [Expectations.Migrate] once (at every start is fine). It
// returns an error matching [eachloop.ErrInvalidOption] for an empty
// path, a path with ? or #, or an invalid option.
func New(path string, opts ...Option) (*Expectations, error) {
	cfg := config{retention: eachhook.DefaultDedupeTTL}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: SQLite path %q must be non-empty, without ? or #", eachloop.ErrInvalidOption, path)
	}
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("sqliteexpect: open %s: %w", path, err)
	}
	// One writer at a time, as for durable's Queue.
	db.SetMaxOpenConns(1)
	return &Expectations{db: db, path: path, retention: cfg.retention, now: time.Now}, nil
}

// Migrate creates the table and its index if they do not exist.
func (e *Expectations) Migrate(ctx context.Context) error {
	if _, err := e.db.ExecContext(ctx, expectationsSchema); err != nil {
		return fmt.Errorf("sqliteexpect: create the expectations table in %s: %w", e.path, err)
	}
	return nil
}

// Close closes the database.
func (e *Expectations) Close() error { return e.db.Close() }

// cutoff is the done_at before which a done expectation is forgotten.
func (e *Expectations) cutoff() int64 { return e.now().Add(-e.retention).UnixMicro() }

// Expect implements [eachloop.Expectations]. Creation times are kept to
// the microsecond.
func (e *Expectations) Expect(ctx context.Context, x eachloop.Expectation) error {
	if x.ID == "" || x.Secret == "" {
		return eachloop.ErrInvalidExpectation
	}
	_, err := e.db.ExecContext(ctx, `INSERT INTO eachhook_expectations (id, secret, created_at, done_at) VALUES (?, ?, ?, NULL)
ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, done_at = NULL`,
		x.ID, x.Secret, x.CreatedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("sqliteexpect: expect: %w", err)
	}
	return nil
}

// Secrets implements [eachloop.Expectations].
func (e *Expectations) Secrets(ctx context.Context, id string) ([]string, error) {
	var secret string
	err := e.db.QueryRowContext(ctx, `SELECT secret FROM eachhook_expectations
WHERE id = ? AND (done_at IS NULL OR done_at > ?)`, id, e.cutoff()).Scan(&secret)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("sqliteexpect: secrets: %w", err)
	}
	return []string{secret}, nil
}

// Done implements [eachloop.Expectations].
func (e *Expectations) Done(ctx context.Context, id string) error {
	_, err := e.db.ExecContext(ctx, `UPDATE eachhook_expectations SET done_at = ? WHERE id = ? AND done_at IS NULL`,
		e.now().UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("sqliteexpect: done: %w", err)
	}
	return nil
}

// Reopen implements [eachloop.Expectations].
func (e *Expectations) Reopen(ctx context.Context, id string) error {
	_, err := e.db.ExecContext(ctx, `UPDATE eachhook_expectations SET done_at = NULL
WHERE id = ? AND done_at IS NOT NULL AND done_at > ?`, id, e.cutoff())
	if err != nil {
		return fmt.Errorf("sqliteexpect: reopen: %w", err)
	}
	return nil
}

// Pending implements [eachloop.Expectations]. Every five minutes it also
// deletes the done expectations whose retention has passed.
func (e *Expectations) Pending(ctx context.Context, before time.Time) ([]eachloop.Expectation, error) {
	if err := e.cleanupSometimes(ctx); err != nil {
		return nil, err
	}
	rows, err := e.db.QueryContext(ctx, `SELECT id, secret, created_at FROM eachhook_expectations
WHERE done_at IS NULL AND created_at <= ? ORDER BY created_at, id`, before.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqliteexpect: pending: %w", err)
	}
	defer rows.Close()
	var out []eachloop.Expectation
	for rows.Next() {
		var x eachloop.Expectation
		var created int64
		if err := rows.Scan(&x.ID, &x.Secret, &created); err != nil {
			return nil, fmt.Errorf("sqliteexpect: pending: %w", err)
		}
		x.CreatedAt = time.UnixMicro(created).UTC()
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteexpect: pending: %w", err)
	}
	return out, nil
}

func (e *Expectations) cleanupSometimes(ctx context.Context) error {
	e.mu.Lock()
	due := e.now().Sub(e.lastCleanup) >= expectationsCleanupEvery
	if due {
		e.lastCleanup = e.now()
	}
	e.mu.Unlock()
	if !due {
		return nil
	}
	_, err := e.Cleanup(ctx)
	return err
}

// Cleanup deletes the done expectations whose retention has passed and
// reports how many it deleted.
func (e *Expectations) Cleanup(ctx context.Context) (int64, error) {
	res, err := e.db.ExecContext(ctx, `DELETE FROM eachhook_expectations WHERE done_at <= ?`, e.cutoff())
	if err != nil {
		return 0, fmt.Errorf("sqliteexpect: cleanup of expectations: %w", err)
	}
	return res.RowsAffected()
}
