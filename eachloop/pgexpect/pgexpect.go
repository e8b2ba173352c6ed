// Package pgexpect keeps the reconciler's [eachloop.Expectations] in
// PostgreSQL: the predictions a service created and waits for, with their
// webhook secrets, survive a restart and are shared by every replica.
package pgexpect

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTable is the default name of the table of [Expectations].
const DefaultTable = "eachhook_expectations"

// expectationsCleanupEvery is how often Pending also deletes the
// expectations whose retention has passed.
const expectationsCleanupEvery = 5 * time.Minute

// Expectations is an [eachloop.Expectations] on PostgreSQL: the
// predictions a service created and waits for, with their webhook
// secrets, survive a restart and are shared by every replica. Create it
// with [New] and its table with [Expectations.Migrate]. It is
// safe for concurrent use and does not close the pool.
//
// The table (default name [DefaultTable]):
//
//	CREATE TABLE IF NOT EXISTS eachhook_expectations (
//		id         text        PRIMARY KEY,
//		secret     text        NOT NULL,
//		created_at timestamptz NOT NULL,
//		done_at    timestamptz           -- NULL while pending
//	);
//	CREATE INDEX IF NOT EXISTS eachhook_expectations_pending_idx
//		ON eachhook_expectations (created_at) WHERE done_at IS NULL;
//
// Secrets are stored as given: HMAC verification needs them in clear, so
// restrict access to the table as you would to the secrets themselves.
// Retention is decided by the database server's clock. A done row is
// deleted, at the latest, the retention ([WithRetention], default
// [eachhook.DefaultDedupeTTL]) plus five minutes after it was marked done,
// by [Expectations.Pending].
type Expectations struct {
	pool      *pgxpool.Pool
	table     string
	retention time.Duration

	migrateSQL, expectSQL, secretsSQL, doneSQL, reopenSQL, pendingSQL, cleanupSQL string

	mu          sync.Mutex
	lastCleanup time.Time
}

var _ eachloop.Expectations = (*Expectations)(nil)

type config struct {
	table     string
	retention time.Duration
}

// Option configures [Expectations].
type Option func(*config) error

// identifier matches a table name, optionally qualified by its schema. The
// table part has at most 48 characters so that the name of its index
// ("<table>_pending_idx") fits PostgreSQL's 63.
var identifier = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// WithTable sets the table's name, optionally qualified by a schema
// ("webhooks.expectations"). Names are letters, digits and underscores,
// at most 48 for the table and 63 for the schema, and are quoted, so they
// are case-sensitive. Default [DefaultTable].
func WithTable(name string) Option {
	return func(c *config) error {
		if !identifier.MatchString(name) {
			return fmt.Errorf("%w: table name %q", eachloop.ErrInvalidOption, name)
		}
		c.table = name
		return nil
	}
}

// WithRetention sets how long a done expectation's secret is kept, so
// that redeliveries of its webhook still verify. Default
// [eachhook.DefaultDedupeTTL] (24h), the Handler's default dedupe TTL, so
// that a redelivery verifies for as long as it is recognised as a
// duplicate; it must be positive.
func WithRetention(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: retention %v <= 0", eachloop.ErrInvalidOption, d)
		}
		c.retention = d
		return nil
	}
}

// New returns Expectations kept in pool. It does not contact the server:
// call [Expectations.Migrate] once (at every start is fine). It returns
// an error matching [eachloop.ErrInvalidOption] for a nil pool or an
// invalid option.
func New(pool *pgxpool.Pool, opts ...Option) (*Expectations, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", eachloop.ErrInvalidOption)
	}
	cfg := config{table: DefaultTable, retention: eachhook.DefaultDedupeTTL}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	parts := strings.Split(cfg.table, ".")
	t := pgx.Identifier(parts).Sanitize()
	idx := pgx.Identifier{parts[len(parts)-1] + "_pending_idx"}.Sanitize()
	e := &Expectations{pool: pool, table: cfg.table, retention: cfg.retention}
	e.migrateSQL = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	id         text        PRIMARY KEY,
	secret     text        NOT NULL,
	created_at timestamptz NOT NULL,
	done_at    timestamptz
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (created_at) WHERE done_at IS NULL`, t, idx)
	e.expectSQL = fmt.Sprintf(`INSERT INTO %s (id, secret, created_at, done_at) VALUES ($1, $2, $3, NULL)
ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, done_at = NULL`, t)
	// $2 is the retention in microseconds.
	live := `(done_at IS NULL OR done_at > now() - $2::bigint * interval '1 microsecond')`
	e.secretsSQL = fmt.Sprintf(`SELECT secret FROM %s WHERE id = $1 AND %s`, t, live)
	e.doneSQL = fmt.Sprintf(`UPDATE %s SET done_at = now() WHERE id = $1 AND done_at IS NULL`, t)
	e.reopenSQL = fmt.Sprintf(`UPDATE %s SET done_at = NULL WHERE id = $1 AND done_at IS NOT NULL AND %s`, t, live)
	e.pendingSQL = fmt.Sprintf(`SELECT id, secret, created_at FROM %s WHERE done_at IS NULL AND created_at <= $1
