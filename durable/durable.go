// Package durable is a persist-before-ack [eachhook.Queue] on River
// (github.com/riverqueue/river): the Handler answers 200 only after the
// verified delivery is committed to a database as a River job, and River
// workers run the Handler's callbacks from the stored copy. A process that
// dies after the 200 loses nothing: when it (or another replica) starts
// again, River runs the delivery.
//
//	q, err := durable.OpenSQLite(ctx, "webhooks.db", durable.Config{})
//	if err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithQueue(q))
//	if err != nil { ... }
//	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { ... })
//	if err := h.Start(ctx); err != nil { ... } // required; runs what a dead process left
//	mux.Handle("POST /webhooks/prediction", h)
//	... serve; at exit, after the http.Server's Shutdown, with a fresh
//	// context (a signal's is already cancelled):
//	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	h.Shutdown(sctx) // running callbacks finish; jobs not started stay stored
//
// # Starting
//
// Call [eachhook.Handler.Start] after registering the callbacks and before
// serving: it is what starts this Queue's River client (its workers and
// maintenance), outside any request and with a context of its own. A
// request that arrives before Start is answered 503 with Retry-After (the
// sender retries) and the Handler logs that Start was not called; no
// request ever starts River.
//
// # Drivers
//
// [OpenSQLite] is the embedded default, for one process with a file on
// disk: the pure-Go modernc.org/sqlite driver through River's riversqlite,
// with the WAL journal, synchronous=FULL (a commit is on disk before the
// 200, so it also survives a power cut), a busy timeout and a single open
// connection, which is what riversqlite asks for. Only one process may use
// the file at a time.
//
// [NewPostgres] is the distributed mode, on a pgx pool through River's
// riverpgxv5: any number of replicas share one database, each delivery is
// stored once (unique by prediction id) and each job is locked by one
// worker at a time, so a backlog is split across replicas without running
// a job twice (barring a crash, see below). Create the schema first with
// [MigratePostgres] or River's CLI.
//
// # Delivery guarantees
//
// The job holds the prediction id, the status and the raw body bytes as
// received (base64 in River's JSON args, so Postgres's jsonb cannot
// re-encode them). It is unique by prediction id among jobs that are
// pending, scheduled, available, running, retryable or completed: a
// redelivery, a concurrent copy on another replica, or a resend after a
// crash is acknowledged with 200 without a second job. Completed jobs are
// kept for [Config.CompletedJobRetention] (default 24h, as long as the
// Handler's default dedupe window), so redeliveries are recognised for at
// least that long on every replica, even after a restart that emptied the
// Handler's in-memory dedupe store. The Handler's default [eachhook.MemoryStore]
// is therefore enough in front of this Queue, also with replicas: River's
// unique insert is the shared dedupe.
//
// A callback that returns an error or panics is retried with River's
// backoff (attempt⁴ seconds with 10% jitter: 1s, 16s, 81s, 4m16s, ...)
// until [Config.MaxAttempts] attempts (default 10, so the last attempt
// runs about 4¼ hours after the first); the job is then discarded. Once
// the discard is committed, [eachhook.Runner.GiveUp] reports it to the
// [eachhook.WithErrorHandler] function and releases the claim. A manual
// redelivery is stored and run again on any replica, whether or not that
// replica's store still holds a claim: the Queue is an
// [eachhook.DedupingQueue], so the Handler asks it, and River's unique
// insert ignores discarded jobs. (A job whose last attempt was
// cut short by a crash is discarded without that report, by the recovery
// described under Crash settings or by River's rescuer; it is in River's
// table with state 'discarded', and listed as a dead letter.) A discarded
// job is a dead letter: see Dead letters.
// [eachhook.AttemptFromContext] gives River's attempt number, which also
// counts runs cut short by a crash.
//
// Delivery is at least once: a process killed while a callback runs has
// not recorded the job as completed, so the callback runs again on
// restart. Make callbacks idempotent.
//
// # Group commit
//
// The Handler answers a request only once the transaction holding its
// job committed, and inserts are group-committed: a request that finds no
// insert in flight is inserted at once, in a transaction of its own; the
// requests that arrive while a transaction is in flight are inserted
// together, in one transaction (River's InsertMany, up to 256 jobs), as
// soon as it finished. With [Config.Plugins], each job is a River insert
// of its own in that transaction, with the values of its own request's
// context, so that River's middleware (otelriver's) sees each job with
// its own request's trace; on SQLite the batch's last job is then
// committed on its own, right after, to wake River's producer. There is
// no timer: a lone request costs one commit, and under load one commit
// (one fsync on SQLite; two with plugins) serves many.
// A failed transaction stores none of its jobs, and each of its requests
// is answered 503 with its claim released. See [Queue.EnqueueOnce].
//
// # Fetch settings
//
// River's producer fetches at most as many jobs as it has free workers,
// and at most once per FetchCooldown: with River's default of 100ms and 4
// workers a backlog drains at 40 callbacks/s. This package sets
// FetchCooldown to 1ms ([Config.FetchCooldown]; a fetch is triggered by
// an insert or a worker coming free, never by a timer, so it costs nothing
// when idle) and keeps River's FetchPollInterval of 1s
// ([Config.FetchPollInterval]), the fallback for jobs nobody announced. On
// Postgres the client LISTENs for other replicas' inserts (River's
// default; the insert NOTIFY is sent at most once per FetchCooldown), so
// a delivery stored by one replica is fetched at once by an idle other;
// on SQLite an insert wakes the process's own producer directly. The
// README gives the throughput these settings give.
//
// # Crash settings
//
// River's defaults rescue a job left running by a dead process only after
// an hour. This package sets, on purpose:
//
//   - the job timeout is the Handler's [eachhook.WithCallbackTimeout]
//     (default 1m), one setting for both: River cancels a job's context
//     after it (the worker's Timeout), and an attempt still running then
//     fails.
//   - RescueStuckJobsAfter ([Config.RescueStuckJobsAfter], default 2m,
//     longer than the callback timeout, which Start checks): on Postgres,
//     River's rescuer takes a job still marked running after this long to
//     belong to a dead process and retries it (or discards it if it was
//     its last attempt), the backstop of the liveness lock below. A
//     callback that ignores its context and runs longer than this may run
//     twice at the same time.
//   - CompletedJobRetentionPeriod ([Config.CompletedJobRetention], default
//     24h, never shorter than the Handler's dedupe window you use): see
//     above.
//
// On SQLite only one process uses the file, so every job still marked
// running when [Queue.Start] runs belongs to a process that died: Start
// makes those jobs available again at once, before River starts (counting
// the cut run as an attempt and recording an error on the job, or
// discarding the job if that run was its last attempt), and removes the
// dead process's River leadership. A callback cut by a crash runs again
// within moments of the restart (5s is the bound the tests assert, with
// the default Config). Jobs of another Queue of the same process that has
// not stopped yet are left to it.
//
// On Postgres a job marked running may belong to a live replica, and
// River (without its Pro edition) records nothing about which clients are
// alive; Postgres does. Each Queue holds, from Start until River stopped,
// a session-level advisory lock named after its River client id, on a
// connection of its own taken from the pool (with TCP keepalives), and
// Postgres releases it the moment that session ends, also when the
// process is killed. At Start and about once a second, every Queue makes
// the running jobs whose last client holds no such lock available again,
// as Start does on SQLite (one replica acts on a job). A callback cut by
// a crash runs again within seconds, on a live replica or at the restart
// (10s is the bound the tests assert, with the default Config). A Queue
// that loses its lock claims no jobs until it holds it again, and
// [Queue.Ping] returns [ErrLockLost] meanwhile (so Health answers 503);
// another replica may run its running jobs again: at least once. Where
// the lock cannot be held (a pooler in transaction mode such as
// PgBouncer, a role without EXECUTE on pg_try_advisory_lock), the Queue
// logs one warning and goes on without it: its Start does not fail, and
// the jobs of a dead replica wait for River's rescuer (on River's leader,
// every 30s, for jobs running longer than RescueStuckJobsAfter, then
// retried after the retry policy's first backoff). The README gives the
// keepalive settings and the figures.
//
// A delivery that was waiting (not yet running) when the process died
// runs as soon as a worker is free after the restart, on either database.
//
// # Dead letters
//
// The Queue's discarded jobs are the Handler's dead letters of reason
// "callback_failed": [eachhook.Handler.DeadLetters] lists them (one per
// prediction id, the latest), [eachhook.Handler.Replay] makes the job
// available again with River's JobRetry (one more attempt, on whichever
// replica takes it; a failure discards it again and reports it to the
// error handler again) and [eachhook.Handler.Discard] deletes it, from
// any replica on the same database ([Queue.DeadLetters], [Queue.Replay],
// [Queue.Discard]). Of concurrent Replays of one dead letter, in one
// process or on replicas, one returns nil and the others
// [eachhook.ErrNoDeadLetter]: it runs once. A resend of a dead-lettered
// id is stored and runs; the success of any run of an id deletes its
// discarded jobs, so it is no longer listed and its Replay returns
// [eachhook.ErrNoDeadLetter]. River is told never to delete discarded
// jobs, so a dead letter stays in river_job until it is replayed,
// discarded or a run of its id succeeds: watch their number. The dead letters the Queue never sees (a terminal status
// with no callback registered, a status the Handler does not know) stay
// in the Handler's dead-letter store, in memory unless
// [eachhook.WithDeadLetters] sets another: [SQLiteDeadLetters] in the
// Queue's file, or the DeadLetters of module pgstore with [NewPostgres].
//
// The Queue is an [eachhook.Pinger]: [eachhook.Handler.Health] answers 503
// "queue unreachable" while its database does not answer.
package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Defaults of [Config].
const (
	DefaultWorkers               = 4
	DefaultMaxAttempts           = 10
	DefaultRescueStuckJobsAfter  = 2 * time.Minute
	DefaultCompletedJobRetention = eachhook.DefaultDedupeTTL
	DefaultQueueName             = "eachhook"
	DefaultFetchCooldown         = time.Millisecond
	DefaultFetchPollInterval     = time.Second
)

