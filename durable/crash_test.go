package durable_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// The crash tests re-execute the test binary as a webhook receiver (the
// child), with these environment variables. The child's callbacks append
// "start <id> <attempt> <pid>\n" to the completions file when they begin
// and "<id> <attempt> <pid>\n" once they have done their work, so the file
// is the ground truth of what ran and completed, even across a SIGKILL.
const (
	childEnv       = "EACHHOOK_DURABLE_CHILD" // "sqlite" or "postgres"
	childTargetEnv = "EACHHOOK_DURABLE_TARGET"
	childSchemaEnv = "EACHHOOK_DURABLE_SCHEMA"
	childDoneEnv   = "EACHHOOK_DURABLE_DONE"
	// childDefaultsEnv set to "1" runs the child with the zero
	// durable.Config (every default) instead of the shortened settings.
	childDefaultsEnv = "EACHHOOK_DURABLE_DEFAULTS"
	// childKillEnv names a delivery id: the child SIGKILLs itself once
	// that delivery's job is committed, before answering it.
	childKillEnv    = "EACHHOOK_DURABLE_KILL_AFTER_COMMIT"
	childWorkers    = 4
	childWork       = 300 * time.Millisecond // each callback's duration
	childJobTimeout = time.Second
	childRescue     = 2 * time.Second
)

// runChild serves webhooks on 127.0.0.1 until SIGTERM, printing its address
// on stdout. It returns the process's exit code.
func runChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	ctx := context.Background()
	cfg := durable.Config{Workers: childWorkers, RescueStuckJobsAfter: childRescue, Logger: quiet}
	timeout := eachhook.WithCallbackTimeout(childJobTimeout)
	if os.Getenv(childDefaultsEnv) == "1" {
		cfg = durable.Config{Logger: quiet}
		timeout = eachhook.WithCallbackTimeout(time.Minute) // the default
	}
	var q *durable.Queue
	var err error
	switch os.Getenv(childEnv) {
	case "sqlite":
		q, err = durable.OpenSQLite(ctx, os.Getenv(childTargetEnv), cfg)
	case "postgres":
		var pool *pgxpool.Pool
		pool, err = pgxpool.New(ctx, os.Getenv(childTargetEnv))
		if err != nil {
			return fail(err)
		}
		defer pool.Close()
		cfg.Schema = os.Getenv(childSchemaEnv)
		q, err = durable.NewPostgres(pool, cfg)
	default:
		err = errors.New("unknown backend")
	}
	if err != nil {
		return fail(err)
	}
	done, err := os.OpenFile(os.Getenv(childDoneEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	defer done.Close()

	var queue eachhook.Queue = q
	if id := os.Getenv(childKillEnv); id != "" {
		queue = killAfterCommit{q, id}
	}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(queue), timeout)
	if err != nil {
		return fail(err)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if _, err := fmt.Fprintf(done, "start %s %d %d\n", s.ID, eachhook.AttemptFromContext(ctx), os.Getpid()); err != nil {
			return err
		}
		select {
		case <-time.After(childWork):
		case <-ctx.Done():
			return ctx.Err()
		}
		// One write(2) per line: a SIGKILL leaves whole lines only.
		_, err := fmt.Fprintf(done, "%s %d %d\n", s.ID, eachhook.AttemptFromContext(ctx), os.Getpid())
		return err
	})
	if err := h.Start(ctx); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed
	fmt.Printf("ADDR %s\n", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fail(err)
	}
	if err := h.Shutdown(sctx); err != nil {
		return fail(err)
	}
	return 0
}

// killAfterCommit is the child's Queue when childKillEnv is set: the
// durable Queue, except that the process dies by SIGKILL right after the
// job of delivery id is committed, before the Handler can answer it.
type killAfterCommit struct {
	*durable.Queue
	id string
}

func (k killAfterCommit) EnqueueOnce(ctx context.Context, d eachhook.Delivery) (bool, error) {
	queued, err := k.Queue.EnqueueOnce(ctx, d)
	if err == nil && d.ID == k.id {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process
	}
	return queued, err
}

func (k killAfterCommit) Enqueue(ctx context.Context, d eachhook.Delivery) error {
	_, err := k.EnqueueOnce(ctx, d)
	return err
}

