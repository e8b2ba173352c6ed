package durable_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
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

// flaky is a callback that fails while failing is set, counting runs per
// id, and an error handler that counts what it receives.
type flaky struct {
	mu       sync.Mutex
	failing  bool
	runs     map[string]int
	reported []error
}

func newFlaky() *flaky { return &flaky{failing: true, runs: map[string]int{}} }

func (f *flaky) register(h *eachhook.Handler) {
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.runs[s.ID]++
		if f.failing {
			return errors.New("downstream unavailable")
		}
		return nil
	})
}

func (f *flaky) onError(_ context.Context, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported = append(f.reported, err)
}

func (f *flaky) fix() { f.mu.Lock(); f.failing = false; f.mu.Unlock() }

func (f *flaky) counts(id string) (runs, reported int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[id], len(f.reported)
}

func listIDs(t *testing.T, h *eachhook.Handler) []string {
	t.Helper()
	list, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	ids := make([]string, len(list))
	for i, dl := range list {
		ids[i] = dl.ID
	}
	return ids
}

// TestDiscardedJobsAreDeadLetters: on SQLite and Postgres, a delivery
// whose callback failed on every attempt is River's discarded job, listed
// as a dead letter and reported once; a replay that fails again is a dead
// letter again (reported again), one that succeeds leaves none; a discard
// deletes the job.
func TestDiscardedJobsAreDeadLetters(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			f := newFlaky()
			q := b.open(t, durable.Config{Logger: quiet, MaxAttempts: 2, RetryPolicy: fastRetry{}})
			h := newHandler(t, q, f.register, eachhook.WithErrorHandler(f.onError))
			ctx := context.Background()
			bodies := map[string][]byte{}
			for _, id := range []string{"dl-a", "dl-b"} {
				r := eachhooktest.NewSuccessRequest("/", secret, id)
				require.Equal(t, 200, serve(h, r))
				bodies[id] = []byte(`{"id":"` + id + `"`) // checked as a prefix below
			}
			require.Eventually(t, func() bool { return len(listIDs(t, h)) == 2 }, 30*time.Second, 10*time.Millisecond)
			list, err := h.DeadLetters(ctx)
			require.NoError(t, err)
			for _, dl := range list {
				require.Equal(t, "callback_failed", dl.Reason)
				require.Equal(t, "success", dl.Status)
				require.Equal(t, 2, dl.Attempts)
				require.Equal(t, "downstream unavailable", dl.Err)
				require.Contains(t, string(dl.Body), string(bodies[dl.ID]))
				require.False(t, dl.At.IsZero())
			}
			require.ElementsMatch(t, []string{"dl-a", "dl-b"}, listIDs(t, h))
			require.Eventually(t, func() bool { _, n := f.counts(""); return n == 2 }, 30*time.Second, 10*time.Millisecond)

			// A replay that fails again: one more attempt, discarded and
			// reported again.
			require.NoError(t, h.Replay(ctx, "dl-a"))
			require.Eventually(t, func() bool { _, n := f.counts(""); return n == 3 }, 30*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { return len(listIDs(t, h)) == 2 }, 30*time.Second, 10*time.Millisecond)
			runs, _ := f.counts("dl-a")
			require.Equal(t, 3, runs)

			// A replay that succeeds leaves no dead letter.
			f.fix()
			require.NoError(t, h.Replay(ctx, "dl-a"))
			require.Eventually(t, func() bool { r, _ := f.counts("dl-a"); return r == 4 }, 30*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { ids := listIDs(t, h); return len(ids) == 1 && ids[0] == "dl-b" }, 30*time.Second, 10*time.Millisecond)
			require.ErrorIs(t, h.Replay(ctx, "dl-a"), eachhook.ErrNoDeadLetter)

			require.NoError(t, h.Discard(ctx, "dl-b"))
			require.Empty(t, listIDs(t, h))
			require.ErrorIs(t, h.Discard(ctx, "dl-b"), eachhook.ErrNoDeadLetter)
			require.ErrorIs(t, h.Replay(ctx, "dl-b"), eachhook.ErrNoDeadLetter)
			runs, reported := f.counts("dl-b")
			require.Equal(t, 2, runs, "a discarded dead letter never runs again")
			require.Equal(t, 3, reported, "the error handler is called once per dead letter")
		})
	}
}