// rescueMargin is River's JobStuckThreshold: the time after a job's
// timeout before a still-running job is taken to be stuck, for a callback
// that honours its cancelled context to return before its job is rescued.
const rescueMargin = 10 * time.Second

// ErrInvalidConfig is matched by the error of a constructor given a
// [Config] that cannot work.
var ErrInvalidConfig = errors.New("durable: invalid config")

// Config configures a [Queue]. It is a struct, where the other modules
// of eachhook take functional options, because it mirrors the River
// settings it sets (river.Config unless said otherwise), field for field:
//
//   - Workers: MaxWorkers of the River queue QueueName in Queues
//   - MaxAttempts: MaxAttempts (and the MaxAttempts of each job's
//     river.InsertOpts)
//   - JobTimeout: the Handler's eachhook.WithCallbackTimeout, per job
//   - RescueStuckJobsAfter: RescueStuckJobsAfter
//   - CompletedJobRetention: CompletedJobRetentionPeriod
//   - QueueName: the key in Queues, and the Queue of each job's
//     river.InsertOpts
//   - RetryPolicy: RetryPolicy
//   - Logger: Logger
//   - Plugins: Plugins
//   - Schema: Schema
//   - FetchCooldown: FetchCooldown
//   - FetchPollInterval: FetchPollInterval
//
// The package also sets JobStuckThreshold to 10s and
// DiscardedJobRetentionPeriod to -1 (discarded jobs are the dead letters:
// River never deletes them, see Dead letters), and registers its one
// worker; the rest of river.Config keeps River's defaults. The zero Config
// is valid: every zero field takes the default its comment gives, which
// is this package's and not always River's. [OpenSQLite] and
// [NewPostgres] validate it.
type Config struct {
	// Workers is how many callbacks run at once in this process. Default
	// [DefaultWorkers] (4).
	Workers int
	// MaxAttempts is how often a failing callback runs before its job is
	// discarded. Default [DefaultMaxAttempts] (10).
	MaxAttempts int
	// RescueStuckJobsAfter is how long a job may stay running before
	// River's rescuer takes it to belong to a dead process and retries it
	// (on Postgres, the backstop of the liveness lock). It must be longer
	// than the Handler's callback timeout (eachhook.WithCallbackTimeout,
	// which is the job timeout: [Queue.Start] refuses otherwise); leave a
	// margin (10s or more) so that a callback that honours its cancelled
	// context has returned before its job is rescued. Default
	// [DefaultRescueStuckJobsAfter] (2m).
	RescueStuckJobsAfter time.Duration
	// CompletedJobRetention is how long a completed job, and so the
	// duplicate suppression of its prediction id, is kept. Keep it at least
	// as long as the Handler's dedupe TTL. Default
	// [DefaultCompletedJobRetention] (24h).
	CompletedJobRetention time.Duration
	// QueueName is the River queue the jobs go to. Default
	// [DefaultQueueName] ("eachhook").
	QueueName string
	// RetryPolicy decides when a failed callback runs again. Default:
	// River's DefaultClientRetryPolicy (attempt⁴ seconds, 10% jitter).
	RetryPolicy river.ClientRetryPolicy
	// Logger receives River's logs, the migration lines of [OpenSQLite]
	// included (River's INFO lines about migrations, one per migration
	// applied at every open, are passed on at DEBUG level): give it the
	// logger you give eachhook.WithLogger. Default [slog.Default].
	Logger *slog.Logger
	// FetchCooldown is the shortest time between two fetches of jobs by
	// this process's River producer. A fetch takes at most as many jobs
	// as there are free workers, so with no-op callbacks a process runs
	// at most Workers/FetchCooldown callbacks per second (River's default
	// of 100ms gives 40/s with 4 workers). Default
	// [DefaultFetchCooldown] (1ms, River's minimum): a fetch is
	// triggered by an insert or a free worker, not by a timer, so a short
	// cooldown costs nothing when the queue is idle.
	FetchCooldown time.Duration
	// FetchPollInterval is how often River looks for jobs when nothing
	// told it that there are any: jobs inserted by another process on
	// SQLite, retries coming due, and a lost Postgres notification. On
	// Postgres the producer also LISTENs for inserts of other replicas
	// (River's default, kept). It must not be shorter than FetchCooldown.
	// Default [DefaultFetchPollInterval] (1s, River's default), or
	// FetchCooldown if that is longer.
	FetchPollInterval time.Duration
	// Plugins are River hooks and middleware installed on the Queue's
	// River client, as river.Config.Plugins: for example otelriver's
	// middleware (github.com/riverqueue/rivercontrib/otelriver), which
	// traces each insert and each attempt. Default: none.
	Plugins []rivertype.Plugin
	// Schema is the Postgres schema of River's tables, created by
	// [MigratePostgres] in the same schema. Default "": the pool's
	// search_path. [OpenSQLite] refuses any other value.
	Schema string
}