// child is a running receiver process.
type child struct {
	cmd  *exec.Cmd
	url  string
	wait chan error
}

func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, wait: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
		c.wait <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-c.wait
		}
	})
	select {
	case a := <-addr:
		c.url = "http://" + a + "/"
	case err := <-c.wait:
		t.Fatalf("child exited before serving: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("child did not start")
	}
	return c
}

// kill ends the child with SIGKILL and waits for it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	<-c.wait
}

// stop ends the child with SIGTERM and requires a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-c.wait:
		require.NoError(t, err, "child's graceful shutdown")
	case <-time.After(30 * time.Second):
		t.Fatal("child did not stop")
	}
}

// send delivers id to url and returns the status code, 0 when no response
// arrived.
func send(client *http.Client, url, id string) int {
	req, err := eachhooktest.NewClientRequest(url, secret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, time.Now())
	if err != nil {
		return 0
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// completion is one line of the completions file.
type completion struct {
	attempt, pid int
}

// completionsByID reads the completions file: id -> completions, in order.
func completionsByID(t *testing.T, path string) map[string][]completion {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]completion{}
	}
	require.NoError(t, err)
	out := map[string][]completion{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "start ") {
			continue
		}
		f := strings.Fields(line)
		require.Len(t, f, 3, line)
		attempt, err := strconv.Atoi(f[1])
		require.NoError(t, err)
		pid, err := strconv.Atoi(f[2])
		require.NoError(t, err)
		out[f[0]] = append(out[f[0]], completion{attempt: attempt, pid: pid})
	}
	return out
}

// running counts the callbacks that started and have not completed.
func running(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "start "):
			n++
		case line != "":
			n--
		}
	}
	return n
}

// startsByID reads the completions file's start lines: id -> the pids
// whose callback started, in order.
func startsByID(t *testing.T, path string) map[string][]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]int{}
	}
	require.NoError(t, err)
	out := map[string][]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "start ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		require.Len(t, f, 3, line)
		pid, err := strconv.Atoi(f[2])
		require.NoError(t, err)
		out[f[0]] = append(out[f[0]], pid)
	}
	return out
}

// completions reads the completions file: id -> attempts, in order.
func completions(t *testing.T, path string) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for id, cs := range completionsByID(t, path) {
		for _, c := range cs {
			out[id] = append(out[id], c.attempt)
		}
	}
	return out
}

// sqliteRecoveryBound is how soon after a restart on SQLite, with the
// default Config, a callback cut by a crash runs again: Start makes the
// dead process's running jobs available at once.
const sqliteRecoveryBound = 5 * time.Second

func TestCrashAndReplaySQLite(t *testing.T) {
	dir := t.TempDir()
	recovery := testCrashAndReplay(t, childEnv+"=sqlite", childTargetEnv+"="+filepath.Join(dir, "webhooks.db"))
	require.Less(t, recovery, sqliteRecoveryBound)
}

// TestCrashAndReplaySQLiteDefaults is the crash and replay with every
// default of durable.Config: the interrupted callbacks run again within
// sqliteRecoveryBound of the restart, without waiting for River's rescuer.
func TestCrashAndReplaySQLiteDefaults(t *testing.T) {
	dir := t.TempDir()
	recovery := testCrashAndReplay(t, childEnv+"=sqlite", childTargetEnv+"="+filepath.Join(dir, "webhooks.db"), childDefaultsEnv+"=1")
	require.Less(t, recovery, sqliteRecoveryBound)
}

// TestCrashAndReplayPostgres: on Postgres too, with the shortened
// settings, the cut callbacks run again within postgresRecoveryBound of
// the restart: Start takes over the running jobs of the dead client, which
// holds no lock any more.
func TestCrashAndReplayPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	recovery := testCrashAndReplay(t, childEnv+"=postgres", childTargetEnv+"="+pgtest.DSN(t), childSchemaEnv+"="+schema)
	require.Less(t, recovery, postgresRecoveryBound)
}

// TestCrashAndReplayPostgresDefaults is the same with every default of
// durable.Config (RescueStuckJobsAfter 2m): the cut callbacks run again
// within postgresRecoveryBound, without waiting for River's rescuer.
func TestCrashAndReplayPostgresDefaults(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	recovery := testCrashAndReplay(t, childEnv+"=postgres", childTargetEnv+"="+pgtest.DSN(t), childSchemaEnv+"="+schema, childDefaultsEnv+"=1")
	require.Less(t, recovery, postgresRecoveryBound)
}

