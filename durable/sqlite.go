package durable

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"modernc.org/sqlite" // the pure-Go driver; importing it also registers "sqlite"
)

// liveSQLiteClients holds the IDs of the River clients of this process's
// SQLite Queues from Start until River stopped: the clients whose running
// jobs are not a dead process's.
var liveSQLiteClients sync.Map

// sqlitePragmas make a commit durable before the 200 (WAL with
// synchronous=FULL syncs the log on every commit), let a writer wait for
// the lock instead of failing, and take the write lock at BEGIN so that a
// transaction never fails to upgrade its read lock.
const sqlitePragmas = "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"

// OpenSQLite opens (creating it if needed) the SQLite database at path,
// brings River's tables up to date with rivermigrate, and returns a Queue
// on it. Its one connection keeps River's statements prepared (up to
// 256): parsing them again on every call took about a third of the CPU
// time of a busy Queue. The Queue owns the database and closes it in Shutdown. Only one
// process may use the file at a time; use [NewPostgres] for replicas.
func OpenSQLite(ctx context.Context, path string, cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: SQLite path %q must be non-empty, without ? or #", ErrInvalidConfig, path)
	}
	if cfg.Schema != "" {
		return nil, fmt.Errorf("%w: a schema (%q) is for Postgres", ErrInvalidConfig, cfg.Schema)
	}
	db := sql.OpenDB(stmtCachingConnector{dsn: "file:" + path + sqlitePragmas, driver: &sqlite.Driver{}})
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
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: newMigrationLogger(cfg.Logger)})
	if err != nil {
		return nil, fmt.Errorf("durable: migrate: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("durable: migrate: %w", err)
	}
	w := &deliveryWorker{}
	client, err := river.NewClient(driver, cfg.riverConfig(w))
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	q := newQueue(cfg, w, client, db.Close)
	q.inTx = func(ctx context.Context, f func(jobTx) error) error {
		tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the one writer until it ends
		if err != nil {
			return err
		}
		if err := f(sqliteTx{client: client, tx: tx}); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	q.wakeAfterTx = true
	q.recover = func(ctx context.Context) error { return recoverSQLite(ctx, db) }
	q.live = &liveSQLiteClients
	return q, nil
}

// sqliteTx is River's client bound to one SQLite transaction.
type sqliteTx struct {
	client *river.Client[*sql.Tx]
	tx     *sql.Tx
}

func (t sqliteTx) InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return t.client.InsertManyTx(ctx, t.tx, params)
}

func (t sqliteTx) JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return t.client.JobRetryTx(ctx, t.tx, id)
}

// lockState needs no lock of its own: the transaction began IMMEDIATE,
// so it is the only writer until it ends.
func (t sqliteTx) lockState(ctx context.Context, id int64) (rivertype.JobState, error) {
	var state string
	err := t.tx.QueryRowContext(ctx, "SELECT state FROM river_job WHERE id = ?", id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return rivertype.JobState(state), err
}

// recoverSQLite runs in Start, before River's client starts: only one
// process uses the file, so every job still marked running belongs to a
// process that died, and is made available again at once (River's rescuer
// would wait for RescueStuckJobsAfter, then for its 30s tick, and then
// apply the retry backoff). Like River's rescuer, it records an error on
// the job (its attempt, already counted when the dead process fetched it,
// stays counted) and discards the job instead if that was its last
// attempt. Its scheduled time is kept, so that it runs before the jobs
// that were still waiting behind it. It also deletes the dead process's leadership, so that this
// client becomes River's leader (which schedules retries and cleans up)
// at once instead of when the dead one's lease expires.
//
// Jobs and leadership of a River client of this process that has not
// stopped yet (another Queue on the same file, such as one whose Shutdown
// hit its deadline and is still cancelling its callbacks) are left alone:
// that client finishes them.
func recoverSQLite(ctx context.Context, db *sql.DB) error {
	live := []string{} // "[]", never "null", which json_each reads as one NULL
	liveSQLiteClients.Range(func(id, _ any) bool {
		live = append(live, id.(string))
		return true
	})
	liveJSON, err := json.Marshal(live)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	const now = `strftime('%Y-%m-%d %H:%M:%f', 'now')`
	const rfc3339 = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`
	_, err = tx.ExecContext(ctx, `UPDATE river_job SET
    errors = jsonb(json_insert(json(coalesce(errors, jsonb('[]'))), '$[#]', json_object(
        'at', `+rfc3339+`, 'attempt', attempt,
        'error', 'durable: the process running this job died; made available again at start', 'trace', ''))),
    state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'available' END,
    finalized_at = CASE WHEN attempt >= max_attempts THEN `+now+` ELSE NULL END
WHERE state = 'running'
    AND coalesce(json_extract(attempted_by, '$[#-1]'), '') NOT IN (SELECT value FROM json_each(?))`, string(liveJSON))
	if err != nil {
		return fmt.Errorf("recover running jobs: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM river_leader WHERE leader_id NOT IN (SELECT value FROM json_each(?))`, string(liveJSON)); err != nil {
		return fmt.Errorf("recover leadership: %w", err)
	}
	return tx.Commit()
}
