package eachhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/deadlettertest"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
)

func TestMemoryDeadLettersConformance(t *testing.T) {
	deadlettertest.Run(t, deadlettertest.Harness{New: func(t *testing.T) eachhook.DeadLetterStore {
		return eachhook.NewMemoryDeadLettersForTest(quiet, 1000, 1<<20)
	}})
}

// logLines collects the records of a JSON slog logger.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records whose msg contains msg.
func (l *logLines) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if strings.Contains(rec["msg"].(string), msg) {
			out = append(out, rec)
		}
	}
	return out
}

func TestMemoryDeadLettersEvictTheOldestLogged(t *testing.T) {
	var logs logLines
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx := context.Background()
	at := time.Now()
	dl := func(id string, age time.Duration, body string) eachhook.DeadLetter {
		return eachhook.DeadLetter{ID: id, Status: "success", Reason: "callback_failed", Body: []byte(body), At: at.Add(-age)}
	}

	t.Run("Count", func(t *testing.T) {
		s := eachhook.NewMemoryDeadLettersForTest(log, 2, 1<<20)
		require.NoError(t, s.Add(ctx, dl("old", 3*time.Second, "{}")))
		require.NoError(t, s.Add(ctx, dl("mid", 2*time.Second, "{}")))
		require.NoError(t, s.Add(ctx, dl("new", time.Second, "{}")))
		list, err := s.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"mid", "new"}, ids(list))
		recs := logs.records(t, "dead letter evicted")
		require.Len(t, recs, 1)
		require.Equal(t, "ERROR", recs[0]["level"])
		require.Equal(t, "old", recs[0]["id"])
	})
	t.Run("Bytes", func(t *testing.T) {
		s := eachhook.NewMemoryDeadLettersForTest(log, 100, 10)
		require.NoError(t, s.Add(ctx, dl("b1", 3*time.Second, "123456")))
		require.NoError(t, s.Add(ctx, dl("b2", 2*time.Second, "1234")))
		require.NoError(t, s.Add(ctx, dl("b3", time.Second, "12")))
		list, err := s.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"b2", "b3"}, ids(list))
		// A body larger than the bound alone is still kept, as the newest.
		require.NoError(t, s.Add(ctx, dl("huge", 0, "0123456789abcdef")))
		list, err = s.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"huge"}, ids(list))
		var evicted []string
		for _, r := range logs.records(t, "dead letter evicted") {
			require.Equal(t, "ERROR", r["level"])
			evicted = append(evicted, r["id"].(string))
		}
		require.Equal(t, []string{"old", "b1", "b2", "b3"}, evicted)
	})
}

func ids(list []eachhook.DeadLetter) []string {
	out := make([]string, len(list))
	for i, dl := range list {
		out[i] = dl.ID
	}
	return out
}

// errorsSeen collects what the error handler received.
type errorsSeen struct {
	mu   sync.Mutex
	errs []error
}

func (e *errorsSeen) handler(_ context.Context, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *errorsSeen) get() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// deadLetters returns h's dead letters, failing the test on error.
func deadLetters(t *testing.T, h *eachhook.Handler) []eachhook.DeadLetter {
	t.Helper()
	list, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	return list
}