// TestResendOfADeadLetterRunsAndClearsIt: on SQLite and Postgres, after a
// restart (a new Handler and Queue on the same database), a resend of a
// dead-lettered id runs its callback, and its success removes the dead
// letter: it is no longer listed and its Replay returns ErrNoDeadLetter.
func TestResendOfADeadLetterRunsAndClearsIt(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			f := newFlaky()
			ctx := context.Background()
			cfg := durable.Config{Logger: quiet, MaxAttempts: 1}
			first, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(b.open(t, cfg)), eachhook.WithErrorHandler(f.onError))
			require.NoError(t, err)
			f.register(first)
			require.NoError(t, first.Start(ctx))
			require.Equal(t, 200, serve(first, eachhooktest.NewSuccessRequest("/", secret, "again")))
			require.Eventually(t, func() bool { return len(listIDs(t, first)) == 1 }, 30*time.Second, 10*time.Millisecond)
			require.NoError(t, first.Shutdown(ctx))

			h := newHandler(t, b.open(t, cfg), f.register, eachhook.WithErrorHandler(f.onError))
			require.Equal(t, []string{"again"}, listIDs(t, h))
			f.fix()
			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "again")))
			require.Eventually(t, func() bool { return len(listIDs(t, h)) == 0 }, 30*time.Second, 10*time.Millisecond)
			require.ErrorIs(t, h.Replay(ctx, "again"), eachhook.ErrNoDeadLetter)
			require.ErrorIs(t, h.Discard(ctx, "again"), eachhook.ErrNoDeadLetter)
			require.NoError(t, h.Shutdown(ctx))
			runs, reported := f.counts("again")
			require.Equal(t, 2, runs)
			require.Equal(t, 1, reported)
		})
	}
}