// TestKillBetweenCommitAndAnswer: the receiver dies after a delivery's
// job is committed and before its 200. The sender, with no answer,
// resends to the restarted receiver: the resend is a duplicate, and the
// callback runs once.
func TestKillBetweenCommitAndAnswer(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			done := filepath.Join(t.TempDir(), "completions")
			env := []string{childDoneEnv + "=" + done, childDefaultsEnv + "=1"}
			switch name {
			case "sqlite":
				env = append(env, childEnv+"=sqlite", childTargetEnv+"="+filepath.Join(t.TempDir(), "webhooks.db"))
			case "postgres":
				pool := pgtest.Pool(t)
				env = append(env, childEnv+"=postgres", childTargetEnv+"="+pgtest.DSN(t), childSchemaEnv+"="+postgresSchema(t, pool))
			}
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			first := startChild(t, append(env, childKillEnv+"=committed")...)
			require.Equal(t, 200, send(client, first.url, "before"))
			require.Zero(t, send(client, first.url, "committed"), "no answer: the process died")
			<-first.wait

			second := startChild(t, env...)
			require.Equal(t, 200, send(client, second.url, "committed"), "the resend is acknowledged")
			require.Equal(t, 200, send(client, second.url, "after"))
			require.Eventually(t, func() bool { return len(completions(t, done)) == 3 }, 90*time.Second, 10*time.Millisecond)
			second.stop(t)
			got := completionsByID(t, done)
			// Its callback may have started in the dead process (then the
			// run counts as an attempt), but it completed once.
			require.Len(t, got["committed"], 1, "the committed delivery's callback ran once: %v", got["committed"])
			require.Equal(t, second.cmd.Process.Pid, got["committed"][0].pid, "run by the restarted receiver")
			require.Len(t, got["before"], 1)
			require.Len(t, got["after"], 1)
		})
	}
}