func TestFailingCallbackBecomesADeadLetterThatReplays(t *testing.T) {
	var seen errorsSeen
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(2, time.Millisecond), eachhook.WithErrorHandler(seen.handler))
	var fail atomic.Bool
	fail.Store(true)
	var runs atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		runs.Add(1)
		if fail.Load() {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	body := []byte(`{"id":"dl-1","status":"success","output":"https://x/y.png"}`)
	require.Equal(t, 200, serve(h, signed(body)).Code)
	require.Eventually(t, func() bool { return len(deadLetters(t, h)) == 1 }, 5*time.Second, time.Millisecond)

	dl := deadLetters(t, h)[0]
	require.Equal(t, "dl-1", dl.ID)
	require.Equal(t, "success", dl.Status)
	require.Equal(t, "callback_failed", dl.Reason)
	require.Equal(t, body, dl.Body)
	require.Equal(t, 2, dl.Attempts)
	require.Equal(t, "downstream unavailable", dl.Err)
	require.False(t, dl.At.IsZero())
	require.Equal(t, int32(2), runs.Load())
	require.Eventually(t, func() bool { return len(seen.get()) == 1 }, 5*time.Second, time.Millisecond)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, seen.get()[0], &ce)
	require.Equal(t, "dl-1", ce.ID)
	require.Equal(t, 2, ce.Attempts)

	// A replay that fails again is a dead letter again, reported again.
	require.NoError(t, h.Replay(context.Background(), "dl-1"))
	require.Eventually(t, func() bool { return len(seen.get()) == 2 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(4), runs.Load())
	list := deadLetters(t, h)
	require.Len(t, list, 1)
	require.Equal(t, 2, list[0].Attempts)
	require.False(t, list[0].At.Before(dl.At))

	// A replay that succeeds removes it.
	fail.Store(false)
	require.NoError(t, h.Replay(context.Background(), "dl-1"))
	require.Eventually(t, func() bool { return len(deadLetters(t, h)) == 0 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(5), runs.Load())
	require.ErrorIs(t, h.Replay(context.Background(), "dl-1"), eachhook.ErrNoDeadLetter)
	require.ErrorIs(t, h.Discard(context.Background(), "dl-1"), eachhook.ErrNoDeadLetter)
	drain(t, h)
	require.Len(t, seen.get(), 2, "the error handler is called once per dead letter")
}

func TestReplayedDeliveryIsDeduplicatedAfterwards(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	var seen errorsSeen
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(1, 0), eachhook.WithStore(store), eachhook.WithErrorHandler(seen.handler))
	var fail atomic.Bool
	fail.Store(true)
	var runs atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		runs.Add(1)
		if fail.Load() {
			return errors.New("no")
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "dedupe-after-replay")).Code)
	require.Eventually(t, func() bool { return len(seen.get()) == 1 }, 5*time.Second, time.Millisecond)
	fail.Store(false)
	require.NoError(t, h.Replay(context.Background(), "dedupe-after-replay"))
	require.Eventually(t, func() bool { return len(deadLetters(t, h)) == 0 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "dedupe-after-replay")).Code)
	drain(t, h)
	require.Equal(t, int32(2), runs.Load(), "the redelivery after a successful replay is a duplicate")
}

func TestNoCallbackIsADeadLetterReplayedAndDiscardedOnAnotherReplica(t *testing.T) {
	claims := eachhook.NewMemoryStore()
	defer claims.Close()
	shared := eachhook.NewMemoryDeadLettersForTest(quiet, 1000, 1<<20)
	var seen errorsSeen
	// Replica a has no OnFailed; replica b has it.
	a := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(claims), eachhook.WithDeadLetters(shared), eachhook.WithErrorHandler(seen.handler))
	a.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	b := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(claims), eachhook.WithDeadLetters(shared))
	var failures atomic.Int32
	b.OnFailed(func(ctx context.Context, f *eachhook.Failure) error { failures.Add(1); return nil })

	require.Equal(t, 200, serve(a, eachhooktest.NewFailedRequest("/", secret, "nocb-1")).Code)
	require.Equal(t, 200, serve(a, eachhooktest.NewFailedRequest("/", secret, "nocb-2")).Code)
	list := deadLetters(t, b)
	require.Equal(t, []string{"nocb-1", "nocb-2"}, ids(list))
	require.Equal(t, "no_callback", list[0].Reason)
	require.Equal(t, "failed", list[0].Status)
	require.Zero(t, list[0].Attempts)
	require.Len(t, seen.get(), 2, "the error handler is called once per dead letter")
	var ce *eachhook.CallbackError
	require.ErrorAs(t, seen.get()[0], &ce)
	require.Equal(t, "nocb-1", ce.ID)
	require.Zero(t, ce.Attempts)

	// a cannot replay it: it still has no callback for the status.
	err := a.Replay(context.Background(), "nocb-1")
	require.Error(t, err)
	require.NotErrorIs(t, err, eachhook.ErrNoDeadLetter)
	require.Len(t, deadLetters(t, a), 2)

	// b replays one and discards the other.
	require.NoError(t, b.Replay(context.Background(), "nocb-1"))
	require.Eventually(t, func() bool { return failures.Load() == 1 && len(deadLetters(t, a)) == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, b.Discard(context.Background(), "nocb-2"))
	require.Empty(t, deadLetters(t, a))
	require.ErrorIs(t, a.Discard(context.Background(), "nocb-2"), eachhook.ErrNoDeadLetter)
	require.ErrorIs(t, a.Replay(context.Background(), "nocb-2"), eachhook.ErrNoDeadLetter)
	drain(t, b)
	require.Equal(t, int32(1), failures.Load())
	require.Len(t, seen.get(), 2)
}

