package durable

// This file owns the liveness lock of a Postgres Queue: a session-level
// advisory lock naming its River client, held on a connection of its own,
// by which every replica tells the running jobs of a dead client from a
// live one's and makes the dead one's available again.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
)

// ErrLockLost is matched by the error of [Queue.Ping] while the Queue has
// lost its liveness lock on Postgres and claims no jobs (see Crash
// settings in the package doc).
var ErrLockLost = errors.New("durable: liveness lock lost: not claiming jobs until it holds it again")

const (
	// lockNamespace is the first key of every liveness lock ("each"); the
	// second is hashtext(client id).
	lockNamespace int32 = 0x65616368
	// clientIDPrefix starts the River client id of every Queue that holds
	// a liveness lock: only their running jobs are taken over, so the
	// jobs of an older version's replica are left to River's rescuer.
	clientIDPrefix = "eachhook_"
	// livenessInterval is how often, ±25%, a Queue checks its lock and
	// takes over the dead clients' running jobs.
	livenessInterval = time.Second
	// livenessTimeout bounds one check: a lock connection that does not
	// answer within it is taken as lost.
	livenessTimeout = 3 * time.Second
	// takeOverError is the error recorded in a job taken over.
	takeOverError = "durable: the process running this job died; made available again by a live replica"
)

// keepAlive is the client side's TCP keepalive on the lock connection;
// serverKeepAlive sets the server side's for its session: each side
// drops the session about 11s after the other went silent, which bounds
// how long a partitioned replica's lock keeps its jobs from the others.
var (
	keepAlive       = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}
	serverKeepAlive = `SELECT set_config('tcp_keepalives_idle', '5', false), set_config('tcp_keepalives_interval', '2', false),
    set_config('tcp_keepalives_count', '3', false), set_config('tcp_user_timeout', '10000', false)`
)

// newClientID returns a River client id unique per process start, as
// River's default (the host name and the start time to the microsecond),
// with clientIDPrefix.
func newClientID(now time.Time) string {
	host, _ := os.Hostname()
	host = strings.ReplaceAll(host, ".", "_")
	if len(host) > 60 {
		host = host[:60]
	}
	return clientIDPrefix + host + "_" + strings.Replace(now.UTC().Format("2006_01_02T15_04_05.000000"), ".", "_", 1)
}

// liveness holds a Postgres Queue's liveness lock and takes over the
// running jobs of the clients that hold none.
type liveness struct {
	pool    *pgxpool.Pool
	id      string // the River client id, the lock's name
	queues  *river.QueueBundle
	queue   river.QueueConfig
	name    string // the River queue paused while the lock is lost
	log     *slog.Logger
	heldSQL string
	takeSQL string

	conn    *pgx.Conn  // the lock's session; nil while lost or in fallback; the loop's only
	removed chan error // the pause's result, while lost
	lost    atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once // stop runs once: a hard stop's goroutine and a later Shutdown may both call it
}

func newLiveness(pool *pgxpool.Pool, id string, queues *river.QueueBundle, cfg Config) *liveness {
	table := func(name string) string {
		if cfg.Schema == "" {
			return name
		}
		return pgx.Identifier{cfg.Schema, name}.Sanitize()
	}
	last := "attempted_by[array_length(attempted_by, 1)]"
	return &liveness{
		pool: pool, id: id, queues: queues, name: cfg.QueueName, log: cfg.Logger,
		queue:   river.QueueConfig{MaxWorkers: cfg.Workers},
		heldSQL: `SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() AND objsubid = 2 AND classid = $1::int4::oid AND objid = hashtext($2)::oid)`,
		// The running jobs of this project's kind whose last client holds
		// no lock. A job fetched after held was read has an attempted_at
		// later than now(), which keeps it out even when the row is
		// re-read after waiting for its row lock; SKIP LOCKED and the
		// conditions of the UPDATE let one replica only act on a job.
		takeSQL: `WITH held AS MATERIALIZED (
    SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::int4::oid
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())),
dead AS (
    SELECT id, ` + last + ` AS by FROM ` + table("river_job") + `
    WHERE state = 'running' AND kind = $2 AND attempted_at < now() AND starts_with(` + last + `, $3)
        AND hashtext(` + last + `)::oid NOT IN (SELECT objid FROM held)
    FOR UPDATE SKIP LOCKED)
UPDATE ` + table("river_job") + ` j SET
    errors = array_append(j.errors, jsonb_build_object('at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'attempt', j.attempt, 'error', $4::text, 'trace', '')),
    state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded'::` + table("river_job_state") + ` ELSE 'available'::` + table("river_job_state") + ` END,
    finalized_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END
FROM dead WHERE j.id = dead.id AND j.state = 'running' AND j.` + last + ` = dead.by`,
	}
}

// start takes the lock and then takes over the dead clients' running
// jobs, before River starts. A lock that cannot be held is logged once
// and leaves the Queue to River's rescuer; only a database that cannot be
// reached fails it.
func (l *liveness) start(ctx context.Context) error {
	if l.cancel != nil {
		return nil // started already
	}
	conn, err := l.lock(ctx)
	switch {
	case errors.Is(err, errNoLock):
		l.fallBack(err)
		return nil
	case err != nil:
		return err
	}
	l.conn = conn
	return l.takeOver(ctx)
}