func (c Config) withDefaults() (Config, error) {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RescueStuckJobsAfter == 0 {
		c.RescueStuckJobsAfter = DefaultRescueStuckJobsAfter
	}
	if c.CompletedJobRetention == 0 {
		c.CompletedJobRetention = DefaultCompletedJobRetention
	}
	if c.QueueName == "" {
		c.QueueName = DefaultQueueName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FetchCooldown == 0 {
		c.FetchCooldown = DefaultFetchCooldown
	}
	if c.FetchPollInterval == 0 {
		c.FetchPollInterval = max(DefaultFetchPollInterval, c.FetchCooldown)
	}
	switch {
	case c.Workers < 1:
		return c, fmt.Errorf("%w: workers %d < 1", ErrInvalidConfig, c.Workers)
	case c.MaxAttempts < 1:
		return c, fmt.Errorf("%w: max attempts %d < 1", ErrInvalidConfig, c.MaxAttempts)
	case c.RescueStuckJobsAfter < 0:
		return c, fmt.Errorf("%w: RescueStuckJobsAfter %v < 0", ErrInvalidConfig, c.RescueStuckJobsAfter)
	case c.CompletedJobRetention < 0:
		return c, fmt.Errorf("%w: completed job retention %v < 0", ErrInvalidConfig, c.CompletedJobRetention)
	case c.FetchCooldown < river.FetchCooldownMin:
		return c, fmt.Errorf("%w: fetch cooldown %v < %v", ErrInvalidConfig, c.FetchCooldown, river.FetchCooldownMin)
	case c.FetchPollInterval < c.FetchCooldown:
		return c, fmt.Errorf("%w: fetch poll interval %v < fetch cooldown %v", ErrInvalidConfig, c.FetchPollInterval, c.FetchCooldown)
	}
	return c, nil
}

// riverConfig is the River client configuration for c, working the
// deliveries with w.
func (c Config) riverConfig(w *deliveryWorker) *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	return &river.Config{
		CompletedJobRetentionPeriod: c.CompletedJobRetention,
		DiscardedJobRetentionPeriod: -1, // discarded jobs are the dead letters: kept until replayed or discarded
		FetchCooldown:               c.FetchCooldown,
		FetchPollInterval:           c.FetchPollInterval,
		JobStuckThreshold:           rescueMargin,
		JobTimeout:                  -1, // per job: the worker's Timeout, the Handler's callback timeout
		Logger:                      c.Logger,
		MaxAttempts:                 c.MaxAttempts,
		Plugins:                     c.Plugins,
		Queues:                      map[string]river.QueueConfig{c.QueueName: {MaxWorkers: c.Workers}},
		RescueStuckJobsAfter:        c.RescueStuckJobsAfter,
		RetryPolicy:                 c.RetryPolicy,
		Schema:                      c.Schema,
		Workers:                     workers,
	}
}

