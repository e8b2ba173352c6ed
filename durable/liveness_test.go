package durable_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/eachhook/eachhook/storetest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// postgresRecoveryBound is how soon, with the default Config, a callback
// cut by the death of its process runs again on Postgres: as soon as a
// replica's liveness check (about once a second) or a restarted
// process's Start sees that the dead client holds no lock.
const postgresRecoveryBound = 10 * time.Second

// stuckJob stores the delivery id through q and marks its job running
// since a minute, at attempt, by the River client named by, as a process
// that died while running it leaves it.
func stuckJob(t *testing.T, pool *pgxpool.Pool, schema string, q *durable.Queue, id string, attempt int, by string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, q.Enqueue(ctx, eachhook.Delivery{ID: id, Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody(id)}))
	tag, err := pool.Exec(ctx, `UPDATE `+schema+`.river_job SET state = 'running', attempt = $2, attempted_at = now() - interval '1 minute',
    attempted_by = ARRAY[$3] WHERE args->>'id' = $1`, id, attempt, by)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
}

// jobState returns the state of id's job and the error recorded last.
func jobState(t *testing.T, pool *pgxpool.Pool, schema, id string) (state, lastErr string) {
	t.Helper()
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT state::text, coalesce(errors[array_length(errors, 1)]->>'error', '')
    FROM `+schema+`.river_job WHERE args->>'id' = $1`, id).Scan(&state, &lastErr))
	return state, lastErr
}

const takenOver = "durable: the process running this job died; made available again by a live replica"

// TestStartTakesOverDeadClientsJobs: Start makes the running jobs of a
// dead Queue's client available again, discards the one whose last
// attempt it was, and leaves the jobs of a client that is no Queue of
// this version (an older replica, which holds no lock) to River's
// rescuer.
func TestStartTakesOverDeadClientsJobs(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	q, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: schema, MaxAttempts: 3})
	require.NoError(t, err)
	stuckJob(t, pool, schema, q, "dead", 1, "eachhook_deadhost_2026_01_01T00_00_00_000001")
	stuckJob(t, pool, schema, q, "dead-last", 3, "eachhook_deadhost_2026_01_01T00_00_00_000001")
	stuckJob(t, pool, schema, q, "older", 1, "deadhost_2026_01_01T00_00_00_000001")

	rec := eachhooktest.NewRecorder()
	newHandler(t, q, rec.Register)
	wait(t, rec, 1)
	require.Equal(t, map[string][]int{"dead": {2}}, attempts(rec))
	state, lastErr := jobState(t, pool, schema, "dead-last")
	require.Equal(t, "discarded", state)
	require.Equal(t, takenOver, lastErr)
	// One statement took over both: "older" was seen and left alone.
	state, lastErr = jobState(t, pool, schema, "older")
	require.Equal(t, "running", state)
	require.Empty(t, lastErr)
}

// TestReplicaTakesOverKilledReplicasJobs: two receiver processes with the
// default Config on one database; one is killed with SIGKILL while its
// callbacks run, and every callback it cut runs again on the other
// within postgresRecoveryBound, without a restart.
func TestReplicaTakesOverKilledReplicasJobs(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	done := filepath.Join(t.TempDir(), "completions")
	env := []string{childEnv + "=postgres", childTargetEnv + "=" + pgtest.DSN(t), childSchemaEnv + "=" + schema, childDoneEnv + "=" + done, childDefaultsEnv + "=1"}
	a := startChild(t, env...)
	b := startChild(t, env...)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	const n = 40
	for i := range n {
		require.Equal(t, 200, send(client, a.url, "kill-"+strconv.Itoa(i)))
	}
	aPid, bPid := a.cmd.Process.Pid, b.cmd.Process.Pid
	runningIn := func(pid int) []string {
		var ids []string
		completed := completionsByID(t, done)
		for id, pids := range startsByID(t, done) {
			if pids[0] == pid && len(completed[id]) == 0 {
				ids = append(ids, id)
			}
		}
		return ids
	}
	require.Eventually(t, func() bool { return len(runningIn(aPid)) >= 2 }, 30*time.Second, time.Millisecond)
	a.kill(t)
	killed := time.Now()
	cut := runningIn(aPid)
	require.NotEmpty(t, cut)

	var recovery time.Duration
	require.Eventually(t, func() bool {
		starts := startsByID(t, done)
		for _, id := range cut {
			if len(starts[id]) < 2 {
				return false
			}
		}
		recovery = time.Since(killed)
		return true
	}, 60*time.Second, 10*time.Millisecond)
	t.Logf("recovery: the %d callbacks cut by the kill started again on the other replica %v after the SIGKILL", len(cut), recovery)
	require.Less(t, recovery, postgresRecoveryBound)

	require.Eventually(t, func() bool { return len(completions(t, done)) == n }, 60*time.Second, 20*time.Millisecond)
	b.stop(t)
	got := completionsByID(t, done)
	for _, id := range cut {
		require.Equal(t, []completion{{attempt: 2, pid: bPid}}, got[id], id)
	}
	for id, cs := range got {
		// A callback that completed in A just before the kill, before River
		// recorded it, runs again in B: at least once.
		if len(cs) == 2 {
			require.Equal(t, []completion{{attempt: 1, pid: aPid}, {attempt: 2, pid: bPid}}, cs, id)
			continue
		}
		require.Len(t, cs, 1, "%s: %v", id, cs)
	}
}

// TestSlowCallbacksAreNotTakenOver: a replica whose callbacks run long,
// alive and holding its lock, keeps its jobs: over more than a minute of
// both replicas' checks, each callback runs once. It takes 65s, so it
// runs only with EACHHOOK_DURABLE_SLOW=1 (./test.sh sets it).
func TestSlowCallbacksAreNotTakenOver(t *testing.T) {
	if os.Getenv("EACHHOOK_DURABLE_SLOW") != "1" {
		t.Skip("takes 65s; set EACHHOOK_DURABLE_SLOW=1 (./test.sh does)")
	}
	const work, n = 65 * time.Second, 6
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	var mu sync.Mutex
	starts := map[string]int{}
	rec := eachhooktest.NewRecorder()
	slow := rec.Success(func(ctx context.Context, s *eachhook.Success) error {
		mu.Lock()
		starts[s.ID]++
		mu.Unlock()
		select {
		case <-time.After(work):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	var hs []*eachhook.Handler
	for range 2 {
		q, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: schema})
		require.NoError(t, err)
		hs = append(hs, newHandler(t, q, func(h *eachhook.Handler) { h.OnSuccess(slow) }, eachhook.WithCallbackTimeout(90*time.Second)))
	}
	want := map[string][]int{}
	for i := range n {
		id := "slow-" + strconv.Itoa(i)
		want[id] = []int{1}
		require.Equal(t, 200, serve(hs[i%2], eachhooktest.NewSuccessRequest("/", secret, id)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*work)
	defer cancel()
	require.NoError(t, rec.Wait(ctx, n))
	require.Equal(t, want, attempts(rec), "each callback ran once, at its first attempt")
	mu.Lock()
	defer mu.Unlock()
	for id, c := range starts {
		require.Equal(t, 1, c, "%s started once", id)
	}
	require.Len(t, starts, n)
}

// proxiedPool returns a pool on the test database through a TCP proxy.
func proxiedPool(t *testing.T) (*pgxpool.Pool, *storetest.Proxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	proxy := storetest.NewProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, err := net.SplitHostPort(proxy.Addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, proxy
}

// TestLockConnectionCut: replica A reaches Postgres through a TCP proxy,
// which is cut while A's callbacks run. A reports ErrLockLost (Health
// answers 503) and replica B runs A's running jobs again. Once the proxy
// is back, A claims no job until its cut callbacks returned and it holds
// its lock again; then it claims the jobs stored meanwhile, and every job
// completes.
func TestLockConnectionCut(t *testing.T) {
	ctx := context.Background()
	direct := pgtest.Pool(t)
	schema := postgresSchema(t, direct)
	proxied, proxy := proxiedPool(t)

	qa, err := durable.NewPostgres(proxied, durable.Config{Logger: quiet, Schema: schema})
	require.NoError(t, err)
	release := make(chan struct{})
	recA := eachhooktest.NewRecorder()
	startedA := make(chan string, 10)
	ha := newHandler(t, qa, func(h *eachhook.Handler) {
		h.OnSuccess(recA.Success(func(ctx context.Context, s *eachhook.Success) error {
			startedA <- s.ID
			<-release
			return nil
		}))
	})
	for _, id := range []string{"cut-1", "cut-2"} {
		require.Equal(t, 200, serve(ha, eachhooktest.NewSuccessRequest("/", secret, id)))
	}
	require.ElementsMatch(t, []string{"cut-1", "cut-2"}, []string{<-startedA, <-startedA})

	qb, err := durable.NewPostgres(direct, durable.Config{Logger: quiet, Schema: schema})
	require.NoError(t, err)
	recB := eachhooktest.NewRecorder()
	hb, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(qb))
	require.NoError(t, err)
	recB.Register(hb)
	require.NoError(t, hb.Start(ctx))

	proxy.Cut()
	require.Eventually(t, func() bool { return errors.Is(qa.Ping(ctx), durable.ErrLockLost) }, 30*time.Second, 10*time.Millisecond)
	health := httptest.NewRecorder()
	ha.Health().ServeHTTP(health, httptest.NewRequest(http.MethodGet, "/health", nil))
	require.Equal(t, http.StatusServiceUnavailable, health.Code)
	wait(t, recB, 2)
	require.Equal(t, map[string][]int{"cut-1": {2}, "cut-2": {2}}, attempts(recB), "B ran A's running jobs again")
	require.NoError(t, hb.Shutdown(ctx))

	// A is connected again and takes its lock, but claims nothing while its
	// cut callbacks run: the jobs stored meanwhile wait, over three of its
	// fetch poll intervals, though A has two free workers.
	proxy.Restore(t)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, direct.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext($1)::oid`,
			durable.ClientID(qa)).Scan(&n))
		return n == 1
	}, 30*time.Second, 10*time.Millisecond, "A holds its lock again")
	inserter, err := durable.NewPostgres(direct, durable.Config{Logger: quiet, Schema: schema}) // never started
	require.NoError(t, err)
	for i := range 4 {
		id := "during-" + strconv.Itoa(i)
		require.NoError(t, inserter.Enqueue(ctx, eachhook.Delivery{ID: id, Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody(id)}))
	}
	require.NoError(t, inserter.Shutdown(ctx))
	require.Never(t, func() bool { return len(startedA) > 0 }, 3*durable.DefaultFetchPollInterval, 10*time.Millisecond, "A claimed a job without its lock")
	require.ErrorIs(t, qa.Ping(ctx), durable.ErrLockLost)

	close(release)
	wait(t, recA, 6)
	require.Equal(t, map[string][]int{"cut-1": {1}, "cut-2": {1}, "during-0": {1}, "during-1": {1}, "during-2": {1}, "during-3": {1}}, attempts(recA))
	require.Eventually(t, func() bool { return qa.Ping(ctx) == nil }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		var unfinished int
		require.NoError(t, direct.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.river_job WHERE state <> 'completed'`).Scan(&unfinished))
		return unfinished == 0
	}, 30*time.Second, 10*time.Millisecond, "no job lost")
	var total int
	require.NoError(t, direct.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.river_job`).Scan(&total))
	require.Equal(t, 6, total)
}