// TestDeadLettersOnAnotherReplica: two replicas on one Postgres database.
// A job discarded by either is listed, replayed and discarded from the
// other. A delivery that a third replica, which has no OnFailed, received
// is kept in the dead-letter store they share, and replayed by a replica
// that has the callback (its job may then run on either durable replica,
// which both have it).
func TestDeadLettersOnAnotherReplica(t *testing.T) {
	b := newBackend(t, "postgres")
	f := newFlaky()
	var failed sync.WaitGroup
	failed.Add(1)
	register := func(h *eachhook.Handler) {
		f.register(h)
		h.OnFailed(func(context.Context, *eachhook.Failure) error { failed.Done(); return nil })
	}
	dead := openDeadLetters(t, filepath.Join(t.TempDir(), "dead.db"))
	cfg := durable.Config{Logger: quiet, MaxAttempts: 1}
	ctx := context.Background()
	opts := []eachhook.Option{eachhook.WithErrorHandler(f.onError), eachhook.WithDeadLetters(dead)}
	a := newHandler(t, b.open(t, cfg), register, opts...)
	other := newHandler(t, b.open(t, cfg), register, opts...)
	noFailed, err := eachhook.New(append([]eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	f.register(noFailed)
	t.Cleanup(func() { require.NoError(t, noFailed.Shutdown(context.Background())) })

	for _, id := range []string{"r-replayed", "r-discarded"} {
		require.Equal(t, 200, serve(a, eachhooktest.NewSuccessRequest("/", secret, id)))
	}
	require.Equal(t, 200, serve(noFailed, eachhooktest.NewFailedRequest("/", secret, "r-nocallback")))
	require.Eventually(t, func() bool { return len(listIDs(t, other)) == 3 }, 30*time.Second, 10*time.Millisecond)
	list, err := other.DeadLetters(ctx)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, dl := range list {
		reasons[dl.ID] = dl.Reason
	}
	require.Equal(t, map[string]string{"r-replayed": "callback_failed", "r-discarded": "callback_failed", "r-nocallback": "no_callback"}, reasons)
	require.Error(t, noFailed.Replay(ctx, "r-nocallback"), "a replica with no callback for the status cannot replay it")

	f.fix()
	require.NoError(t, other.Replay(ctx, "r-replayed"))
	require.NoError(t, other.Discard(ctx, "r-discarded"))
	require.NoError(t, other.Replay(ctx, "r-nocallback"))
	failed.Wait()
	require.Eventually(t, func() bool { r, _ := f.counts("r-replayed"); return r == 2 }, 30*time.Second, 10*time.Millisecond)
	require.Empty(t, listIDs(t, a))
	for _, id := range []string{"r-replayed", "r-discarded", "r-nocallback"} {
		require.ErrorIs(t, a.Discard(ctx, id), eachhook.ErrNoDeadLetter, id)
	}
	_, reported := f.counts("")
	require.Equal(t, 3, reported, "the error handler is called once per dead letter")
}

// TestHealthWhileTheDatabaseIsDown: the Queue is a Pinger, so Health
// answers 503 "queue unreachable" while Postgres cannot be reached, and
// 200 again once it can.
func TestHealthWhileTheDatabaseIsDown(t *testing.T) {
	ctx := context.Background()
	direct := pgtest.Pool(t)
	schema := postgresSchema(t, direct)
	cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	target := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	proxy := storetest.NewProxy(t, target)
	host, port, err := net.SplitHostPort(proxy.Addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	q, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: schema})
	require.NoError(t, err)
	h := newHandler(t, q, eachhooktest.NewRecorder().Register)
	health := func() (int, string) {
		w := httptest.NewRecorder()
		h.Health().ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
		return w.Code, w.Body.String()
	}
	code, body := health()
	require.Equal(t, 200, code, body)

	proxy.Cut()
	code, body = health()
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"queue unreachable"}`, body)

	proxy.Restore(t)
	require.Eventually(t, func() bool { c, _ := health(); return c == 200 }, 30*time.Second, 50*time.Millisecond)
}

// TestPingSQLite: the SQLite Queue answers Ping while open, and fails it
// once Shutdown closed its file.
func TestPingSQLite(t *testing.T) {
	q := newBackend(t, "sqlite").open(t, durable.Config{Logger: quiet})
	ctx := context.Background()
	require.NoError(t, q.Ping(ctx))
	require.NoError(t, q.Shutdown(ctx))
	require.Error(t, q.Ping(ctx))
}

// replayConcurrently replays id n times at once through each of hs (n
// per Handler) and returns how many returned nil; every other call must
// return ErrNoDeadLetter.
func replayConcurrently(t *testing.T, id string, n int, hs ...*eachhook.Handler) int {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n*len(hs))
	start := make(chan struct{})
	for _, h := range hs {
		for range n {
			wg.Go(func() {
				<-start
				errs <- h.Replay(context.Background(), id)
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, eachhook.ErrNoDeadLetter)
	}
	return ok
}

// TestConcurrentReplaysRunOnce: 50 concurrent Replays of one dead letter
// in one process (SQLite and Postgres), then 25 on each of two replicas
// (two Queues on one Postgres database): one returns nil and the
// callback runs once; the others return ErrNoDeadLetter.
func TestConcurrentReplaysRunOnce(t *testing.T) {
	replicas := map[string]int{"sqlite": 1, "postgres": 1, "postgres-replicas": 2}
	for _, name := range []string{"sqlite", "postgres", "postgres-replicas"} {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, strings.TrimSuffix(name, "-replicas"))
			f := newFlaky()
			cfg := durable.Config{Logger: quiet, MaxAttempts: 1}
			var hs []*eachhook.Handler
			for range replicas[name] {
				hs = append(hs, newHandler(t, b.open(t, cfg), f.register, eachhook.WithErrorHandler(f.onError)))
			}
			require.Equal(t, 200, serve(hs[0], eachhooktest.NewSuccessRequest("/", secret, "replayed-once")))
			require.Eventually(t, func() bool { return len(listIDs(t, hs[0])) == 1 }, 30*time.Second, 10*time.Millisecond)
			f.fix()
			require.Equal(t, 1, replayConcurrently(t, "replayed-once", 50/len(hs), hs...))
			require.Eventually(t, func() bool { r, _ := f.counts("replayed-once"); return r == 2 }, 30*time.Second, 10*time.Millisecond)
			for _, h := range hs {
				require.Eventually(t, func() bool { return len(listIDs(t, h)) == 0 }, 30*time.Second, 10*time.Millisecond)
				require.ErrorIs(t, h.Replay(context.Background(), "replayed-once"), eachhook.ErrNoDeadLetter)
			}
			for _, h := range hs {
				require.NoError(t, h.Shutdown(context.Background()))
			}
			runs, reported := f.counts("replayed-once")
			require.Equal(t, 2, runs, "the failed run and one replay")
			require.Equal(t, 1, reported)
		})
	}
}
