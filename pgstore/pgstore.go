// Package pgstore is an [eachhook.Store] on PostgreSQL, shared by every
// replica that receives webhooks, through a [pgxpool.Pool].
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	if err != nil { ... }
//	store, err := pgstore.New(pool)
//	if err != nil { ... }
//	defer store.Close()
//	if err := store.Migrate(ctx); err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithStore(store))
//
// # Schema
//
// [Store.Migrate] creates the table (default name [DefaultTable]) if it
// does not exist:
//
//	CREATE TABLE IF NOT EXISTS eachhook_claims (
//		id         text        PRIMARY KEY,
//		token      uuid        NOT NULL,
//		expires_at timestamptz NOT NULL
//	);
//	CREATE INDEX IF NOT EXISTS eachhook_claims_expires_at_idx
//		ON eachhook_claims (expires_at);
//
// # Claims
//
// A claim is one statement that inserts the id's row for the lease, or
// takes over the row of an expired claim or done record, and does nothing
// if an unexpired one exists:
//
//	INSERT INTO eachhook_claims AS c (id, token, expires_at)
//	VALUES ($1, $2, now() + $3 * interval '1 microsecond')
//	ON CONFLICT (id) DO UPDATE
//		SET token = excluded.token, expires_at = excluded.expires_at
//		WHERE c.expires_at <= now()
//
// It affects one row exactly when the claim is won; PostgreSQL's
// uniqueness check and row lock make it atomic, so among simultaneous
// claims of one id exactly one wins. Expiry is decided by the database
// server's clock (now()), never by the replicas', so replicas whose clocks
// disagree still agree on which claims have expired. A claim whose
// process died thus frees its id when its lease runs out.
//
// # Completions and releases
//
// Each claim writes a random token of its own, which travels with the
// delivery ([eachhook.Delivery.Claim]). Complete sets the row's expiry to
// the dedupe TTL only if the row still holds that token, or is absent or
// expired (the same upsert, with "WHERE c.token = excluded.token OR
// c.expires_at <= now()"); Release deletes the row only if it holds the
// token it is given. So neither ever touches a claim that another replica
// took after the lease ran out, and the store keeps no record of the
// claims it won. The schema is that of earlier versions: no migration is
// needed.
//
// # Outages
//
// A Claim that fails leaves no claim behind. When the connection breaks
// after the INSERT was sent, PostgreSQL may have committed it although
// Claim returned an error (and the Handler answered 503); the sender's
// retry would then be taken for a duplicate until the lease runs out. So
// the store deletes such a row by its token as soon as the database
// answers again (likewise for a Release that failed): from a goroutine
// that tries every second while there are such claims and ends when
// there are none (or at [Store.Close]), and before it claims the same id
// again. [Store.Ping] tells [eachhook.Handler.Health] whether the
// database answers.
//
// # Cleanup
//
// Expired rows count as absent; a background cleanup deletes them every
// [WithCleanupInterval] (default 5 minutes), in batches that skip rows
// other replicas are touching. [Store.Close] stops it.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/claimledger"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for the options.
const (
	DefaultTable           = "eachhook_claims"
	DefaultCleanupInterval = 5 * time.Minute
	DefaultMaxTokens       = 1 << 16
)

// cleanupBatch is how many expired rows one cleanup statement deletes, so
// that a large backlog is removed in short transactions.
const cleanupBatch = 1000

// ErrInvalidOption is matched by every error [New] returns for a
// configuration that cannot work.
var ErrInvalidOption = errors.New("pgstore: invalid option")

// ErrInvalidTTL is matched by the error of a Claim with a lease, or a
// Complete with a TTL, of zero or less.
var ErrInvalidTTL = errors.New("pgstore: TTL must be positive")

// Store is an [eachhook.Store] on PostgreSQL. Create it with [New], create
// its table with [Store.Migrate], and stop its background cleanup with
// [Store.Close]. It is safe for concurrent use. It does not close the pool.
type Store struct {
	pool   *pgxpool.Pool
	ledger *claimledger.Ledger
	log    *slog.Logger
	table  string // the table's name as given, unquoted
	index  string // the expiry index's name, unquoted

	claimSQL, completeSQL, releaseSQL, cleanupSQL, migrateSQL string

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ eachhook.Store  = (*Store)(nil)
	_ eachhook.Pinger = (*Store)(nil)
)

