package eachhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// obsRecorder is an Observer that records every call.
type obsRecorder struct {
	mu         sync.Mutex
	refusals   []observe.Refusal
	duplicates []string
	ignored    []string
	accepted   []string
	started    []observe.CallbackRun
	finished   []observe.CallbackRun
	gaveUp     []*eachhook.CallbackError
	depth      int
	minDepth   int
	maxDepth   int
	capacity   int
	requestVal []any // the value of reqKey in each run's Request context
	callbackV  []any // the value of startedKey in each callback's context
}

type reqKey struct{}
type startedKey struct{}

func (rec *obsRecorder) observer() observe.Observer {
	return observe.Observer{
		Refused: func(ctx context.Context, r observe.Refusal) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.refusals = append(rec.refusals, r)
		},
		Duplicate: func(ctx context.Context, d observe.DeliveryInfo) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.duplicates = append(rec.duplicates, d.ID)
		},
		Ignored: func(ctx context.Context, d observe.DeliveryInfo) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.ignored = append(rec.ignored, d.ID+"/"+d.Status)
		},
		Accepted: func(ctx context.Context, d observe.DeliveryInfo) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.accepted = append(rec.accepted, d.ID)
		},
		CallbackStarted: func(ctx context.Context, run observe.CallbackRun) context.Context {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.started = append(rec.started, run)
			rec.requestVal = append(rec.requestVal, run.Request.Value(reqKey{}))
			return context.WithValue(ctx, startedKey{}, run.ID)
		},
		CallbackFinished: func(ctx context.Context, run observe.CallbackRun) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.finished = append(rec.finished, run)
		},
		GaveUp: func(ctx context.Context, d observe.DeliveryInfo, attempts int, err error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.gaveUp = append(rec.gaveUp, &eachhook.CallbackError{ID: d.ID, Status: d.Status, Attempts: attempts, Err: err})
		},
		QueueChanged: func(delta, capacity int) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.depth += delta
			rec.minDepth = min(rec.minDepth, rec.depth)
			rec.maxDepth = max(rec.maxDepth, rec.depth)
			rec.capacity = capacity
		},
	}
}