// TestLockUnavailableFallsBack: a connection on which the lock cannot be
// held logs one warning, and the Queue goes on with River's rescuer alone:
// Start succeeds, Ping answers, jobs run, and a dead client's running job
// is rescued by River's rescuer, never taken over by the lock's check.
// The cases are simulated with functions that shadow pg_catalog's in the
// pool's search_path: pg_try_advisory_lock failing as for a role without
// EXECUTE on it, pg_try_advisory_lock answering true without a lock as
// through a pooler in transaction mode, and pg_backend_pid changing while
// the Queue runs as when a pooler moves the session.
func TestLockUnavailableFallsBack(t *testing.T) {
	for name, shadow := range map[string]string{
		"denied": `CREATE FUNCTION %[1]s.pg_try_advisory_lock(int4, int4) RETURNS bool LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'permission denied for function pg_try_advisory_lock' USING ERRCODE = '42501'; END$$`,
		"pooled at start": `CREATE FUNCTION %[1]s.pg_try_advisory_lock(int4, int4) RETURNS bool LANGUAGE sql AS 'SELECT true'`,
		"pooled later": `CREATE TABLE %[1]s.pooled (); CREATE FUNCTION %[1]s.pg_backend_pid() RETURNS int LANGUAGE sql STABLE AS
    'SELECT CASE WHEN EXISTS (SELECT FROM %[1]s.pooled) THEN 0 ELSE pg_catalog.pg_backend_pid() END'`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			direct := pgtest.Pool(t)
			schema := postgresSchema(t, direct)
			_, err := direct.Exec(ctx, fmt.Sprintf(shadow, schema))
			require.NoError(t, err)
			cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
			require.NoError(t, err)
			cfg.ConnConfig.RuntimeParams["search_path"] = schema + ",pg_catalog"
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)

			var mu sync.Mutex
			var recs []slog.Record
			warnings := func() []slog.Record {
				mu.Lock()
				defer mu.Unlock()
				var out []slog.Record
				for _, r := range recs {
					if strings.Contains(r.Message, "liveness lock") {
						out = append(out, r)
					}
				}
				return out
			}
			logger := slog.New(logRecords{level: slog.LevelWarn, mu: &mu, recs: &recs})
			q, err := durable.NewPostgres(pool, durable.Config{Logger: logger, Schema: schema, RescueStuckJobsAfter: 2 * time.Second})
			require.NoError(t, err)
			later := name == "pooled later"
			if !later {
				stuckJob(t, direct, schema, q, "dead", 1, "eachhook_deadhost_2026_01_01T00_00_00_000001")
			}
			rec := eachhooktest.NewRecorder()
			h := newHandler(t, q, rec.Register, eachhook.WithCallbackTimeout(time.Second))
			if later {
				require.Empty(t, warnings())
				_, err := direct.Exec(ctx, `INSERT INTO `+schema+`.pooled DEFAULT VALUES`)
				require.NoError(t, err)
				require.Eventually(t, func() bool { return len(warnings()) > 0 }, 30*time.Second, 10*time.Millisecond)
			}
			w := warnings()
			require.Len(t, w, 1)
			require.Equal(t, slog.LevelWarn, w[0].Level)
			require.True(t, strings.HasPrefix(w[0].Message, "durable: cannot hold the liveness lock on Postgres"), w[0].Message)
			require.NoError(t, q.Ping(ctx))

			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "new")))
			want := map[string][]int{"new": {1}}
			if !later {
				want["dead"] = []int{2}
			}
			ctxw, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			require.NoError(t, rec.Wait(ctxw, len(want)))
			require.Equal(t, want, attempts(rec))
			if !later {
				var errs []string
				require.NoError(t, direct.QueryRow(ctx, `SELECT array_agg(e->>'error') FROM `+schema+`.river_job, unnest(errors) e WHERE args->>'id' = 'dead'`).Scan(&errs))
				require.Equal(t, []string{"Stuck job rescued by JobRescuer"}, errs, "rescued by River's rescuer, not taken over")
			}
			require.Len(t, warnings(), 1, "one warning")
		})
	}
}

// TestLockSessionKeepalives: the lock's session has the server-side TCP
// keepalive settings the README gives.
func TestLockSessionKeepalives(t *testing.T) {
	pool := pgtest.Pool(t)
	q, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: postgresSchema(t, pool)})
	require.NoError(t, err)
	got, err := durable.LockSessionSettings(context.Background(), q)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3", "tcp_user_timeout": "10000"}, got)
}
