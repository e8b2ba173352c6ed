package durable

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
)

// expectationsCleanupEvery is how often Pending also deletes the
// expectations whose retention has passed.
const expectationsCleanupEvery = 5 * time.Minute

// expectationsSchema is the table of [SQLiteExpectations]. Times are Unix
// microseconds.
const expectationsSchema = `CREATE TABLE IF NOT EXISTS eachhook_expectations (
	id         TEXT    PRIMARY KEY,
	secret     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	done_at    INTEGER
);
CREATE INDEX IF NOT EXISTS eachhook_expectations_pending_idx
	ON eachhook_expectations (created_at) WHERE done_at IS NULL`

// SQLiteExpectations is an [eachloop.Expectations] in a SQLite file, for
// the single-process mode of [OpenSQLite]: the predictions a service
// created and waits for, with their webhook secrets, survive a restart
// (and a power cut: the file is opened with the pragmas of OpenSQLite).
// The file may be the Queue's own. Open it with [OpenSQLiteExpectations]
// and close it at exit. With [NewPostgres], use the Expectations of module
// pgstore on the same database instead.
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
type SQLiteExpectations struct {
	db        *sql.DB
	retention time.Duration
	now       func() time.Time

	mu          sync.Mutex
	lastCleanup time.Time
}

var _ eachloop.Expectations = (*SQLiteExpectations)(nil)

type expectationsConfig struct {
	retention time.Duration
}

// ExpectationsOption configures the [SQLiteExpectations] that
// [OpenSQLiteExpectations] opens.
type ExpectationsOption func(*expectationsConfig) error

// WithRetention sets how long a done expectation's secret is kept, so
// that redeliveries of its webhook still verify. Default
// [eachhook.DefaultDedupeTTL] (24h), the Handler's default dedupe window;
// it must be positive.
func WithRetention(d time.Duration) ExpectationsOption {
	return func(c *expectationsConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: retention %v <= 0", ErrInvalidConfig, d)
		}
		c.retention = d
		return nil
	}
}

// OpenSQLiteExpectations opens (creating it if needed) the SQLite file at
// path and its expectations table, configured by opts. It returns an
// error matching [ErrInvalidConfig] for an empty path, a path with ? or #,
// or an invalid option.
func OpenSQLiteExpectations(ctx context.Context, path string, opts ...ExpectationsOption) (*SQLiteExpectations, error) {
	cfg := expectationsConfig{retention: eachhook.DefaultDedupeTTL}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	retention := cfg.retention
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: SQLite path %q must be non-empty, without ? or #", ErrInvalidConfig, path)
	}
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("durable: open %s: %w", path, err)
	}
	// One writer at a time, as for the Queue's connection.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, expectationsSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("durable: create the expectations table in %s: %w", path, err)
	}
	return &SQLiteExpectations{db: db, retention: retention, now: time.Now}, nil
}

// Close closes the database.
func (e *SQLiteExpectations) Close() error { return e.db.Close() }

// cutoff is the done_at before which a done expectation is forgotten.
func (e *SQLiteExpectations) cutoff() int64 { return e.now().Add(-e.retention).UnixMicro() }

// Expect implements [eachloop.Expectations]. Creation times are kept to
// the microsecond.
func (e *SQLiteExpectations) Expect(ctx context.Context, x eachloop.Expectation) error {
	if x.ID == "" || x.Secret == "" {
		return eachloop.ErrInvalidExpectation
	}
	_, err := e.db.ExecContext(ctx, `INSERT INTO eachhook_expectations (id, secret, created_at, done_at) VALUES (?, ?, ?, NULL)
ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, done_at = NULL`,
		x.ID, x.Secret, x.CreatedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("durable: expect: %w", err)
	}
	return nil
}

// Secrets implements [eachloop.Expectations].
func (e *SQLiteExpectations) Secrets(ctx context.Context, id string) ([]string, error) {
	var secret string
	err := e.db.QueryRowContext(ctx, `SELECT secret FROM eachhook_expectations
WHERE id = ? AND (done_at IS NULL OR done_at > ?)`, id, e.cutoff()).Scan(&secret)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("durable: secrets: %w", err)
	}
	return []string{secret}, nil
}

// Done implements [eachloop.Expectations].
func (e *SQLiteExpectations) Done(ctx context.Context, id string) error {
	_, err := e.db.ExecContext(ctx, `UPDATE eachhook_expectations SET done_at = ? WHERE id = ? AND done_at IS NULL`,
		e.now().UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("durable: done: %w", err)
	}
	return nil
}

// Reopen implements [eachloop.Expectations].
func (e *SQLiteExpectations) Reopen(ctx context.Context, id string) error {
	_, err := e.db.ExecContext(ctx, `UPDATE eachhook_expectations SET done_at = NULL
WHERE id = ? AND done_at IS NOT NULL AND done_at > ?`, id, e.cutoff())
	if err != nil {
		return fmt.Errorf("durable: reopen: %w", err)
	}
	return nil
}

// Pending implements [eachloop.Expectations]. Every five minutes it also
// deletes the done expectations whose retention has passed.
func (e *SQLiteExpectations) Pending(ctx context.Context, before time.Time) ([]eachloop.Expectation, error) {
	if err := e.cleanupSometimes(ctx); err != nil {
		return nil, err
	}
	rows, err := e.db.QueryContext(ctx, `SELECT id, secret, created_at FROM eachhook_expectations
WHERE done_at IS NULL AND created_at <= ? ORDER BY created_at, id`, before.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("durable: pending: %w", err)
	}
	defer rows.Close()
	var out []eachloop.Expectation
	for rows.Next() {
		var x eachloop.Expectation
		var created int64
		if err := rows.Scan(&x.ID, &x.Secret, &created); err != nil {
			return nil, fmt.Errorf("durable: pending: %w", err)
		}
		x.CreatedAt = time.UnixMicro(created).UTC()
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("durable: pending: %w", err)
	}
	return out, nil
}

func (e *SQLiteExpectations) cleanupSometimes(ctx context.Context) error {
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
func (e *SQLiteExpectations) Cleanup(ctx context.Context) (int64, error) {
	res, err := e.db.ExecContext(ctx, `DELETE FROM eachhook_expectations WHERE done_at <= ?`, e.cutoff())
	if err != nil {
		return 0, fmt.Errorf("durable: cleanup of expectations: %w", err)
	}
	return res.RowsAffected()
}
