package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/eachhook/eachhook/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const recoverySecret = "whsec_recovery"

var quiet = slog.New(slog.DiscardHandler)

func post(h http.Handler, id string) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", recoverySecret, id))
	return w.Code
}

func shutdown(t *testing.T, h *eachhook.Handler) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
}

// A dead letter kept in memory by a process that then restarts is not lost
// with it: its id is not done in the shared Redis store, so the sender's
// resend runs on the new process.
func TestDeadLetterResendRunsAfterARestart(t *testing.T) {
	c := redistest.Client(t)
	prefix := redistest.Prefix(t, c)
	reported := make(chan struct{}, 1)
	first, err := eachhook.New(eachhook.WithSecret(recoverySecret), eachhook.WithLogger(quiet), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithStore(newStore(t, c, prefix)), eachhook.WithErrorHandler(func(context.Context, error) { reported <- struct{}{} }))
	require.NoError(t, err)
	first.OnSuccess(func(context.Context, *eachhook.Success) error { return errors.New("downstream unavailable") })
	require.Equal(t, 200, post(first, "restart-1"))
	<-reported
	shutdown(t, first) // the process ends: its in-memory dead letter is gone

	var runs atomic.Int32
	second, err := eachhook.New(eachhook.WithSecret(recoverySecret), eachhook.WithLogger(quiet), eachhook.WithStore(newStore(t, c, prefix)))
	require.NoError(t, err)
	second.OnSuccess(func(context.Context, *eachhook.Success) error { runs.Add(1); return nil })
	require.Equal(t, 200, post(second, "restart-1"))
	shutdown(t, second)
	require.Equal(t, int32(1), runs.Load(), "the resend ran")
}

// Concurrent Replays of one dead letter on two replicas sharing the Redis
// store and dead letters run it once: one Replay queues it, every other
// returns ErrInProgress.
func TestConcurrentReplaysOnTwoReplicasRunOnce(t *testing.T) {
	c1, c2 := redistest.Client(t), redistest.Client(t)
	prefix := redistest.Prefix(t, c1)
	var runs, reported atomic.Int32
	gate := make(chan struct{})
	replica := func(c *redis.Client) *eachhook.Handler {
		dead, err := redisstore.NewDeadLetters(c, redisstore.WithKeyPrefix(prefix+"dl:"))
		require.NoError(t, err)
		h, err := eachhook.New(eachhook.WithSecret(recoverySecret), eachhook.WithLogger(quiet), eachhook.WithRetry(1, 0),
			eachhook.WithStore(newStore(t, c, prefix)), eachhook.WithDeadLetters(dead),
			eachhook.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
		require.NoError(t, err)
		h.OnSuccess(func(context.Context, *eachhook.Success) error {
			if runs.Add(1) == 1 {
				return errors.New("first run fails")
			}
			<-gate
			return nil
		})
		return h
	}
	a, b := replica(c1), replica(c2)
	require.Equal(t, 200, post(a, "replayed-twice"))
	require.Eventually(t, func() bool { return reported.Load() == 1 }, 10*time.Second, time.Millisecond)
	errs := make([]error, 20)
	var wg sync.WaitGroup
	for i := range errs {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Go(func() { errs[i] = h.Replay(context.Background(), "replayed-twice") })
	}
	wg.Wait()
	close(gate)
	shutdown(t, a)
	shutdown(t, b)
	queued := 0
	for _, err := range errs {
		if err == nil {
			queued++
			continue
		}
		require.ErrorIs(t, err, eachhook.ErrInProgress)
	}
	require.Equal(t, 1, queued)
	require.Equal(t, int32(2), runs.Load())
	list, err := a.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Empty(t, list, "the replay's success deleted the dead letter")
}

// startRedis starts a redis-server of the test's own on a free loopback
// port and returns its address; it is stopped when the test ends. The
// test is skipped without the redis-server binary, unless CI is set.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server: %v (CI is set: a missing server is a failure)", err)
		}
		t.Skipf("redis-server: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil }, 10*time.Second, 10*time.Millisecond)
	return addr
}

// Redis at its memory limit with noeviction refuses every claim: each
// delivery is answered 503 and Health answers 503 within its bound; both
// recover when Redis has room again.
func TestRedisOutOfMemoryIs503AndUnhealthy(t *testing.T) {
	addr := startRedis(t)
	admin := newClient(t, addr)
	ctx := context.Background()
	h, err := eachhook.New(eachhook.WithSecret(recoverySecret), eachhook.WithLogger(quiet),
		eachhook.WithStore(newStore(t, newClient(t, addr), "oom:")))
	require.NoError(t, err)
	var runs atomic.Int32
	h.OnSuccess(func(context.Context, *eachhook.Success) error { runs.Add(1); return nil })
	t.Cleanup(func() { shutdown(t, h) })
	health := func() (int, string) {
		w := httptest.NewRecorder()
		h.Health().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code, w.Body.String()
	}
	code, _ := health()
	require.Equal(t, 200, code)

	require.NoError(t, admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "1").Err())
	for i := range 20 {
		require.Equal(t, 503, post(h, "oom-"+strconv.Itoa(i)))
	}
	code, body := health()
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"store failed"}`, body)

	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "0").Err())
	for i := range 20 {
		require.Equal(t, 200, post(h, "oom-"+strconv.Itoa(i)))
	}
	code, _ = health()
	require.Equal(t, 200, code)
	require.Eventually(t, func() bool { return runs.Load() == 20 }, 10*time.Second, time.Millisecond)
}