func TestReplayAfterShutdown(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(1, 0))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return errors.New("no") })
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "late")).Code)
	require.Eventually(t, func() bool { return len(deadLetters(t, h)) == 1 }, 5*time.Second, time.Millisecond)
	drain(t, h)
	require.ErrorIs(t, h.Replay(context.Background(), "late"), eachhook.ErrShutdown)
	require.Len(t, deadLetters(t, h), 1, "a replay that was not queued keeps the dead letter")
}

// brokenDeadLetters is a DeadLetterStore whose Add fails while broken is
// set; it counts the Adds that failed.
type brokenDeadLetters struct {
	eachhook.DeadLetterStore
	broken atomic.Bool
	failed atomic.Int32
}

var errDeadLettersDown = errors.New("dead-letter store down")

func (s *brokenDeadLetters) Add(ctx context.Context, dl eachhook.DeadLetter) error {
	if s.broken.Load() {
		s.failed.Add(1)
		return errDeadLettersDown
	}
	return s.DeadLetterStore.Add(ctx, dl)
}

func healthOf(h *eachhook.Handler) (int, string) {
	w := serve(h.Health(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return w.Code, w.Body.String()
}

// A status kept as a dead letter before the 200 is answered 503 while the
// dead-letter store fails, its claim released: the sender's retries are
// kept once the store works again, 10 of 10.
func TestDeadLetterStoreFailureBeforeThe200Is503(t *testing.T) {
	var seen errorsSeen
	dls := &brokenDeadLetters{DeadLetterStore: eachhook.NewMemoryDeadLettersForTest(quiet, 1000, 1<<20)}
	dls.broken.Store(true)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithDeadLetters(dls), eachhook.WithErrorHandler(seen.handler))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	send := func(i int) *httptest.ResponseRecorder {
		if i%2 == 0 {
			return serve(h, signed(predictionBody("odd-"+strconv.Itoa(i), "exploded"))) // unknown_status
		}
		return serve(h, eachhooktest.NewFailedRequest("/", secret, "odd-"+strconv.Itoa(i))) // no_callback
	}
	for i := range 10 {
		w := send(i)
		require.Equal(t, 503, w.Code)
		require.Equal(t, "10", w.Header().Get("Retry-After"))
	}
	require.Equal(t, int32(10), dls.failed.Load())
	require.Empty(t, seen.get(), "nothing was kept, so nothing is reported")
	code, body := healthOf(h)
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"dead-letter store failed"}`, body)

	dls.broken.Store(false)
	for i := range 10 {
		require.Equal(t, 200, send(i).Code, "the claim was released: the retry is processed")
	}
	require.Len(t, deadLetters(t, h), 10)
	require.Len(t, seen.get(), 10)
	code, _ = healthOf(h)
	require.Equal(t, 200, code)
	drain(t, h)
}

// A dead letter made after the 200 is stored again until its store takes
// it; meanwhile its id is claimable, so a resend runs it (and a success
// deletes the held dead letter), and Health answers 503.
func TestDeadLetterStoreFailureAfterThe200IsRetried(t *testing.T) {
	var seen errorsSeen
	var lost atomic.Int32
	dls := &brokenDeadLetters{DeadLetterStore: eachhook.NewMemoryDeadLettersForTest(quiet, 1000, 1<<20)}
	dls.broken.Store(true)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithDeadLetters(dls), eachhook.WithRetry(1, time.Millisecond),
		eachhook.WithErrorHandler(seen.handler),
		eachhook.WithObserver(observe.Observer{DeadLetterLost: func(context.Context, observe.DeliveryInfo, error) { lost.Add(1) }}))
	var fail atomic.Bool
	fail.Store(true)
	var runs atomic.Int32
	h.OnSuccess(func(context.Context, *eachhook.Success) error {
		runs.Add(1)
		if fail.Load() {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	for i := range 10 {
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "held-"+strconv.Itoa(i))).Code)
	}
	require.Eventually(t, func() bool { return len(seen.get()) == 10 }, 5*time.Second, time.Millisecond)
	require.Empty(t, deadLetters(t, h))
	code, body := healthOf(h)
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"dead-letter store failed"}`, body)

	// A resend of a held one runs; its success deletes the held dead letter.
	fail.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "held-0")).Code)
	require.Eventually(t, func() bool { return runs.Load() == 11 }, 5*time.Second, time.Millisecond)

	dls.broken.Store(false)
	require.Eventually(t, func() bool { return len(deadLetters(t, h)) == 9 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { code, _ := healthOf(h); return code == 200 }, 5*time.Second, time.Millisecond)
	drain(t, h)
	require.Equal(t, int32(11), runs.Load())
	require.Len(t, seen.get(), 10)
	require.Zero(t, lost.Load())
	var want []string
	for i := 1; i < 10; i++ {
		want = append(want, "held-"+strconv.Itoa(i))
	}
	require.ElementsMatch(t, want, ids(deadLetters(t, h)))
}