ORDER BY created_at, id COLLATE "C"`, t)
	e.cleanupSQL = fmt.Sprintf(`DELETE FROM %s WHERE done_at <= now() - $1::bigint * interval '1 microsecond'`, t)
	return e, nil
}

// Migrate creates the table and its index if they do not exist. Replicas
// may run it at the same time: they take turns on an advisory lock.
func (e *Expectations) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "eachhook/pgstore/migrate:"+e.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, e.migrateSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgexpect: migrate %s: %w", e.table, err)
	}
	return nil
}

// Expect implements [eachloop.Expectations]. Creation times are kept to
// the microsecond.
func (e *Expectations) Expect(ctx context.Context, x eachloop.Expectation) error {
	if x.ID == "" || x.Secret == "" {
		return eachloop.ErrInvalidExpectation
	}
	if _, err := e.pool.Exec(ctx, e.expectSQL, x.ID, x.Secret, x.CreatedAt); err != nil {
		return fmt.Errorf("pgexpect: expect: %w", err)
	}
	return nil
}

// Secrets implements [eachloop.Expectations].
func (e *Expectations) Secrets(ctx context.Context, id string) ([]string, error) {
	var secret string
	err := e.pool.QueryRow(ctx, e.secretsSQL, id, e.retention.Microseconds()).Scan(&secret)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("pgexpect: secrets: %w", err)
	}
	return []string{secret}, nil
}

// Done implements [eachloop.Expectations].
func (e *Expectations) Done(ctx context.Context, id string) error {
	if _, err := e.pool.Exec(ctx, e.doneSQL, id); err != nil {
		return fmt.Errorf("pgexpect: done: %w", err)
	}
	return nil
}

// Reopen implements [eachloop.Expectations].
func (e *Expectations) Reopen(ctx context.Context, id string) error {
	if _, err := e.pool.Exec(ctx, e.reopenSQL, id, e.retention.Microseconds()); err != nil {
		return fmt.Errorf("pgexpect: reopen: %w", err)
	}
	return nil
}

// Pending implements [eachloop.Expectations]. Every five minutes it also
// deletes the done expectations whose retention has passed.
func (e *Expectations) Pending(ctx context.Context, before time.Time) ([]eachloop.Expectation, error) {
	if err := e.cleanupSometimes(ctx); err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, e.pendingSQL, before)
	if err != nil {
		return nil, fmt.Errorf("pgexpect: pending: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eachloop.Expectation, error) {
		var x eachloop.Expectation
		err := row.Scan(&x.ID, &x.Secret, &x.CreatedAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgexpect: pending: %w", err)
	}
	return out, nil
}

func (e *Expectations) cleanupSometimes(ctx context.Context) error {
	e.mu.Lock()
	due := time.Since(e.lastCleanup) >= expectationsCleanupEvery
	if due {
		e.lastCleanup = time.Now()
	}
	e.mu.Unlock()
	if !due {
		return nil
	}
	if _, err := e.Cleanup(ctx); err != nil {
		return err
	}
	return nil
}

// Cleanup deletes the done expectations whose retention has passed and
// reports how many it deleted.
func (e *Expectations) Cleanup(ctx context.Context) (int64, error) {
	tag, err := e.pool.Exec(ctx, e.cleanupSQL, e.retention.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("pgexpect: cleanup of expectations: %w", err)
	}
	return tag.RowsAffected(), nil
}