// riverClient is what a Queue needs of a river.Client, whatever its
// driver's transaction type.
type riverClient interface {
	riverJobs // for the dead letters and Ping (deadletters.go)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Stopped() <-chan struct{}
	ID() string
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
}

// Queue is an [eachhook.Queue] that stores each delivery as a River job
// before the Handler answers 200. Create it with [OpenSQLite] or
// [NewPostgres] and pass it to [eachhook.WithQueue]; it serves one Handler.
type Queue struct {
	client  riverClient
	worker  *deliveryWorker
	opts    river.InsertOpts
	inserts groupCommit
	// inTx runs f in one transaction of the Queue's database, committed
	// when f returns nil.
	inTx func(ctx context.Context, f func(jobTx) error) error
	// wakeAfterTx: River's producer learns of no job inserted in a
	// transaction (SQLite, which has no LISTEN/NOTIFY), so a batch's last
	// job is inserted on its own, which wakes it (groupcommit.go).
	wakeAfterTx bool
	plugins     bool         // Config.Plugins has any: they see each job's context
	close       func() error // closes a database the Queue opened, or nil
	// recover makes the jobs a dead process left running available, before
	// River starts: on SQLite all of them (no other process can be alive),
	// on Postgres those of the clients without a liveness lock, once this
	// Queue holds its own (liveness.start).
	recover func(ctx context.Context) error
	// liveness holds the lock that shows this client alive and takes over
	// the dead clients' jobs while River runs; nil on SQLite.
	liveness *liveness
	// live registers the client's ID from Start until River stopped, for
	// recover; nil on Postgres.
	live *sync.Map

	rescueAfter time.Duration // Config.RescueStuckJobsAfter

	mu       sync.Mutex
	shutdown bool
	reported chan struct{} // closed when reportDiscarded returned; nil before Start
	closed   sync.Once
	closeErr error
}

