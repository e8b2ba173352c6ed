package durable_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m)
}

const secret = "whsec_durable_test"

var quiet = slog.New(slog.DiscardHandler)

// fastRetry retries a failed callback after 10ms instead of River's
// attempt⁴ seconds.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(10 * time.Millisecond) }

func serve(h http.Handler, r *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func signed(body []byte) *http.Request {
	return eachhooktest.NewRequest("/", secret, body, eachhooktest.BodyScheme, time.Now())
}

// newHandler returns a started Handler on q, shut down at the end of the
// test.
func newHandler(t *testing.T, q *durable.Queue, register func(h *eachhook.Handler), opts ...eachhook.Option) *eachhook.Handler {
	t.Helper()
	base := []eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q)}
	h, err := eachhook.New(append(base, opts...)...)
	require.NoError(t, err)
	register(h)
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	return h
}

// wait waits for n callback runs of rec in all.
func wait(t *testing.T, rec *eachhooktest.Recorder, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rec.Wait(ctx, n))
}

// attempts returns the attempt numbers of rec's runs, by id.
func attempts(rec *eachhooktest.Recorder) map[string][]int {
	m := map[string][]int{}
	for _, r := range rec.Runs() {
		m[r.ID] = append(m[r.ID], r.Attempt)
	}
	return m
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/x.db"
	for name, cfg := range map[string]durable.Config{
		"negative workers":               {Workers: -1},
		"negative attempts":              {MaxAttempts: -1},
		"negative rescue":                {RescueStuckJobsAfter: -time.Second},
		"negative retention":             {CompletedJobRetention: -time.Hour},
		"cooldown below River's minimum": {FetchCooldown: time.Microsecond},
		"poll faster than cooldown":      {FetchCooldown: time.Second, FetchPollInterval: time.Millisecond},
		"a schema on SQLite":             {Schema: "webhooks"},
	} {
		_, err := durable.OpenSQLite(ctx, path, cfg)
		require.ErrorIs(t, err, durable.ErrInvalidConfig, name)
	}
	_, err := durable.OpenSQLite(ctx, "", durable.Config{})
	require.ErrorIs(t, err, durable.ErrInvalidConfig)
	_, err = durable.OpenSQLite(ctx, path+"?mode=memory", durable.Config{})
	require.ErrorIs(t, err, durable.ErrInvalidConfig)
}

func TestRunsEachDeliveryOnceFromTheStoredBytes(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			rec := eachhooktest.NewRecorder()
			h := newHandler(t, b.open(t, durable.Config{Logger: quiet}), rec.Register)

			// Odd spacing and key order: the callback must see these bytes,
			// not a re-encoding.
			success := []byte(`{ "status":"success",  "id":"p-ok", "output":"https://x/y.png"}`)
			failed := eachhooktest.FailedBody("p-failed")
			require.Equal(t, 200, serve(h, signed(success)))
			require.Equal(t, 200, serve(h, signed(failed)))
			for range 3 { // redeliveries: acknowledged, not run again
				require.Equal(t, 200, serve(h, signed(success)))
			}
			wait(t, rec, 2)
			require.Equal(t, 200, serve(h, signed(success))) // after completion too

			// A second Handler on the same database, as after a restart: its
			// in-memory dedupe store is empty, River's unique job is not.
			rec2 := eachhooktest.NewRecorder()
			if name == "postgres" {
				h2 := newHandler(t, b.open(t, durable.Config{Logger: quiet}), rec2.Register)
				require.Equal(t, 200, serve(h2, signed(success)))
			}

			require.NoError(t, h.Shutdown(context.Background()))
			require.Equal(t, map[string][]int{"p-ok": {1}, "p-failed": {1}}, attempts(rec))
			for _, r := range rec.Runs() {
				if r.ID == "p-ok" {
					require.Equal(t, success, []byte(r.Success.Raw))
				} else {
					require.Equal(t, failed, []byte(r.Failure.Raw))
				}
			}
			require.Empty(t, rec2.Runs())
		})
	}
}