type config struct {
	table     string
	interval  time.Duration
	logger    *slog.Logger
	maxTokens int
}

// Option configures a [Store] or [DeadLetters]; an option that concerns
// only claims does nothing for DeadLetters.
type Option func(*config) error

// identifier matches a table name, optionally qualified by its schema. The
// table part has at most 48 characters so that the names of its indexes
// ("<table>_expires_at_idx") fit PostgreSQL's 63, which would otherwise
// truncate them to the table's own name and skip the index.
var identifier = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// WithTable sets the name of the table, optionally qualified by a schema
// ("webhooks.claims"). Names are letters, digits and underscores, at most
// 48 for the table and 63 for the schema, and are quoted, so they are
// case-sensitive. Default [DefaultTable] ("eachhook_claims") for [New],
// and [DefaultDeadLetterTable] ("eachhook_dead_letters") for
// [NewDeadLetters].
func WithTable(name string) Option {
	return func(c *config) error {
		if !identifier.MatchString(name) {
			return fmt.Errorf("%w: table name %q", ErrInvalidOption, name)
		}
		c.table = name
		return nil
	}
}

// WithCleanupInterval sets how often the background cleanup deletes
// expired rows. Zero turns it off (call [Store.Cleanup] yourself). Default
// [DefaultCleanupInterval] (5 minutes); it must not be negative.
func WithCleanupInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: cleanup interval %v < 0", ErrInvalidOption, d)
		}
		c.interval = d
		return nil
	}
}

// WithMaxTokens sets how many tokens of claims of unknown outcome (see
// Outages in the package documentation) the store keeps in memory to undo
// (about 150 bytes each). Default [DefaultMaxTokens] (65536); it must be
// at least 1.
func WithMaxTokens(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max tokens %d < 1", ErrInvalidOption, n)
		}
		c.maxTokens = n
		return nil
	}
}

// WithLogger sets the logger of the background cleanup's failures.
// Default [slog.Default] at the time New runs.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// newConfig applies opts over the defaults, with table the default table.
func newConfig(pool *pgxpool.Pool, table string, opts []Option) (config, error) {
	cfg := config{table: table, interval: DefaultCleanupInterval, maxTokens: DefaultMaxTokens}
	if pool == nil {
		return cfg, fmt.Errorf("%w: nil pool", ErrInvalidOption)
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return cfg, err
		}
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	return cfg, nil
}