func (rec *obsRecorder) reasons() map[observe.Reason]int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	m := map[observe.Reason]int{}
	for _, r := range rec.refusals {
		m[r.Reason]++
	}
	return m
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestObserverSeesEveryOutcome runs one request of each kind and checks
// that the observer saw exactly one matching call per request, and every
// callback run.
func TestObserverSeesEveryOutcome(t *testing.T) {
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &flakyStore{Store: mem}
	lookup := func(ctx context.Context, id string) ([]string, error) {
		if id == "lookup-fails" {
			return nil, errors.New("db down")
		}
		return nil, nil
	}
	rec := &obsRecorder{}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithSecretLookup(lookup), eachhook.WithStore(st),
		eachhook.WithWorkers(1), eachhook.WithQueueSize(1), eachhook.WithMaxBodyBytes(4096),
		eachhook.WithRetry(2, time.Millisecond), eachhook.WithLogger(quiet), eachhook.WithObserver(rec.observer()))
	require.NoError(t, err)

	release := make(chan struct{})
	started := make(chan string, 10)
	var flakyRuns int
	var ctxMu sync.Mutex
	var ctxMismatch []string
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if ctx.Value(startedKey{}) != s.ID {
			ctxMu.Lock()
			ctxMismatch = append(ctxMismatch, s.ID)
			ctxMu.Unlock()
		}
		started <- s.ID
		switch s.ID {
		case "block":
			<-release
		case "flaky":
			flakyRuns++ // one worker: no race
			if flakyRuns == 1 {
				return errors.New("downstream unavailable")
			}
		case "panics":
			panic("always")
		}
		return nil
	})

	withCtx := func(r *http.Request) *http.Request {
		return r.WithContext(context.WithValue(r.Context(), reqKey{}, "req-"+r.Header.Get(signature.Header)[:8]))
	}
	status := func(want int, r *http.Request) {
		t.Helper()
		require.Equal(t, want, serve(h, r).Code)
	}
	badType := signed(eachhooktest.SuccessBody("x"))
	badType.Header.Set("Content-Type", "text/plain")
	unreadable := signed(eachhooktest.SuccessBody("x"))
	unreadable.Body = io.NopCloser(failingReader{})
	unreadable.ContentLength = -1

	status(405, httptest.NewRequest(http.MethodGet, "/", nil))
	status(415, badType)
	status(413, signed(bytes.Repeat([]byte("x"), 5000)))
	status(400, unreadable)
	status(401, eachhooktest.NewSuccessRequest("/", "forged", "forged-1"))
	status(401, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody("old"), eachhooktest.TimestampScheme, time.Now().Add(-time.Hour)))
	status(503, eachhooktest.NewSuccessRequest("/", "forged", "lookup-fails"))
	status(400, signed([]byte(`["not an object"]`)))
	status(200, signed([]byte(`{"id":"p0","status":"processing"}`)))
	st.broken.Store(true)
	status(503, signed(eachhooktest.SuccessBody("store-down")))
	st.broken.Store(false)

	blockReq := withCtx(signed(eachhooktest.SuccessBody("block")))
	status(200, blockReq)
	require.Equal(t, "block", <-started) // the only worker is busy
	status(200, signed(eachhooktest.SuccessBody("queued")))
	status(503, signed(eachhooktest.SuccessBody("no-room")))
	status(200, signed(eachhooktest.SuccessBody("block"))) // duplicate
	close(release)
	require.Equal(t, "queued", <-started)
	status(200, signed(eachhooktest.SuccessBody("flaky")))
	require.Equal(t, "flaky", <-started)
	require.Equal(t, "flaky", <-started)
	status(200, signed(eachhooktest.SuccessBody("panics")))
	drain(t, h)
	status(503, signed(eachhooktest.SuccessBody("late")))

	require.Equal(t, map[observe.Reason]int{
		observe.ReasonMethod:     1,
		observe.ReasonMediaType:  1,
		observe.ReasonTooLarge:   1,
		observe.ReasonUnreadable: 1,
		observe.ReasonSignature:  1,
		observe.ReasonTimestamp:  1,
		observe.ReasonLookup:     1,
		observe.ReasonMalformed:  1,
		observe.ReasonStore:      1,
		observe.ReasonQueueFull:  1,
		observe.ReasonShutdown:   1,
	}, rec.reasons())

	ctxMu.Lock()
	require.Empty(t, ctxMismatch, "callbacks get the context CallbackStarted returned")
	ctxMu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	byReason := map[observe.Reason]observe.Refusal{}
	for _, r := range rec.refusals {
		byReason[r.Reason] = r
	}
	require.Equal(t, 405, byReason[observe.ReasonMethod].StatusCode)
	require.Equal(t, 413, byReason[observe.ReasonTooLarge].StatusCode)
	require.ErrorIs(t, byReason[observe.ReasonSignature].Err, signature.ErrNoSecret)
	require.Empty(t, byReason[observe.ReasonSignature].ID, "an unverified id is never passed")
	require.Empty(t, byReason[observe.ReasonLookup].ID, "an unverified id is never passed")
	require.ErrorIs(t, byReason[observe.ReasonTimestamp].Err, signature.ErrTimestampOutOfRange)
	require.ErrorIs(t, byReason[observe.ReasonMalformed].Err, eachhook.ErrMalformedPayload)
	require.ErrorIs(t, byReason[observe.ReasonStore].Err, errStoreDown)
	require.Equal(t, "store-down", byReason[observe.ReasonStore].ID)
	require.Equal(t, observe.Refusal{Reason: observe.ReasonQueueFull, StatusCode: 503, ID: "no-room"}, byReason[observe.ReasonQueueFull])
	require.Equal(t, 503, byReason[observe.ReasonShutdown].StatusCode)

	require.Equal(t, []string{"p0/processing"}, rec.ignored)
	require.Equal(t, []string{"block"}, rec.duplicates)
	require.Equal(t, []string{"block", "queued", "flaky", "panics"}, rec.accepted)

	type attempt struct {
		id  string
		n   int
		err string
	}
	var runs []attempt
	for i, r := range rec.finished {
		require.Equal(t, rec.started[i].ID, r.ID)
		require.Equal(t, rec.started[i].Attempt, r.Attempt)
		require.Equal(t, eachhook.StatusSuccess, r.Status)
		require.GreaterOrEqual(t, r.Duration, time.Duration(0))
		e := ""
		if r.Err != nil {
			e = r.Err.Error()
		}
		runs = append(runs, attempt{r.ID, r.Attempt, e})
	}
	require.Equal(t, []attempt{
		{"block", 1, ""}, {"queued", 1, ""},
		{"flaky", 1, "downstream unavailable"}, {"flaky", 2, ""},
		{"panics", 1, "eachhook: callback panicked: always"}, {"panics", 2, "eachhook: callback panicked: always"},
	}, runs)
	require.ErrorIs(t, rec.finished[4].Err, eachhook.ErrCallbackPanic)
	require.Equal(t, "req-"+blockReq.Header.Get(signature.Header)[:8], rec.requestVal[0], "CallbackRun.Request is the request's context")
	require.Nil(t, rec.requestVal[1])

	require.Len(t, rec.gaveUp, 1)
	require.Equal(t, "panics", rec.gaveUp[0].ID)
	require.Equal(t, 2, rec.gaveUp[0].Attempts)
	require.ErrorIs(t, rec.gaveUp[0], eachhook.ErrCallbackPanic)

	require.Equal(t, 0, rec.depth, "every delivery left the queue")
	require.Equal(t, 0, rec.minDepth, "a delivery's +1 comes before its -1")
	// 2 while no-room was counted in, then out again on finding no room.
	require.Equal(t, 2, rec.maxDepth)
	require.Equal(t, 1, rec.capacity)
}