// errNoLock is matched by the error of lock when the database answered
// but the lock is not held; errPooled when the lock was taken but the
// session's server connection does not hold it.
var (
	errNoLock = errors.New("the session cannot hold its lock")
	errPooled = fmt.Errorf("%w: its server connection changed (a pooler in transaction mode?)", errNoLock)
)

// lock opens the lock's session on a connection taken from the pool
// (so with its settings and hooks) and takes the lock. It returns no
// connection with an error.
func (l *liveness) lock(ctx context.Context) (*pgx.Conn, error) {
	c, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := c.Hijack()
	nc := conn.PgConn().Conn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	if t, ok := nc.(*net.TCPConn); ok {
		err = t.SetKeepAliveConfig(keepAlive)
	}
	if err == nil {
		_, err = conn.Exec(ctx, serverKeepAlive)
	}
	var ok bool
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockNamespace, l.id).Scan(&ok)
	}
	if err == nil && ok {
		// A pooler that moves the session to another server connection
		// (PgBouncer in transaction mode) shows here.
		err = l.held(ctx, conn)
	} else if err == nil {
		err = errNoLock
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		err = fmt.Errorf("%w: %w", errNoLock, err)
	}
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

func (l *liveness) held(ctx context.Context, conn *pgx.Conn) error {
	var held bool
	if err := conn.QueryRow(ctx, l.heldSQL, lockNamespace, l.id).Scan(&held); err != nil {
		return err
	}
	if !held {
		return errPooled
	}
	return nil
}

func (l *liveness) takeOver(ctx context.Context) error {
	tag, err := l.conn.Exec(ctx, l.takeSQL, lockNamespace, deliveryArgs{}.Kind(), clientIDPrefix, takeOverError)
	if err != nil {
		return fmt.Errorf("take over the running jobs of dead replicas: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		l.log.Info("durable: made the running jobs of dead replicas available again", "jobs", n)
	}
	return nil
}

// run checks the lock and takes over jobs about once a livenessInterval
// until stop. Without the lock (in fallback) it does nothing.
func (l *liveness) run() {
	if l.cancel != nil {
		return // running already
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	if l.conn == nil {
		close(l.done)
		return
	}
	go func() {
		defer close(l.done)
		t := time.NewTimer(jitter())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if l.tick(ctx) {
				return
			}
			t.Reset(jitter())
		}
	}()
}

func jitter() time.Duration {
	return livenessInterval*3/4 + rand.N(livenessInterval/2)
}

// fallBack logs that the Queue works without its lock, leaving the
// running jobs of dead replicas to River's rescuer.
func (l *liveness) fallBack(err error) {
	l.log.Warn("durable: cannot hold the liveness lock on Postgres (a pooler in transaction mode? no EXECUTE on pg_try_advisory_lock?): "+
		"the running jobs of a dead replica wait for River's rescuer (Config.RescueStuckJobsAfter)", "client", l.id, "err", err)
}

// tick checks the lock and takes over the dead clients' jobs, or takes
// the lock again while it is lost. It reports whether the Queue falls
// back to River's rescuer, which ends the checks.
func (l *liveness) tick(ctx context.Context) (fellBack bool) {
	tctx, cancel := context.WithTimeout(ctx, livenessTimeout)
	defer cancel()
	if l.conn == nil {
		return l.relock(ctx, tctx)
	}
	err := l.held(tctx, l.conn)
	if err == nil {
		err = l.takeOver(tctx)
	}
	if err == nil || ctx.Err() != nil {
		return false
	}
	_ = l.conn.Close(tctx)
	l.conn = nil
	if errors.Is(err, errPooled) {
		l.fallBack(err) // it keeps claiming jobs
		return true
	}
	l.lost.Store(true)
	l.log.Error("durable: lost the liveness lock on Postgres: claiming no jobs until it holds it again; "+
		"another replica may run this one's running jobs again", "client", l.id, "err", err)
	l.removed = make(chan error, 1)
	go func() { l.removed <- l.queues.Remove(context.Background(), l.name) }() // returns once the running jobs have
	return false
}

// relock takes the lock again and, once the pause has taken effect,
// resumes claiming jobs.
func (l *liveness) relock(ctx, tctx context.Context) (fellBack bool) {
	conn, err := l.lock(tctx)
	pooled := errors.Is(err, errPooled)
	if err != nil && !pooled {
		return false // the old session may linger until its server notices; retried next tick
	}
	select {
	case rerr := <-l.removed:
		if rerr == nil {
			rerr = l.queues.Add(l.name, l.queue)
		}
		if rerr != nil {
			l.log.Error("durable: cannot resume claiming jobs; retrying", "client", l.id, "err", rerr)
			l.removed <- nil // the queue is removed: Add again next tick
			if conn != nil {
				_ = conn.Close(tctx)
			}
			return false
		}
	case <-ctx.Done():
		if conn != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
		return false
	}
	l.lost.Store(false)
	if pooled {
		l.fallBack(err)
		return true
	}
	l.conn = conn
	l.log.Info("durable: holds the liveness lock on Postgres again: claiming jobs", "client", l.id)
	return false
}

// stop ends the checks and the lock's session, releasing the lock. It
// may be called more than once, also concurrently: the first call stops,
// the others wait for it.
func (l *liveness) stop() {
	l.stopped.Do(func() {
		if l.cancel != nil {
			l.cancel()
			<-l.done
		}
		if l.conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), livenessTimeout)
			defer cancel()
			_ = l.conn.Close(ctx)
			l.conn = nil
		}
	})
}