// New returns a Store that keeps its claims in pool, configured by opts,
// and starts its background cleanup. It does not contact the server or
// create the table: call [Store.Migrate] once (at every start is fine).
func New(pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	cfg, err := newConfig(pool, DefaultTable, opts)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(cfg.table, ".")
	s := &Store{
		pool:  pool,
		log:   cfg.logger,
		table: cfg.table,
		index: parts[len(parts)-1] + "_expires_at_idx",
		done:  make(chan struct{}),
	}
	s.ledger = claimledger.New(cfg.maxTokens, claimledger.UndoInterval, s.deleteIfHeld)
	t := pgx.Identifier(parts).Sanitize()
	s.migrateSQL = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	id         text        PRIMARY KEY,
	token      uuid        NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (expires_at)`, t, pgx.Identifier{s.index}.Sanitize())
	s.claimSQL = fmt.Sprintf(`INSERT INTO %s AS c (id, token, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
WHERE c.expires_at <= now()`, t)
	s.completeSQL = fmt.Sprintf(`INSERT INTO %s AS c (id, token, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
WHERE c.token = excluded.token OR c.expires_at <= now()`, t)
	s.releaseSQL = fmt.Sprintf(`DELETE FROM %s WHERE id = $1 AND token = $2`, t)
	// The outer expiry check is evaluated again on a row that a
	// concurrent claim took over, so such a row is kept.
	s.cleanupSQL = fmt.Sprintf(`DELETE FROM %[1]s WHERE expires_at <= now() AND id IN (
	SELECT id FROM %[1]s WHERE expires_at <= now() LIMIT %[2]d FOR UPDATE SKIP LOCKED)`, t, cleanupBatch)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.interval > 0 {
		go s.cleanupEvery(ctx, cfg.interval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Migrate creates the store's table and its expiry index if they do not
// exist (the SQL is in the package documentation). Replicas may run it at
// the same time: they take turns on a transaction-scoped advisory lock.
func (s *Store) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "eachhook/pgstore/migrate:"+s.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.migrateSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", s.table, err)
	}
	return nil
}

// releaseHorizon bounds how long a Release that failed is retried in the
// background: past it the claim has expired in any case.
const releaseHorizon = eachhook.DefaultDedupeTTL

// Claim implements [eachhook.Store]. Leases are kept to the microsecond.
func (s *Store) Claim(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if lease <= 0 {
		return "", false, fmt.Errorf("%w: %v", ErrInvalidTTL, lease)
	}
	if err := s.ledger.Settle(ctx, id); err != nil {
		return "", false, fmt.Errorf("pgstore: claim: %w", err)
	}
	token := claimledger.NewToken()
	tag, err := s.pool.Exec(ctx, s.claimSQL, id, [16]byte(token), max(lease.Microseconds(), 1))
	if err != nil {
		if !pgconn.SafeToRetry(err) { // the INSERT may have been sent
			s.ledger.Doubt(id, token, lease)
		}
		return "", false, fmt.Errorf("pgstore: claim: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return "", false, nil
	}
	return token.String(), true, nil
}

// Complete implements [eachhook.Store]. TTLs are kept to the microsecond.
// A token this store did not issue (such as "") completes only an absent
// or expired row, under a new token.
func (s *Store) Complete(ctx context.Context, id, token string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	t, ok := claimledger.ParseToken(token)
	if !ok {
		t = claimledger.NewToken() // names no claim: matches none
	}
	if _, err := s.pool.Exec(ctx, s.completeSQL, id, [16]byte(t), max(ttl.Microseconds(), 1)); err != nil {
		return fmt.Errorf("pgstore: complete: %w", err)
	}
	return nil
}

// Release implements [eachhook.Store]. It deletes id's row only if it
// holds token.
func (s *Store) Release(ctx context.Context, id, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, ok := claimledger.ParseToken(token)
	if !ok {
		return nil // names no claim of this store
	}
	if err := s.ledger.Release(ctx, id, t, releaseHorizon); err != nil {
		return fmt.Errorf("pgstore: release: %w", err)
	}
	return nil
}

// Ping implements [eachhook.Pinger] with a round trip to the database
// (through the pool), so that [eachhook.Handler.Health] answers 503 while
// PostgreSQL is unreachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pgstore: ping: %w", err)
	}
	return nil
}

// deleteIfHeld deletes id's claim if it holds token.
func (s *Store) deleteIfHeld(ctx context.Context, id string, token claimledger.Token) error {
	_, err := s.pool.Exec(ctx, s.releaseSQL, id, [16]byte(token))
	return err
}

// Cleanup deletes every expired claim now and reports how many it deleted.
// The background cleanup calls it; it is exported for tests and for
// callers that turned the background cleanup off.
func (s *Store) Cleanup(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.cleanupSQL)
		if err != nil {
			return total, fmt.Errorf("pgstore: cleanup: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < cleanupBatch {
			return total, nil
		}
	}
}

func (s *Store) cleanupEvery(ctx context.Context, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Cleanup(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("pgstore: cleanup of expired claims failed", "table", s.table, "err", err)
			}
		}
	}
}

// Close stops the background cleanup, interrupting a cleanup in progress,
// and the deletion of the claims of failed Claims (see Outages in the
// package documentation; the ones left stand until their lease or TTL),
// and waits for both goroutines to end. The store still answers Claim,
// Complete and Release afterwards; the pool stays open. Call it at exit, after the Handlers'
// Shutdown. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(s.cancel)
	<-s.done
	s.ledger.Close()
	return nil
}