func TestObserverSeesDeliveriesShutdownDropped(t *testing.T) {
	rec := &obsRecorder{}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(1, 0),
		eachhook.WithLogger(quiet), eachhook.WithObserver(rec.observer()))
	require.NoError(t, err)
	started := make(chan struct{})
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "running")).Code)
	<-started
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "never-started")).Code)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.gaveUp) == 2
	}, 5*time.Second, time.Millisecond)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	byID := map[string]*eachhook.CallbackError{}
	for _, e := range rec.gaveUp {
		byID[e.ID] = e
	}
	require.Equal(t, 0, byID["never-started"].Attempts)
	require.ErrorIs(t, byID["never-started"], observe.ErrNotRun)
	require.Equal(t, 1, byID["running"].Attempts)
	require.ErrorIs(t, byID["running"], context.Canceled)
	require.Equal(t, 0, rec.depth)
}

// pingStore is a Store with a Ping that fails while down is set.
type pingStore struct {
	eachhook.Store
	mu   sync.Mutex
	down bool
}

func (s *pingStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("dial tcp 10.0.0.1:6379: connection refused")
	}
	return ctx.Err()
}

func TestHealth(t *testing.T) {
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &pingStore{Store: mem}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithStore(st), eachhook.WithWorkers(1),
		eachhook.WithQueueSize(1), eachhook.WithLogger(logger))
	require.NoError(t, err)
	health := h.Health()
	check := func(wantCode int, wantBody string) {
		t.Helper()
		w := serve(health, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		require.Equal(t, wantCode, w.Code)
		require.Equal(t, "application/json", w.Header().Get("Content-Type"))
		require.Equal(t, wantBody+"\n", w.Body.String())
	}

	check(200, `{"status":"ok"}`)
	head := serve(health, httptest.NewRequest(http.MethodHead, "/healthz", nil))
	require.Equal(t, 200, head.Code)
	post := serve(health, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	require.Equal(t, 405, post.Code)
	require.Equal(t, "GET, HEAD", post.Header().Get("Allow"))

	st.mu.Lock()
	st.down = true
	st.mu.Unlock()
	check(503, `{"status":"unavailable","reason":"store unreachable"}`)
	logMu.Lock()
	require.Contains(t, logs.String(), "connection refused", "the ping error is logged")
	logMu.Unlock()
	st.mu.Lock()
	st.down = false
	st.mu.Unlock()
	check(200, `{"status":"ok"}`)

	release := make(chan struct{})
	started := make(chan struct{}, 2)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		started <- struct{}{}
		<-release
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "a")).Code)
	<-started
	check(200, `{"status":"ok"}`) // the worker is busy, the queue empty
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "b")).Code)
	check(503, `{"status":"unavailable","reason":"queue full"}`)
	close(release)
	<-started
	check(200, `{"status":"ok"}`)

	drain(t, h)
	check(503, `{"status":"unavailable","reason":"shutting down"}`)
}