var _ eachhook.DedupingQueue = (*Queue)(nil)

func newQueue(cfg Config, w *deliveryWorker, client riverClient, closeDB func() error) *Queue {
	q := &Queue{
		client:      client,
		worker:      w,
		close:       closeDB,
		rescueAfter: cfg.RescueStuckJobsAfter,
		opts: river.InsertOpts{
			MaxAttempts: cfg.MaxAttempts,
			Queue:       cfg.QueueName,
			UniqueOpts:  river.UniqueOpts{ByArgs: true},
		},
	}
	q.plugins = len(cfg.Plugins) > 0
	w.jobs, w.log, w.maxAttempts = client, cfg.Logger, cfg.MaxAttempts
	q.inserts = groupCommit{insert: q.insertBatch, opts: &q.opts}
	return q
}

// errShutdown is returned by Start and Enqueue after Shutdown.
var errShutdown = errors.New("durable: queue shut down")

// Start implements [eachhook.Queue]: it starts River's workers and
// maintenance (rescue of stuck jobs, retries, cleanup), running jobs
// through r. Jobs stored by an earlier process run from now on; Start
// first makes the jobs a dead process left running available again, and
// on Postgres takes the Queue's liveness lock (see Crash settings in the
// package doc).
// [eachhook.Handler.Start] calls it; nothing in this package starts River
// otherwise, so no request goroutine ever does.
func (q *Queue) Start(ctx context.Context, r eachhook.Runner) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return errShutdown
	}
	if old := q.worker.r.Load(); old != nil && *old != r {
		return errors.New("durable: queue already serves another Handler")
	}
	if t := r.CallbackTimeout(); q.rescueAfter <= t {
		return fmt.Errorf("%w: RescueStuckJobsAfter %v not longer than the Handler's callback timeout %v (eachhook.WithCallbackTimeout, the job timeout)", ErrInvalidConfig, q.rescueAfter, t)
	}
	if q.recover != nil {
		if err := q.recover(ctx); err != nil {
			return fmt.Errorf("durable: start: %w", err)
		}
	}
	if q.live != nil {
		// Before River starts, so that no job it fetches looks orphaned
		// to another Queue of this process.
		q.live.Store(q.client.ID(), struct{}{})
	}
	q.worker.r.Store(&r)
	events, unsubscribe := q.client.Subscribe(river.EventKindJobFailed)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		q.worker.reportDiscarded(r, events)
	}()
	// River stops when the context given to Start ends; the Queue runs
	// until Shutdown instead.
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		if q.liveness != nil {
			q.liveness.stop()
		}
		unsubscribe()
		<-reported
		if q.live != nil {
			q.live.Delete(q.client.ID())
		}
		return fmt.Errorf("durable: start: %w", err)
	}
	if q.live != nil {
		stopped := q.client.Stopped()
		go func() {
			<-stopped
			q.live.Delete(q.client.ID())
		}()
	}
	if q.liveness != nil {
		q.liveness.run()
	}
	q.reported = reported
	return nil
}

