package durable

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// sqlitePragmas make a commit durable before the 200 (WAL with
// synchronous=FULL syncs the log on every commit), let a writer wait for
// the lock instead of failing, and take the write lock at BEGIN so that a
// transaction never fails to upgrade its read lock.
const sqlitePragmas = "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"

// OpenSQLite opens (creating it if needed) the SQLite database at path,
// brings River's tables up to date with rivermigrate, and returns a Queue
// on it. The Queue owns the database and closes it in Shutdown. Only one
// process may use the file at a time; use [NewPostgres] for replicas.
func OpenSQLite(ctx context.Context, path string, cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: SQLite path %q must be non-empty, without ? or #", ErrInvalidConfig, path)
	}
	db, err := sql.Open("sqlite", "file:"+path+sqlitePragmas)
	if err != nil {
		return nil, fmt.Errorf("durable: open %s: %w", path, err)
	}
	// SQLite runs one writer at a time; River's riversqlite asks for a
	// single connection so that its concurrent work queues here instead of
	// failing with SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	q, err := newSQLiteQueue(ctx, db, cfg)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return q, nil
}

func newSQLiteQueue(ctx context.Context, db *sql.DB, cfg Config) (*Queue, error) {
	driver := riversqlite.New(db)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("durable: migrate: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("durable: migrate: %w", err)
	}
	w := &deliveryWorker{}
	client, err := river.NewClient(driver, cfg.riverConfig(w, ""))
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	return newQueue(cfg, w, client, db.Close), nil
}