// TestPayloadLogging scans every log line a run writes at debug level:
// the verified body is there with its id and status, and nothing of a
// forged body, of the secret or of any signature is anywhere.
func TestPayloadLogging(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithLogger(logger), eachhook.WithPayloadLogging())
	c := newCalls()
	c.register(h)

	good := eachhooktest.SuccessBody("verified-id")
	goodReq := signed(good)
	goodReq.Header.Set(signature.HeaderSecret, secret) // the legacy header, sent beside a signature
	require.Equal(t, 200, serve(h, goodReq).Code)
	forged := []byte(`{"id":"forged-id","status":"success","output":"FORGED-MARKER"}`)
	forgedReq := eachhooktest.NewRequest("/", "attacker-secret", forged, eachhooktest.TimestampScheme, time.Now())
	forgedReq.Header.Set(signature.HeaderSecret, "attacker-secret")
	require.Equal(t, 401, serve(h, forgedReq).Code)
	unsigned := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"id":"unsigned-id","output":"UNSIGNED-MARKER"}`))
	require.Equal(t, 401, serve(h, unsigned).Code)
	failed := eachhooktest.FailedBody("failed-id")
	require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", secret, failed, eachhooktest.TimestampScheme, time.Now())).Code)
	drain(t, h)

	logMu.Lock()
	defer logMu.Unlock()
	var payloads []map[string]any
	forbidden := []string{
		secret, "attacker-secret", "forged-id", "FORGED-MARKER", "UNSIGNED-MARKER", "unsigned-id",
		goodReq.Header.Get(signature.Header), forgedReq.Header.Get(signature.Header),
		strings.TrimPrefix(forgedReq.Header.Get(signature.Header), "sha256="),
	}
	// Header names may appear in an explanation ("the X-Webhook-Signature
	// header is missing"), never as a logged header.
	for _, name := range []string{signature.Header, signature.HeaderSecret, signature.HeaderTimestamp} {
		forbidden = append(forbidden, name+": ", `"`+name+`":`, name+"=")
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.NotEmpty(t, lines)
	for _, line := range lines {
		for _, f := range forbidden {
			require.NotContains(t, line, f)
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec["msg"] == "eachhook: verified payload" {
			payloads = append(payloads, rec)
		}
	}
	require.Len(t, payloads, 2)
	require.Equal(t, "DEBUG", payloads[0]["level"])
	require.Equal(t, "verified-id", payloads[0]["id"])
	require.Equal(t, "success", payloads[0]["status"])
	require.Equal(t, string(good), payloads[0]["body"])
	require.Equal(t, "failed-id", payloads[1]["id"])
	require.Equal(t, "failed", payloads[1]["status"])
	require.Equal(t, string(failed), payloads[1]["body"])
}

func TestPayloadLoggingIsOffByDefault(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithLogger(logger))
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, signed(eachhooktest.SuccessBody("quiet-id"))).Code)
	require.Equal(t, 200, serve(h, signed(eachhooktest.SuccessBody("quiet-id"))).Code)
	drain(t, h)
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logs.String(), "duplicate delivery", "debug logging is on")
	require.NotContains(t, logs.String(), eachhooktest.SeedOutput)
}