// testCrashAndReplay sends deliveries to a child, kills it with SIGKILL while
// callbacks run and more deliveries arrive, restarts it on the same database
// and resends what got no 200. Every delivery must then have completed. It
// returns the recovery time: from the restarted child's first moment of
// serving until every callback cut by the kill had started again.
func testCrashAndReplay(t *testing.T, env ...string) time.Duration {
	done := filepath.Join(t.TempDir(), "completions")
	env = append(env, childDoneEnv+"="+done)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "crash-" + strconv.Itoa(i)
	}
	var mu sync.Mutex
	codes := map[string]int{}
	// sendAll sends ids with parallel senders, each pausing between two
	// requests.
	sendAll := func(url string, ids []string, parallel int, pause time.Duration) *sync.WaitGroup {
		var wg sync.WaitGroup
		next := make(chan string, len(ids))
		for _, id := range ids {
			next <- id
		}
		close(next)
		for range parallel {
			wg.Go(func() {
				for id := range next {
					code := send(client, url, id)
					mu.Lock()
					codes[id] = code
					mu.Unlock()
					time.Sleep(pause)
				}
			})
		}
		return &wg
	}

	// Phase 1: half the deliveries are accepted; the child is killed while
	// their callbacks run, with the other half being sent (paced so that
	// most are still unsent at the kill).
	first := startChild(t, env...)
	sendAll(first.url, ids[:n/2], 4, 0).Wait()
	for _, id := range ids[:n/2] {
		require.Equal(t, 200, codes[id], id)
	}
	// Kill while callbacks run, so that River must rescue their jobs.
	require.Eventually(t, func() bool { return running(t, done) >= 2 }, 30*time.Second, time.Millisecond)
	rest := sendAll(first.url, ids[n/2:], 2, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(codes) >= n/2+4
	}, 30*time.Second, time.Millisecond)
	// Kill only while callbacks are in progress (each takes childWork), so
	// that jobs are in state running and River must rescue them: without
	// this check the kill can fall between one batch's completion and the
	// next fetch, and then no job is rescued.
	require.Eventually(t, func() bool { return running(t, done) >= 2 }, 30*time.Second, time.Millisecond)
	first.kill(t)
	rest.Wait()
	completedAtKill := len(completions(t, done))
	accepted, refused := 0, []string{}
	for _, id := range ids {
		if codes[id] == 200 {
			accepted++
		} else {
			refused = append(refused, id)
		}
	}
	t.Logf("at SIGKILL: %d accepted, %d completed, %d without a 200", accepted, completedAtKill, len(refused))
	require.Less(t, completedAtKill, accepted, "the kill must interrupt accepted work")
	require.NotEmpty(t, refused, "some deliveries must have been refused by the dead process")

	// The callbacks cut by the kill: started by the first child, not
	// completed by it.
	firstPid := first.cmd.Process.Pid
	var cut []string
	doneAtKill := completionsByID(t, done)
	for id, pids := range startsByID(t, done) {
		if pids[0] == firstPid && len(doneAtKill[id]) == 0 {
			cut = append(cut, id)
		}
	}
	require.NotEmpty(t, cut, "the kill must cut running callbacks")

	// Phase 2: restart on the same database; the sender resends what got no
	// 200. Everything completes.
	second := startChild(t, env...)
	restarted := time.Now()
	var recovery time.Duration
	recovered := make(chan struct{})
	go func() {
		defer close(recovered)
		for time.Since(restarted) < 150*time.Second {
			starts := startsByID(t, done)
			all := true
			for _, id := range cut {
				all = all && len(starts[id]) > 1
			}
			if all {
				recovery = time.Since(restarted)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for _, id := range refused {
		require.Equal(t, 200, send(client, second.url, id), id)
	}
	require.Eventually(t, func() bool { return len(completions(t, done)) == n }, 150*time.Second, 50*time.Millisecond,
		"every delivery must complete after the restart")
	<-recovered
	t.Logf("recovery: the %d callbacks cut by the kill started again %v after the restart", len(cut), recovery)
	second.stop(t)

	got := completions(t, done)
	reruns, rescued := 0, 0
	for _, id := range ids {
		attempts := got[id]
		require.NotEmpty(t, attempts, id)
		// A callback reruns only when its job was rescued from the dead
		// process, which counts as a further attempt.
		for i := 1; i < len(attempts); i++ {
			require.Greater(t, attempts[i], attempts[i-1], "%s: %v", id, attempts)
			reruns++
		}
		if attempts[len(attempts)-1] > 1 {
			rescued++
		}
	}
	t.Logf("after restart: %d deliveries completed, %d rescued from the dead process, %d callbacks ran again", len(got), rescued, reruns)
	// Jobs the dead process had fetched (state running) run again with
	// the next attempt number.
	require.Positive(t, rescued, "some jobs must have been running at the SIGKILL")
	require.NotZero(t, recovery, "every cut callback must run again")
	return recovery
}

// TestTwoProcessesShareABacklog stores a backlog in Postgres, then starts
// two receiver processes on it: every job runs exactly once, and both
// processes take part.
func TestTwoProcessesShareABacklog(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	schema := postgresSchema(t, pool)
	const n = 120
	seed, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: schema})
	require.NoError(t, err)
	for i := range n {
		id := "backlog-" + strconv.Itoa(i)
		require.NoError(t, seed.Enqueue(ctx, eachhook.Delivery{ID: id, Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody(id)}))
	}
	require.NoError(t, seed.Shutdown(ctx))

	done := filepath.Join(t.TempDir(), "completions")
	env := []string{childEnv + "=postgres", childTargetEnv + "=" + pgtest.DSN(t), childSchemaEnv + "=" + schema, childDoneEnv + "=" + done}
	a := startChild(t, env...)
	b := startChild(t, env...)
	require.Eventually(t, func() bool { return len(completions(t, done)) == n }, 60*time.Second, 20*time.Millisecond)
	a.stop(t)
	b.stop(t)

	perProcess := map[int]int{}
	for id, cs := range completionsByID(t, done) {
		require.Len(t, cs, 1, "%s ran more than once: %v", id, cs)
		require.Equal(t, 1, cs[0].attempt, id)
		perProcess[cs[0].pid]++
	}
	t.Logf("backlog of %d split between processes: %v", n, perProcess)
	require.Len(t, perProcess, 2, "both processes must work the backlog")
}