func TestRetriesThenGivesUpAndReleases(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			var mu sync.Mutex
			var reported []error
			attempts := map[string][]int{}
			fixed := false
			done := make(chan struct{}, 100)
			h := newHandler(t, b.open(t, durable.Config{Logger: quiet, MaxAttempts: 3, RetryPolicy: fastRetry{}}),
				func(h *eachhook.Handler) {
					h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
						defer func() { done <- struct{}{} }()
						mu.Lock()
						attempts[s.ID] = append(attempts[s.ID], eachhook.AttemptFromContext(ctx))
						ok := fixed
						mu.Unlock()
						switch {
						case s.ID == "panics":
							panic("always")
						case !ok:
							return errors.New("downstream unavailable")
						}
						return nil
					})
				},
				eachhook.WithErrorHandler(func(_ context.Context, err error) {
					mu.Lock()
					reported = append(reported, err)
					mu.Unlock()
				}))

			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "flaky")))
			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "panics")))
			for range 6 {
				<-done
			}
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(reported) == 2 }, 10*time.Second, 5*time.Millisecond)

			// Discarded, and the claim released: a manual redelivery is
			// stored and run again.
			mu.Lock()
			fixed = true
			mu.Unlock()
			require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "flaky")))
			<-done
			require.NoError(t, h.Shutdown(context.Background()))

			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, map[string][]int{"flaky": {1, 2, 3, 1}, "panics": {1, 2, 3}}, attempts)
			byID := map[string]*eachhook.CallbackError{}
			for _, err := range reported {
				var ce *eachhook.CallbackError
				require.ErrorAs(t, err, &ce)
				byID[ce.ID] = ce
			}
			require.Equal(t, 3, byID["flaky"].Attempts)
			require.EqualError(t, byID["flaky"].Err, "downstream unavailable")
			require.Equal(t, 3, byID["panics"].Attempts)
			require.ErrorIs(t, byID["panics"], eachhook.ErrCallbackPanic)
		})
	}
}

// TestShutdownDeadlineKeepsJobsForTheNextStart shuts a Handler down while a
// callback ignores everything but its context and other deliveries wait:
// Shutdown returns at its deadline, and the next Handler on the same
// database runs every delivery without any new request. River does not
// count the interrupted run as an attempt.
func TestShutdownDeadlineKeepsJobsForTheNextStart(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			started := make(chan string, 10)
			h := newHandler(t, b.open(t, durable.Config{Logger: quiet, Workers: 1}), func(h *eachhook.Handler) {
				h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
					started <- s.ID
					<-ctx.Done()
					return ctx.Err()
				})
			})
			for i := range 3 {
				require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "w"+strconv.Itoa(i))))
			}
			first := <-started
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
			require.Empty(t, started, "one worker: nothing else started")

			rec := eachhooktest.NewRecorder()
			newHandler(t, b.open(t, durable.Config{Logger: quiet}), rec.Register)
			wait(t, rec, 3)
			require.Contains(t, attempts(rec), first)
			require.Equal(t, map[string][]int{"w0": {1}, "w1": {1}, "w2": {1}}, attempts(rec))
		})
	}
}

func TestEnqueueFailureIs503(t *testing.T) {
	// A Queue that was shut down (which closed its database) stores
	// nothing: the Handler answers 503 and nothing runs. outage_test.go
	// covers a database that fails while the Queue runs.
	path := t.TempDir() + "/closed.db"
	q, err := durable.OpenSQLite(context.Background(), path, durable.Config{Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, q.Shutdown(context.Background()))
	require.Error(t, q.Enqueue(context.Background(), eachhook.Delivery{ID: "x", Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody("x")}))
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q))
	require.NoError(t, err)
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "x")))
	require.NoError(t, h.Shutdown(context.Background()))
}