// Enqueue implements [eachhook.Queue]: it inserts d as a job and returns
// nil once the insert is committed, or when a job for d.ID is already
// stored (pending, running, retrying or completed within the retention).
// It also works on a Queue that was never started, for a process that
// only stores deliveries for others to run.
func (q *Queue) Enqueue(ctx context.Context, d eachhook.Delivery) error {
	_, err := q.EnqueueOnce(ctx, d)
	return err
}

// EnqueueOnce implements [eachhook.DedupingQueue]: it inserts d's job
// unless a job of d.ID is already stored (and not discarded), and reports
// whether it inserted one. A concurrent insert of the same id is waited
// for, so a copy of a delivery is answered only once the first copy's
// insert committed or failed.
//
// Inserts are group-committed: a call that finds no insert in flight
// inserts its job at once in a transaction of its own, and the calls
// that arrive meanwhile are inserted together in the next transaction
// (River's InsertMany, up to 256 jobs; with Config.Plugins, one River
// insert per job with its own call's context), started as soon as the previous
// one is decided; there is no timer. Each call returns only once the
// transaction holding its job committed. Copies of one id in one batch
// make one job; the first reports true, the others false, all after
// the commit. A failed transaction stores no job of its batch and
// returns its error to every call of the batch (on SQLite with plugins,
// a batch's last job is committed after the others, on its own; if that commit
// fails, the batch's calls all get its error, and the retries of the
// others are duplicates). A call whose ctx ends
// first returns ctx.Err(); its job is inserted only if its batch had
// started, and is then a duplicate for the sender's retry. The shared
// insert is bounded by 30s of its own.
//
// After Shutdown began it inserts nothing and returns an error; Shutdown
// waits for the batches already in flight to commit.
func (q *Queue) EnqueueOnce(ctx context.Context, d eachhook.Delivery) (bool, error) {
	return q.inserts.enqueue(ctx, newDeliveryArgs(d))
}

// Shutdown implements [eachhook.Queue]. It stops storing new jobs, waits
// for the inserts in flight to commit (their requests are answered 200),
// stops fetching jobs and waits for the callbacks in progress; jobs not
// started stay
// stored and run when a process starts again. If ctx ends first, it
// cancels the running callbacks' contexts and returns ctx.Err(); River
// puts the job of a callback that returns because of that cancellation
// back in the queue without counting the attempt, so it runs again on the
// next start. A database opened by [OpenSQLite] is closed, and a Postgres
// Queue's liveness lock released, once River has stopped.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	q.shutdown = true
	reported := q.reported
	q.mu.Unlock()
	err := q.inserts.close(ctx)
	if err == nil {
		err = q.client.Stop(ctx)
	}
	if err != nil {
		// Hard stop: cancel callbacks without waiting for them.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		_ = q.client.StopAndCancel(done)
		go func() {
			<-q.client.Stopped()
			q.stopLiveness()
			q.closeDB()
		}()
		return err
	}
	q.stopLiveness()
	if reported != nil {
		<-reported // River closed the subscription when it stopped
	}
	return q.closeDB()
}

// stopLiveness releases a Postgres Queue's liveness lock once River has
// stopped, so that no other replica takes over the jobs it still ran.
func (q *Queue) stopLiveness() {
	if q.liveness != nil {
		q.liveness.stop()
	}
}

func (q *Queue) closeDB() error {
	q.closed.Do(func() {
		if q.close != nil {
			q.closeErr = q.close()
		}
	})
	return q.closeErr
}