// A dead letter whose store still fails at Shutdown is lost, never
// silently: logged at error level and told to the observer.
func TestDeadLetterLostAtShutdownIsLoggedAndObserved(t *testing.T) {
	var logs logLines
	var lost []string
	var mu sync.Mutex
	dls := &brokenDeadLetters{DeadLetterStore: eachhook.NewMemoryDeadLettersForTest(quiet, 1000, 1<<20)}
	dls.broken.Store(true)
	gaveUp := make(chan struct{})
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithDeadLetters(dls), eachhook.WithRetry(1, 0),
		eachhook.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		eachhook.WithObserver(observe.Observer{
			GaveUp: func(context.Context, observe.DeliveryInfo, int, error) { close(gaveUp) },
			DeadLetterLost: func(_ context.Context, d observe.DeliveryInfo, err error) {
				mu.Lock()
				lost = append(lost, d.ID)
				mu.Unlock()
				require.ErrorIs(t, err, errDeadLettersDown)
			},
		}))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return errors.New("no") })
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "doomed")).Code)
	<-gaveUp
	drain(t, h)
	mu.Lock()
	require.Equal(t, []string{"doomed"}, lost)
	mu.Unlock()
	recs := logs.records(t, "dead letter lost")
	require.Len(t, recs, 1)
	require.Equal(t, "ERROR", recs[0]["level"])
	require.Equal(t, "doomed", recs[0]["id"])
}

// Of 50 concurrent Replays of one dead letter, one queues it and the
// others return ErrInProgress: its callback runs once.
func TestConcurrentReplaysRunOnce(t *testing.T) {
	var seen errorsSeen
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(1, 0), eachhook.WithErrorHandler(seen.handler))
	var runs atomic.Int32
	gate := make(chan struct{})
	h.OnSuccess(func(context.Context, *eachhook.Success) error {
		if runs.Add(1) == 1 {
			return errors.New("first run fails")
		}
		<-gate
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "replayed")).Code)
	require.Eventually(t, func() bool { return len(seen.get()) == 1 }, 5*time.Second, time.Millisecond)
	errs := make([]error, 50)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = h.Replay(context.Background(), "replayed") })
	}
	wg.Wait()
	close(gate)
	drain(t, h)
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
	require.Empty(t, deadLetters(t, h))
}