func TestTwoClientsShareABacklogWithoutRunningAJobTwice(t *testing.T) {
	b := newBackend(t, "postgres")
	const n = 200
	ctx := context.Background()

	// The backlog is stored before any worker runs.
	seed := b.open(t, durable.Config{Logger: quiet})
	for i := range n {
		id := "b" + strconv.Itoa(i)
		require.NoError(t, seed.Enqueue(ctx, eachhook.Delivery{ID: id, Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody(id)}))
	}
	require.NoError(t, seed.Shutdown(ctx))

	var mu sync.Mutex
	runs := map[string][]string{} // id -> clients that ran it
	all := make(chan struct{}, n*2)
	register := func(client string) func(h *eachhook.Handler) {
		return func(h *eachhook.Handler) {
			h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
				time.Sleep(10 * time.Millisecond)
				mu.Lock()
				runs[s.ID] = append(runs[s.ID], client)
				mu.Unlock()
				all <- struct{}{}
				return nil
			})
		}
	}
	ha := newHandler(t, b.open(t, durable.Config{Logger: quiet, Workers: 4}), register("a"))
	hb := newHandler(t, b.open(t, durable.Config{Logger: quiet, Workers: 4}), register("b"))
	for range n {
		select {
		case <-all:
		case <-time.After(60 * time.Second):
			t.Fatal("backlog not worked")
		}
	}
	require.NoError(t, ha.Shutdown(ctx))
	require.NoError(t, hb.Shutdown(ctx))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, n)
	perClient := map[string]int{}
	for id, clients := range runs {
		require.Len(t, clients, 1, "job %s ran more than once", id)
		perClient[clients[0]]++
	}
	t.Logf("backlog split: %v", perClient)
	require.Positive(t, perClient["a"])
	require.Positive(t, perClient["b"])
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// TestRequestBeforeStartIs503 checks that a request never starts River:
// before Handler.Start a delivery is answered 503, the log says to call
// Start, and nothing is stored; after Start the same delivery is new.
func TestRequestBeforeStartIs503(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			q := newBackend(t, name).open(t, durable.Config{Logger: quiet})
			var logs lockedBuffer
			h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithQueue(q),
				eachhook.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			require.NoError(t, err)
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				require.NoError(t, h.Shutdown(ctx))
			})

			require.Equal(t, http.StatusServiceUnavailable, serve(h, eachhooktest.NewSuccessRequest("/", secret, "early")))
			require.Contains(t, logs.String(), "call Handler.Start")

			require.NoError(t, h.Start(context.Background()))
			// Nothing was stored by the refused request: the id is new.
			queued, err := q.EnqueueOnce(context.Background(), eachhook.Delivery{ID: "early", Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody("early")})
			require.NoError(t, err)
			require.True(t, queued, "the refused request stored a job")
			wait(t, rec, 1)
		})
	}
}

// logRecords is a slog.Handler that keeps the records at or above level.
type logRecords struct {
	level slog.Level
	mu    *sync.Mutex
	recs  *[]slog.Record
}

func (l logRecords) Enabled(_ context.Context, level slog.Level) bool { return level >= l.level }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.recs = append(*l.recs, r)
	return nil
}
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecords) WithGroup(string) slog.Handler      { return l }

// TestMigrationLogsAreDebug: River's migration lines go to the configured
// logger at DEBUG, so that an open at the default level logs none.
func TestMigrationLogsAreDebug(t *testing.T) {
	path := t.TempDir() + "/x.db"
	migrationLines := func(level slog.Level) (n int) {
		var mu sync.Mutex
		var recs []slog.Record
		q, err := durable.OpenSQLite(context.Background(), path, durable.Config{Logger: slog.New(logRecords{level, &mu, &recs})})
		require.NoError(t, err)
		require.NoError(t, q.Shutdown(context.Background()))
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if strings.Contains(strings.ToLower(r.Message), "migrat") {
				require.Equal(t, slog.LevelDebug, r.Level, r.Message)
				n++
			}
		}
		return n
	}
	require.Positive(t, migrationLines(slog.LevelDebug), "the first open migrates, logged at DEBUG to the Config's logger")
	require.Zero(t, migrationLines(slog.LevelInfo), "nothing about migrations at INFO")
	require.Positive(t, migrationLines(slog.LevelDebug), "every open checks the migrations")
}
