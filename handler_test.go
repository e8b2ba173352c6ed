package eachhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "whsec_test_secret"

var quiet = slog.New(slog.DiscardHandler)

// newHandler returns a Handler with test defaults and shuts it down at the
// end of the test, requiring that the shutdown drained cleanly.
func newHandler(t *testing.T, opts ...eachhook.Option) *eachhook.Handler {
	t.Helper()
	base := []eachhook.Option{eachhook.WithLogger(quiet), eachhook.WithRetry(3, time.Millisecond)}
	h, err := eachhook.New(append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	return h
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// drain shuts h down and waits for every accepted callback.
func drain(t *testing.T, h *eachhook.Handler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
}

func signed(body []byte) *http.Request {
	return eachhooktest.NewRequest("/webhook", secret, body, eachhooktest.BodyScheme, time.Now())
}

func TestNewRejectsUnworkableConfig(t *testing.T) {
	lookup := func(context.Context, string) ([]string, error) { return nil, nil }
	cases := map[string][]eachhook.Option{
		"no secret":              nil,
		"empty secret":           {eachhook.WithSecret("")},
		"one empty among others": {eachhook.WithSecret("a", "")},
		"WithSecret()":           {eachhook.WithSecret()},
		"zero workers":           {eachhook.WithSecret(secret), eachhook.WithWorkers(0)},
		"zero queue":             {eachhook.WithSecret(secret), eachhook.WithQueueSize(0)},
		"zero body limit":        {eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(0)},
		"ttl below tolerance":    {eachhook.WithSecret(secret), eachhook.WithTolerance(time.Hour), eachhook.WithDedupeTTL(time.Minute)},
		"zero tolerance":         {eachhook.WithSecret(secret), eachhook.WithTolerance(0)},
		"zero attempts":          {eachhook.WithSecret(secret), eachhook.WithRetry(0, time.Second)},
		"negative backoff":       {eachhook.WithSecret(secret), eachhook.WithRetry(1, -time.Second)},
		"insecure with secret":   {eachhook.WithInsecureSkipVerification(), eachhook.WithSecret(secret)},
		"insecure with lookup":   {eachhook.WithInsecureSkipVerification(), eachhook.WithSecretLookup(lookup)},
		"nil lookup":             {eachhook.WithSecretLookup(nil)},
		"nil store":              {eachhook.WithSecret(secret), eachhook.WithStore(nil)},
		"nil logger":             {eachhook.WithSecret(secret), eachhook.WithLogger(nil)},
		"nil clock":              {eachhook.WithSecret(secret), eachhook.WithClock(nil)},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := eachhook.New(opts...)
			require.ErrorIs(t, err, eachhook.ErrInvalidOption)
			require.Nil(t, h)
		})
	}
}

func TestServeHTTPResponses(t *testing.T) {
	now := time.Now()
	success := eachhooktest.SuccessBody("pred-1")
	withHeader := func(r *http.Request, k, v string) *http.Request { r.Header.Set(k, v); return r }
	withoutHeader := func(r *http.Request, k string) *http.Request { r.Header.Del(k); return r }
	tampered := func() *http.Request {
		r := signed(success)
		r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(success, []byte("pred-1"), []byte("pred-2"), 1)))
		return r
	}
	cases := []struct {
		name       string
		req        *http.Request
		want       int
		successes  int
		failures   int
		retryAfter bool
	}{
		{name: "GET", req: httptest.NewRequest(http.MethodGet, "/webhook", nil), want: 405},
		{name: "text/plain", req: withHeader(signed(success), "Content-Type", "text/plain"), want: 415},
		{name: "form", req: withHeader(signed(success), "Content-Type", "application/x-www-form-urlencoded"), want: 415},
		{name: "json with charset", req: withHeader(signed(success), "Content-Type", "application/json; charset=utf-8"), want: 200, successes: 1},
		{name: "no content type", req: withoutHeader(signed(success), "Content-Type"), want: 200, successes: 1},
		{name: "vendor +json", req: withHeader(signed(success), "Content-Type", "application/vnd.eachlabs+json"), want: 200, successes: 1},
		{name: "too large", req: signed(bytes.Repeat([]byte(" "), 2049)), want: 413},
		{name: "missing signature", req: withoutHeader(signed(success), signature.Header), want: 401},
		{name: "malformed signature", req: withHeader(signed(success), signature.Header, "xyz"), want: 401},
		{name: "wrong secret", req: eachhooktest.NewRequest("/", "other", success, eachhooktest.BodyScheme, now), want: 401},
		{name: "tampered body", req: tampered(), want: 401},
		{name: "legacy plain secret header only", req: withHeader(withoutHeader(signed(success), signature.Header), signature.HeaderSecret, secret), want: 401},
		{name: "timestamp scheme", req: eachhooktest.NewRequest("/", secret, success, eachhooktest.TimestampScheme, now), want: 200, successes: 1},
		{name: "timestamp too old", req: eachhooktest.NewRequest("/", secret, success, eachhooktest.TimestampScheme, now.Add(-16*time.Minute)), want: 401},
		{name: "timestamp too new", req: eachhooktest.NewRequest("/", secret, success, eachhooktest.TimestampScheme, now.Add(16*time.Minute)), want: 401},
		{name: "timestamp header removed", req: withoutHeader(eachhooktest.NewRequest("/", secret, success, eachhooktest.TimestampScheme, now), signature.HeaderTimestamp), want: 401},
		{name: "signed not JSON", req: signed([]byte("not json")), want: 400},
		{name: "signed JSON array", req: signed([]byte(`[1,2]`)), want: 400},
		{name: "no id", req: signed([]byte(`{"status":"success"}`)), want: 400},
		{name: "numeric id", req: signed([]byte(`{"id":5,"status":"success"}`)), want: 400},
		{name: "processing status", req: signed([]byte(`{"id":"p","status":"processing"}`)), want: 200},
		{name: "exec_id form", req: signed([]byte(`{"exec_id":"e1","status":"succeeded"}`)), want: 200, successes: 1},
		{name: "kind cannot be told", req: signed([]byte(`{"status":"succeeded","flow_id":"f"}`)), want: 400},
		{name: "failed", req: signed(eachhooktest.FailedBody("pred-f")), want: 200, failures: 1},
		{name: "success", req: signed(success), want: 200, successes: 1},
		{name: "extra fields", req: signed([]byte(`{"id":"x","status":"success","output":[1],"new_field":{"a":1}}`)), want: 200, successes: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(2048))
			rec := eachhooktest.NewRecorder()
			rec.Register(h)
			w := serve(h, tc.req)
			require.Equal(t, tc.want, w.Code, w.Body.String())
			if tc.want == 405 {
				require.Equal(t, "POST", w.Header().Get("Allow"))
			}
			if tc.want == 401 {
				require.Equal(t, "unauthorized\n", w.Body.String())
			}
			drain(t, h)
			counts := rec.Counts()
			require.Equal(t, tc.successes, counts[eachhooktest.KindSuccess], "successes")
			require.Equal(t, tc.failures, counts[eachhooktest.KindFailed], "failures")
		})
	}
}

func TestChunkedBodyOverLimit(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(100))
	body := bytes.Repeat([]byte("a"), 101)
	r := signed(body)
	r.ContentLength = -1 // as for a chunked request
	require.Equal(t, 413, serve(h, r).Code)

	ok := eachhooktest.SuccessBody("p")
	h2 := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(int64(len(ok))))
	rec := eachhooktest.NewRecorder()
	rec.Register(h2)
	r = signed(ok)
	r.ContentLength = -1
	require.Equal(t, 200, serve(h2, r).Code)
	drain(t, h2)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestAfterShutdown503EvenUnsigned(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	drain(t, h)
	r := signed(eachhooktest.SuccessBody("late"))
	r.Header.Del(signature.Header)
	w := serve(h, r)
	require.Equal(t, 503, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Equal(t, 503, serve(h, signed(eachhooktest.SuccessBody("late"))).Code)
	require.Empty(t, rec.Runs())
}

func TestSuccessFields(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "abc123-def456-ghi789")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewFailedRequest("/", secret, "f-1")).Code)
	drain(t, h)

	runs := rec.Runs()
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 1, eachhooktest.KindFailed: 1}, rec.Counts())
	s, f := runs[0].Success, runs[1].Failure
	if s == nil { // the two callbacks ran in the other order
		s, f = runs[1].Success, runs[0].Failure
	}
	require.Equal(t, "abc123-def456-ghi789", s.ID)
	require.Equal(t, eachhook.Metrics{PredictTime: 12.5, Cost: 0.05}, s.Metrics)
	u, err := s.URL()
	require.NoError(t, err)
	require.Equal(t, eachhooktest.SeedOutput, u)
	us, err := s.URLs()
	require.NoError(t, err)
	require.Equal(t, []string{eachhooktest.SeedOutput}, us)
	require.JSONEq(t, `{"prompt":"A beautiful sunset over the ocean","aspect_ratio":"16:9"}`, string(s.Input))

	require.Equal(t, "f-1", f.ID)
	require.Equal(t, eachhooktest.SeedLogs, f.Logs)
	require.Equal(t, "null", string(f.Output))
}

func TestOutputHelpers(t *testing.T) {
	s := &eachhook.Success{Output: []byte(`["https://a/1.png","https://a/2.png"]`)}
	us, err := s.URLs()
	require.NoError(t, err)
	require.Equal(t, []string{"https://a/1.png", "https://a/2.png"}, us)
	_, err = s.URL()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)

	s = &eachhook.Success{Output: []byte(`{"text":"hi","n":2}`)}
	var v struct {
		Text string `json:"text"`
		N    int    `json:"n"`
	}
	require.NoError(t, s.Decode(&v))
	require.Equal(t, "hi", v.Text)
	require.Equal(t, 2, v.N)
	_, err = s.URLs()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
	require.ErrorIs(t, s.Decode(new(int)), eachhook.ErrOutputShape)
}

func TestLenientFieldsNeverReject(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	body := []byte(`{"id":"odd","status":"success","metrics":{"predict_time":"slow","cost":0.5},"logs":["a","b"]}`)
	require.Equal(t, 200, serve(h, signed(body)).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
	s := rec.Runs()[0].Success
	require.Equal(t, 0.5, s.Metrics.Cost)
	require.Equal(t, `["a","b"]`, s.Logs)
}

func TestDuplicateDeliveries(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	for range 3 {
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "dup")).Code)
	}
	// A redelivery under the newer scheme is the same prediction.
	require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody("dup"), eachhooktest.TimestampScheme, time.Now())).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestConcurrentDuplicatesRunOneCallback(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(4))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := eachhooktest.SuccessBody("race-1")
	var wg sync.WaitGroup
	var ok atomic.Int32
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := eachhooktest.NewClientRequest(srv.URL, secret, body, eachhooktest.BodyScheme, time.Now())
			if err != nil {
				return
			}
			<-start
			resp, err := srv.Client().Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	drain(t, h)
	require.Equal(t, int32(100), ok.Load())
	require.Equal(t, onSuccess, rec.Counts())
}

func TestAcknowledgesBeforeCallbackRuns(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	release := make(chan struct{})
	started := make(chan struct{})
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		close(started)
		<-release
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "slow")).Code)
	<-started // the callback runs after the 200, on another goroutine
	close(release)
}

func TestBackpressure(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithQueueSize(1))
	release := make(chan struct{})
	started := make(chan string, 10)
	var ran sync.Map
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		started <- s.ID
		<-release
		ran.Store(s.ID, true)
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "a")).Code)
	require.Equal(t, "a", <-started) // the worker is busy with a
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "b")).Code)
	w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "c"))
	require.Equal(t, 503, w.Code)
	require.Equal(t, "10", w.Header().Get("Retry-After"))
	close(release)
	require.Equal(t, "b", <-started)
	// The claim of c was released: the sender's retry is processed.
	require.Eventually(t, func() bool {
		return serve(h, eachhooktest.NewSuccessRequest("/", secret, "c")).Code == 200
	}, 5*time.Second, 5*time.Millisecond)
	drain(t, h)
	for _, id := range []string{"a", "b", "c"} {
		_, ok := ran.Load(id)
		require.True(t, ok, id)
	}
}

// flakyStore fails Claim while broken is set.
type flakyStore struct {
	eachhook.Store
	broken    atomic.Bool
	released  atomic.Int32
	completed atomic.Int32
}

var errStoreDown = errors.New("store down")

func (s *flakyStore) Claim(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	if s.broken.Load() {
		return "", false, errStoreDown
	}
	return s.Store.Claim(ctx, id, lease)
}

func (s *flakyStore) Complete(ctx context.Context, id, token string, ttl time.Duration) error {
	s.completed.Add(1)
	return s.Store.Complete(ctx, id, token, ttl)
}

func (s *flakyStore) Release(ctx context.Context, id, token string) error {
	s.released.Add(1)
	return s.Store.Release(ctx, id, token)
}

func TestStoreFailureIs503ThenRetrySucceeds(t *testing.T) {
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &flakyStore{Store: mem}
	st.broken.Store(true)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(st))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "s1"))
	require.Equal(t, 503, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	st.broken.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "s1")).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestShutdownDrainsAcceptedDeliveries(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(2))
	var n atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		time.Sleep(2 * time.Millisecond)
		n.Add(1)
		return nil
	})
	for i := range 50 {
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "d"+strconv.Itoa(i))).Code)
	}
	drain(t, h)
	require.Equal(t, int32(50), n.Load())
}

func TestShutdownDeadlineCancelsCallbacks(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &flakyStore{Store: mem}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithLogger(logger), eachhook.WithRetry(1, 0), eachhook.WithStore(st))
	require.NoError(t, err)
	started := make(chan struct{})
	cancelled := make(chan struct{})
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "running")).Code)
	<-started
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "never-started")).Code)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	<-cancelled
	// Wait for the worker to keep "running" as a dead letter after its
	// callback gave up; both claims were released.
	require.Eventually(t, func() bool { return st.released.Load() == 2 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(0), st.completed.Load())
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logs.String(), "not run before shutdown")
	require.Contains(t, logs.String(), "id=never-started")
	// The claim of the never-started delivery was released.
	_, ok, err := mem.Claim(context.Background(), "never-started", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = mem.Claim(context.Background(), "running", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "the dead letter leaves its id claimable")
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1))
	var attempts []int
	var mu sync.Mutex
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		mu.Lock()
		attempts = append(attempts, eachhook.AttemptFromContext(ctx))
		mu.Unlock()
		if s.ID == "boom" && eachhook.AttemptFromContext(ctx) == 1 {
			panic("boom")
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "boom")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "after")).Code)
	drain(t, h)
	require.Equal(t, []int{1, 2, 1}, attempts)
}

func TestGivingUpReportsAndReleasesTheClaim(t *testing.T) {
	var reported []error
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithErrorHandler(func(ctx context.Context, err error) {
			mu.Lock()
			reported = append(reported, err)
			mu.Unlock()
		}))
	var runs atomic.Int32
	fail := atomic.Bool{}
	fail.Store(true)
	done := make(chan struct{}, 10)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		runs.Add(1)
		defer func() { done <- struct{}{} }()
		if s.ID == "panics" {
			panic("always")
		}
		if fail.Load() {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "flaky")).Code)
	<-done
	<-done
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(reported) == 1 }, 5*time.Second, time.Millisecond)
	// A dead letter leaves its id claimable: a redelivery runs, and its
	// success deletes the dead letter.
	fail.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "flaky")).Code)
	<-done
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "panics")).Code)
	drain(t, h)
	require.Equal(t, int32(5), runs.Load()) // 2 failed + 1 succeeded + 2 panics
	dls, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, "panics", dls[0].ID)

	require.Len(t, reported, 2)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, "flaky", ce.ID)
	require.Equal(t, 2, ce.Attempts)
	require.EqualError(t, ce.Err, "downstream unavailable")
	require.ErrorAs(t, reported[1], &ce)
	require.Equal(t, "panics", ce.ID)
	require.ErrorIs(t, reported[1], eachhook.ErrCallbackPanic)
}

func TestNoCallbackRegisteredBecomesDeadLetter(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithLogger(logger))
	var n atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { n.Add(1); return nil })
	require.Equal(t, 200, serve(h, eachhooktest.NewFailedRequest("/", secret, "x")).Code)
	drain(t, h)
	require.Equal(t, int32(0), n.Load())
	logMu.Lock()
	require.Contains(t, logs.String(), `level=ERROR msg="eachhook: dead letter" id=x status=failed reason=no_callback attempts=0`)
	logMu.Unlock()
	// The dead letter leaves its id claimable: a Handler with OnFailed on
	// the same store runs the sender's retry.
	h2 := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	h2.OnFailed(func(ctx context.Context, f *eachhook.Failure) error { n.Add(10); return nil })
	require.Equal(t, 200, serve(h2, eachhooktest.NewFailedRequest("/", secret, "x")).Code)
	drain(t, h2)
	require.Equal(t, int32(10), n.Load())
}

func TestSecretRotation(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret("old"), eachhook.WithSecret("new"))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "old", "r1")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "new", "r2")).Code)
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "neither", "r3")).Code)
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 2}, rec.Counts())
}

func TestSecretLookup(t *testing.T) {
	secrets := map[string]string{"p1": "secret-1", "p2": "secret-2"}
	lookup := func(ctx context.Context, id string) ([]string, error) {
		if id == "explode" {
			return nil, errors.New("db down")
		}
		if s, ok := secrets[id]; ok {
			return []string{s}, nil
		}
		return nil, nil
	}
	h := newHandler(t, eachhook.WithSecretLookup(lookup))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "p1")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", "secret-2", eachhooktest.SuccessBody("p2"), eachhooktest.TimestampScheme, time.Now())).Code)
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "p2")).Code, "another prediction's secret")
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "unknown")).Code, "no secret")
	w := serve(h, eachhooktest.NewSuccessRequest("/", "x", "explode"))
	require.Equal(t, 503, w.Code, "lookup failure")
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Equal(t, 401, serve(h, signed([]byte("not json"))).Code, "unsigned garbage has no id to look up")
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 2}, rec.Counts())
}

func TestStaticSecretAndLookupTogether(t *testing.T) {
	var looked atomic.Int32
	lookup := func(ctx context.Context, id string) ([]string, error) {
		looked.Add(1)
		return []string{"per-" + id}, nil
	}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithSecretLookup(lookup))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "a")).Code)
	require.Equal(t, int32(0), looked.Load(), "the static secret matched: no lookup")
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "per-b", "b")).Code)
	require.Equal(t, int32(1), looked.Load())
	drain(t, h)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 2}, rec.Counts())
}

func TestInsecureSkipVerification(t *testing.T) {
	h := newHandler(t, eachhook.WithInsecureSkipVerification())
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(eachhooktest.SuccessBody("dev"))))
	require.Equal(t, 200, serve(h, r).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestFakeClockTolerance(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now.Store(base.Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock), eachhook.WithTolerance(5*time.Minute))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	req := func(id string) *http.Request {
		return eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody(id), eachhooktest.TimestampScheme, base)
	}
	now.Store(base.Add(5 * time.Minute).Unix())
	require.Equal(t, 200, serve(h, req("edge")).Code)
	now.Store(base.Add(5*time.Minute + time.Second).Unix())
	require.Equal(t, 401, serve(h, req("late")).Code)
	now.Store(base.Add(-5*time.Minute - time.Second).Unix())
	require.Equal(t, 401, serve(h, req("early")).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestShutdownDeadlineInterruptsRetryBackoff(t *testing.T) {
	reported := make(chan error, 1)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet),
		eachhook.WithRetry(3, time.Hour),
		eachhook.WithErrorHandler(func(ctx context.Context, err error) { reported <- err }))
	require.NoError(t, err)
	errDown := errors.New("downstream unavailable")
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return errDown })
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "backoff")).Code)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	got := <-reported
	var ce *eachhook.CallbackError
	require.ErrorAs(t, got, &ce)
	require.Equal(t, 1, ce.Attempts, "the hour-long backoff never ran attempt 2")
	require.ErrorIs(t, got, errDown)
}

// Receive answers what ServeHTTP answers for the same method, headers and
// body, with the same callbacks and observer calls, in the same order.
func TestReceiveAnswersAsServeHTTP(t *testing.T) {
	type delivery struct {
		name   string
		method string
		header http.Header
		body   []byte
		want   int
	}
	good := eachhooktest.SuccessBody("recv-1")
	forged := eachhooktest.Headers("another secret", good, eachhooktest.BodyScheme, time.Now())
	deliveries := []delivery{
		{"first", http.MethodPost, eachhooktest.Headers(secret, good, eachhooktest.BodyScheme, time.Now()), good, 200},
		{"duplicate", http.MethodPost, eachhooktest.Headers(secret, good, eachhooktest.TimestampScheme, time.Now()), good, 200},
		{"forged", http.MethodPost, forged, eachhooktest.SuccessBody("recv-2"), 401},
		{"not POST", http.MethodGet, nil, nil, 405},
		{"media type", http.MethodPost, http.Header{"Content-Type": {"text/plain"}}, good, 415},
		{"too large", http.MethodPost, eachhooktest.Headers(secret, bytes.Repeat([]byte(" "), 2048), eachhooktest.BodyScheme, time.Now()), bytes.Repeat([]byte(" "), 2048), 413},
		{"malformed", http.MethodPost, eachhooktest.Headers(secret, []byte(`{"status":"success"}`), eachhooktest.BodyScheme, time.Now()), []byte(`{"status":"success"}`), 400},
		{"processing", http.MethodPost, eachhooktest.Headers(secret, []byte(`{"id":"recv-3","status":"processing"}`), eachhooktest.BodyScheme, time.Now()), []byte(`{"id":"recv-3","status":"processing"}`), 200},
	}

	type seen struct {
		codes   []int
		events  []string
		success int
	}
	run := func(t *testing.T, send func(h *eachhook.Handler, d delivery) int) seen {
		var s seen
		obs := observe.Observer{
			Refused:   func(_ context.Context, r observe.Refusal) { s.events = append(s.events, "refused "+string(r.Reason)) },
			Duplicate: func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "duplicate "+d.ID) },
			Ignored:   func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "ignored "+d.ID) },
			Accepted:  func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "accepted "+d.ID) },
		}
		h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(1024), eachhook.WithObserver(obs))
		done := make(chan struct{}, 10)
		h.OnSuccess(func(context.Context, *eachhook.Success) error { done <- struct{}{}; return nil })
		for _, d := range deliveries {
			s.codes = append(s.codes, send(h, d))
		}
		drain(t, h)
		s.success = len(done)
		return s
	}
	viaHTTP := run(t, func(h *eachhook.Handler, d delivery) int {
		r, err := http.NewRequest(d.method, "/webhooks/prediction", bytes.NewReader(d.body))
		require.NoError(t, err)
		if d.header != nil {
			r.Header = d.header.Clone()
		}
		return serve(h, r).Code
	})
	viaReceive := run(t, func(h *eachhook.Handler, d delivery) int {
		return h.Receive(context.Background(), d.method, d.header, d.body)
	})

	var want []int
	for _, d := range deliveries {
		want = append(want, d.want)
	}
	require.Equal(t, want, viaHTTP.codes)
	require.Equal(t, want, viaReceive.codes)
	require.Equal(t, viaHTTP.events, viaReceive.events)
	require.Equal(t, 1, viaHTTP.success)
	require.Equal(t, 1, viaReceive.success)
	require.Equal(t, []string{"accepted recv-1", "duplicate recv-1", "refused signature", "refused method",
		"refused media_type", "refused too_large", "refused malformed", "ignored recv-3"}, viaReceive.events)
}

// Receive reads the body it is given and nothing else: a nil header is an
// unsigned request.
func TestReceiveNilHeader(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	require.Equal(t, 401, h.Receive(context.Background(), http.MethodPost, nil, eachhooktest.SuccessBody("x")))
}

func TestDeliverRunsTheCallbackOnce(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)

	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, rec.Wait(t.Context(), 1))
	require.Equal(t, "pred-1", rec.Runs()[0].ID)

	// The webhook that comes later is a duplicate, and so is a second Deliver.
	require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewSuccessRequest("/", secret, "pred-1")).Code)
	ok, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.False(t, ok)

	// A webhook first, then Deliver: still one callback.
	require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewFailedRequest("/", secret, "pred-2")).Code)
	require.NoError(t, rec.Wait(t.Context(), 2))
	require.Equal(t, "pred-2", rec.Runs()[1].ID)
	ok, err = h.Deliver(t.Context(), eachhooktest.FailedBody("pred-2"))
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, h.Shutdown(t.Context()))
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 1, eachhooktest.KindFailed: 1}, rec.Counts())
	runs := rec.Runs()
	u, err := runs[0].Success.URL()
	require.NoError(t, err)
	require.Equal(t, eachhooktest.SeedOutput, u)
	require.Equal(t, eachhooktest.SeedLogs, runs[1].Failure.Logs)
}

func TestDeliverRefusals(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	_, err := h.Deliver(t.Context(), []byte(`{"status": "success"}`))
	require.ErrorIs(t, err, eachhook.ErrMalformedPayload)

	// No callback registered: dropped, as a webhook would be.
	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, h.Shutdown(t.Context()))
	_, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.ErrorIs(t, err, eachhook.ErrNotQueued)
}

// failingStore fails every Claim.
type failingStore struct{ eachhook.Store }

var errClaimFails = errors.New("claim fails")

func (failingStore) Claim(context.Context, string, time.Duration) (string, bool, error) {
	return "", false, errClaimFails
}

func TestDeliverStoreFailure(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(failingStore{}))
	eachhooktest.NewRecorder().Register(h)
	_, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.ErrorIs(t, err, errClaimFails)
}

func TestDeliverQueueFullReleasesTheClaim(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithQueueSize(1))
	block := make(chan struct{})
	var ran sync.WaitGroup
	ran.Add(3)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "busy" {
			<-block
		}
		ran.Done()
		return nil
	})
	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("busy"))
	require.NoError(t, err)
	require.True(t, ok)
	// Wait until the worker holds "busy", so that the queue's one slot is free.
	require.Eventually(t, func() bool {
		ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("queued"))
		return err == nil && ok
	}, 5*time.Second, time.Millisecond)
	_, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("full"))
	require.ErrorIs(t, err, eachhook.ErrNotQueued)
	close(block)
	// The claim of "full" was released: it is accepted once there is room.
	require.Eventually(t, func() bool {
		ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("full"))
		return err == nil && ok
	}, 5*time.Second, time.Millisecond)
	ran.Wait()
}

// Tests of what becomes of every acknowledged delivery (issue 12): each
// status reaches its callback, is ignored as non-terminal, or becomes a
// dead letter; a callback's runtime.Goexit is a failed attempt; claims
// expire when their callback never finished; keys and routing follow what
// encoding/json reads; repeated signature headers do not depend on order.

// logBuffer is a text logger's output, safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// routed counts the callbacks each delivery id reached.
type routed struct {
	mu       sync.Mutex
	success  map[string]int
	failed   map[string]*eachhook.Failure
	wfDone   map[string]int
	wfFailed map[string]string // execution id -> status
}

func newRouted(h *eachhook.Handler) *routed {
	r := &routed{success: map[string]int{}, failed: map[string]*eachhook.Failure{}, wfDone: map[string]int{}, wfFailed: map[string]string{}}
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.success[s.ID]++
		return nil
	})
	h.OnFailed(func(_ context.Context, f *eachhook.Failure) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.failed[f.ID] = f
		return nil
	})
	h.OnWorkflowCompleted(func(_ context.Context, run *eachhook.WorkflowRun) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.wfDone[run.ExecutionID]++
		return nil
	})
	h.OnWorkflowFailed(func(_ context.Context, run *eachhook.WorkflowRun) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.wfFailed[run.ExecutionID] = run.Status
		return nil
	})
	return r
}

func predictionBody(id, status string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "status": status, "output": nil, "logs": "x"})
	return b
}

func workflowBody(execID, status string) []byte {
	b, _ := json.Marshal(map[string]any{"execution_id": execID, "workflow_id": "wf", "status": status})
	return b
}

func TestEveryTerminalStatusReachesItsCallback(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	r := newRouted(h)
	for _, st := range []string{"success", "succeeded", "failed", "error", "cancelled", "canceled"} {
		require.Equal(t, 200, serve(h, signed(predictionBody("p-"+st, st))).Code, st)
	}
	for _, st := range []string{"completed", "failed", "error", "cancelled", "canceled"} {
		require.Equal(t, 200, serve(h, signed(workflowBody("e-"+st, st))).Code, st)
	}
	drain(t, h)
	require.Equal(t, map[string]int{"p-success": 1, "p-succeeded": 1}, r.success)
	require.Len(t, r.failed, 4)
	require.Empty(t, r.failed["p-failed"].Code)
	require.Empty(t, r.failed["p-error"].Code)
	require.Equal(t, "CANCELLED", r.failed["p-cancelled"].Code)
	require.Equal(t, "CANCELLED", r.failed["p-canceled"].Code)
	require.Equal(t, map[string]int{"e-completed": 1}, r.wfDone)
	require.Equal(t, map[string]string{"e-failed": "failed", "e-error": "error", "e-cancelled": "cancelled", "e-canceled": "canceled"}, r.wfFailed)
}

func TestNonTerminalStatusIsIgnored(t *testing.T) {
	var ignored []string
	var mu sync.Mutex
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithObserver(observe.Observer{
		Ignored: func(_ context.Context, d observe.DeliveryInfo) {
			mu.Lock()
			defer mu.Unlock()
			ignored = append(ignored, d.Status)
		},
	}))
	r := newRouted(h)
	statuses := []string{"created", "starting", "processing", "queued", "running"}
	for _, st := range statuses {
		require.Equal(t, 200, serve(h, signed(predictionBody("p-1", st))).Code, st)
	}
	// The terminal delivery that follows is not a duplicate of them.
	require.Equal(t, 200, serve(h, signed(predictionBody("p-1", "success"))).Code)
	drain(t, h)
	require.Equal(t, statuses, ignored)
	require.Equal(t, map[string]int{"p-1": 1}, r.success)
}

func TestUnknownStatusBecomesDeadLetter(t *testing.T) {
	var logs logBuffer
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithLogger(logs.logger()))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, signed(predictionBody("p-odd", "exploded"))).Code)
	require.Equal(t, 200, serve(h, signed(workflowBody("e-odd", "paused"))).Code)
	// A copy replaces it: still one dead letter of p-odd, reported again.
	require.Equal(t, 200, serve(h, signed(predictionBody("p-odd", "exploded"))).Code)
	dls, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dls, 2)
	drain(t, h)
	require.Empty(t, r.success)
	require.Empty(t, r.failed)
	require.Empty(t, r.wfDone)
	require.Empty(t, r.wfFailed)
	out := logs.String()
	require.Contains(t, out, `msg="eachhook: dead letter" id=p-odd status=exploded reason=unknown_status attempts=0`)
	require.Contains(t, out, `msg="eachhook: dead letter" id=workflow:e-odd status=paused reason=unknown_status attempts=0`)
	require.Equal(t, 3, bytes.Count([]byte(out), []byte(`msg="eachhook: dead letter"`)))
}

func TestFailingCallbackBecomesDeadLetter(t *testing.T) {
	var logs logBuffer
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithLogger(logs.logger()), eachhook.WithRetry(2, time.Millisecond))
	var runs atomic.Int32
	h.OnSuccess(func(context.Context, *eachhook.Success) error {
		runs.Add(1)
		return errors.New("downstream unavailable")
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-fails")).Code)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `msg="eachhook: dead letter"`) }, 5*time.Second, time.Millisecond)
	// A redelivery of a dead letter runs it again: it fails again.
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-fails")).Code)
	drain(t, h)
	require.Equal(t, int32(4), runs.Load())
	require.Contains(t, logs.String(), `msg="eachhook: dead letter" id=p-fails status=success reason=callback_failed attempts=2 err="downstream unavailable"`)
}

// A callback that calls runtime.Goexit (as t.FailNow does) fails its
// attempt like a panic; the one worker survives and runs the next
// delivery; Shutdown loses nothing.
func TestGoexitInCallbackIsAFailedAttempt(t *testing.T) {
	var logs logBuffer
	var reported []error
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithLogger(logs.logger()),
		eachhook.WithErrorHandler(func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, err)
		}))
	var mu2 sync.Mutex
	var ran []string
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		mu2.Lock()
		ran = append(ran, s.ID)
		mu2.Unlock()
		if s.ID == "p-goexit" {
			runtime.Goexit()
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-goexit")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-after")).Code)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx), "the worker must survive and drain the queue")
	require.Equal(t, []string{"p-goexit", "p-goexit", "p-after"}, ran)
	require.NotContains(t, logs.String(), "not run before shutdown")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reported, 1)
	var ce *eachhook.CallbackError
	require.ErrorAs(t, reported[0], &ce)
	require.Equal(t, "p-goexit", ce.ID)
	require.Equal(t, 2, ce.Attempts)
	require.ErrorIs(t, ce, eachhook.ErrCallbackPanic)
}

// A claim whose process died after the 200 (taken, never completed nor
// released) makes a redelivery a duplicate only while its lease lasts.
func TestRedeliveryAfterTheLeaseIsProcessed(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	const lease = 100 * time.Millisecond
	_, ok, err := store.Claim(context.Background(), "p-crashed", lease) // the process that died
	require.NoError(t, err)
	require.True(t, ok)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	time.Sleep(2 * lease)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	// Done now: a later copy is a duplicate.
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "p-crashed")).Code)
	drain(t, h)
	require.Equal(t, map[string]int{"p-crashed": 1}, r.success)
}

// The Handler claims for a lease that WithRetry and WithCallbackTimeout
// set (here 3 attempts of at most 1m, 1ms backoffs, plus a minute: about
// 4m), and marks done with the dedupe TTL once the callback succeeded.
func TestClaimLeaseThenDone(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	var finished atomic.Int32 // attempts whose id is marked done, if they succeeded
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock), eachhook.WithTolerance(time.Minute),
		eachhook.WithCallbackTimeout(time.Minute), eachhook.WithDedupeTTL(time.Hour), eachhook.WithWorkers(2),
		eachhook.WithObserver(observe.Observer{CallbackFinished: func(context.Context, observe.CallbackRun) { finished.Add(1) }}))
	release := make(chan struct{})
	var runs atomic.Int32
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error {
		if runs.Add(1) == 1 {
			<-release // the first run hangs past its lease
		}
		return nil
	})
	send := func() int {
		return serve(h, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody("p-1"), eachhooktest.BodyScheme, clock())).Code
	}
	require.Equal(t, 200, send())
	require.Eventually(t, func() bool { return runs.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 200, send()) // within the lease: a duplicate
	now.Add(int64(4 * time.Minute))
	require.Equal(t, 200, send()) // still within the lease (4m + 2ms): a duplicate
	require.Equal(t, int32(1), runs.Load())
	now.Add(int64(time.Minute))
	require.Equal(t, 200, send()) // the lease ran out: processed again
	require.Eventually(t, func() bool { return finished.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(2), runs.Load())
	close(release) // the first run ends: its Complete leaves the second claim alone
	require.Eventually(t, func() bool { return finished.Load() == 2 }, 5*time.Second, time.Millisecond)
	now.Add(int64(30 * time.Minute))
	require.Equal(t, 200, send()) // done, within the dedupe TTL: a duplicate
	drain(t, h)
	require.Equal(t, int32(2), runs.Load())
}

// A prediction whose id is "workflow:E" and the workflow execution E are
// two deliveries, not one.
func TestPredictionAndWorkflowKeysCannotCollide(t *testing.T) {
	store := eachhook.NewMemoryStore()
	defer store.Close()
	var keys []string
	var mu sync.Mutex
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithObserver(observe.Observer{
		Accepted: func(_ context.Context, d observe.DeliveryInfo) {
			mu.Lock()
			defer mu.Unlock()
			keys = append(keys, d.ID)
		},
	}))
	r := newRouted(h)
	require.Equal(t, 200, serve(h, signed(workflowBody("E", "completed"))).Code)
	require.Equal(t, 200, serve(h, signed(predictionBody("workflow:E", "success"))).Code)
	require.Equal(t, 200, serve(h, signed(predictionBody("prediction:workflow:E", "success"))).Code)
	drain(t, h)
	require.Equal(t, map[string]int{"E": 1}, r.wfDone)
	require.Equal(t, map[string]int{"workflow:E": 1, "prediction:workflow:E": 1}, r.success, "callbacks get the ids as sent")
	require.Equal(t, []string{"workflow:E", "prediction:workflow:E", "prediction:prediction:workflow:E"}, keys)
}

// The id and status that route a delivery are the ones encoding/json
// reads from the same bytes.
func TestRoutingFollowsEncodingJSON(t *testing.T) {
	for name, body := range map[string]string{
		"upper-case key, later wins": `{"id":"a","ID":"b","status":"success"}`,
		"escaped key":                `{"i\u0064":"c","status":"success"}`,
		"escaped keys":               `{"\u0069\u0044":"d","st\u0061tus":"success"}`,
		"capitalised status":         `{"id":"e","Status":"success","status":"failed","STATUS":"success"}`,
		"folded long s":              `{"id":"f","ſtatus":"success"}`,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHandler(t, eachhook.WithSecret(secret))
			r := newRouted(h)
			require.Equal(t, 200, serve(h, signed([]byte(body))).Code)
			drain(t, h)
			var want struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &want))
			require.Equal(t, "success", want.Status)
			require.Equal(t, map[string]int{want.ID: 1}, r.success)
		})
	}
}

func TestMetricsDecodeAsEncodingJSON(t *testing.T) {
	body := []byte(`{"id":"p-m","status":"success","metrics":{"predict_time":1e400,"Cost":0.5,"cost":"x"}}`)
	h := newHandler(t, eachhook.WithSecret(secret))
	got := make(chan eachhook.Metrics, 1)
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error { got <- s.Metrics; return nil })
	require.Equal(t, 200, serve(h, signed(body)).Code)
	drain(t, h)
	var want struct {
		Metrics eachhook.Metrics `json:"metrics"`
	}
	require.Error(t, json.Unmarshal(body, &want), "encoding/json refuses the out-of-range number and the string")
	require.Equal(t, eachhook.Metrics{PredictTime: 0, Cost: 0.5}, want.Metrics)
	require.Equal(t, want.Metrics, <-got)
}

// Two X-Webhook-Signature headers, one valid and one not, get the same
// answer in either order: refused.
func TestRepeatedSignatureHeadersDoNotDependOnOrder(t *testing.T) {
	body := eachhooktest.SuccessBody("p-sig")
	valid := eachhooktest.Headers(secret, body, eachhooktest.BodyScheme, time.Now()).Get(signature.Header)
	wrong := eachhooktest.Headers("whsec_other", body, eachhooktest.BodyScheme, time.Now()).Get(signature.Header)
	h := newHandler(t, eachhook.WithSecret(secret))
	r := newRouted(h)
	for _, order := range [][]string{{valid, wrong}, {wrong, valid}, {valid, valid}} {
		req := signed(body)
		req.Header.Del(signature.Header)
		for _, v := range order {
			req.Header.Add(signature.Header, v)
		}
		require.Equal(t, http.StatusUnauthorized, serve(h, req).Code, "order %v", order)
	}
	require.Equal(t, 200, serve(h, signed(body)).Code, "one signature header is accepted")
	drain(t, h)
	require.Equal(t, map[string]int{"p-sig": 1}, r.success)
}

// Regression tests for hostile input and extreme settings.

func TestStaleTimestampRefusedBeforeSecretLookup(t *testing.T) {
	var looked atomic.Int32
	h := newHandler(t, eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) {
		looked.Add(1)
		return nil, errors.New("db down")
	}))
	stale := time.Now().Add(-2 * time.Hour)
	r := eachhooktest.NewRequest("/", "per-x", eachhooktest.SuccessBody("x"), eachhooktest.TimestampScheme, stale)
	require.Equal(t, 401, serve(h, r).Code)
	require.Zero(t, looked.Load())
}

func TestUnknownLengthBodyWithHugeLimit(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(math.MaxInt64))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	r := signed(eachhooktest.SuccessBody("big"))
	r.ContentLength = -1
	require.Equal(t, 200, serve(h, r).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestContentLengthDoesNotReserveMemory(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
		r.ContentLength = 10 << 20 // declared, never sent
		require.Equal(t, 400, serve(h, r).Code)
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(10<<20), "10 requests declaring 10 MiB each")
}

func TestHugeDedupeTTLStillDeduplicates(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithDedupeTTL(time.Duration(math.MaxInt64)))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "same")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "same")).Code)
	drain(t, h)
	require.Equal(t, onSuccess, rec.Counts())
}

func TestHugeRetryCountWorks(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(math.MaxInt, time.Millisecond))
	var attempts []int
	var mu sync.Mutex
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, eachhook.AttemptFromContext(ctx))
		if len(attempts) < 10 {
			return errors.New("not yet")
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "persistent")).Code)
	drain(t, h)
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, attempts)
}

func TestNilCallbackUnregisters(t *testing.T) {
	var reported atomic.Int32
	h := newHandler(t, eachhook.WithSecret(secret),
		eachhook.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	h.OnSuccess(nil)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "nilcb")).Code)
	drain(t, h)
	// An unregistered callback runs nothing: the delivery is kept as a
	// dead letter that no attempt ran for, reported once.
	require.Equal(t, int32(1), reported.Load())
	dls, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, "no_callback", dls[0].Reason)
	require.Zero(t, dls[0].Attempts)
}

func TestErrorHandlerPanicDoesNotKillWorker(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(func(context.Context, error) { panic("bug in the hook") }))
	var ok atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "fails" {
			return errors.New("downstream")
		}
		ok.Add(1)
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "fails")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "after")).Code)
	drain(t, h)
	require.Equal(t, int32(1), ok.Load())
}

func TestURLOnNullOutput(t *testing.T) {
	s := &eachhook.Success{Output: []byte("null")}
	_, err := s.URL()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
	_, err = s.URLs()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
	_, err = (&eachhook.Success{}).URL()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
}

func TestUnverifiedIDNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	h, err := eachhook.New(eachhook.WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))),
		eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) { return nil, errors.New("db down") }))
	require.NoError(t, err)
	defer h.Shutdown(context.Background())
	forged := `{"id":"ATTACKER-CONTROLLED","status":"success"}`
	r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(strings.NewReader(forged)))
	r.Header.Set(signature.Header, strings.Repeat("0", 64))
	require.Equal(t, 503, serve(h, r).Code)
	mu.Lock()
	defer mu.Unlock()
	require.NotContains(t, logs.String(), "ATTACKER-CONTROLLED")
}

// The refusals a user meets while setting up are logged at Warn, with the
// explanation of package signature, and without the secret, the signature
// or the unverified body.
func TestRefusalsAreExplainedInTheLog(t *testing.T) {
	body := eachhooktest.SuccessBody("log-secret-id")
	sig := signature.Sign(secret, "", body)
	withNewline := append(bytes.Clone(body), '\n')
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name     string
		opts     []eachhook.Option
		req      func() *http.Request
		code     int
		wantLine []string
	}{
		{
			name: "trailing newline",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				r := eachhooktest.NewRequest("/", secret, withNewline, eachhooktest.BodyScheme, time.Now())
				r.Header.Set(signature.Header, sig) // signed before the newline was added
				return r
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "refused unverified delivery (401)", "it matches the body without its trailing newline"},
		},
		{
			name: "wrong secret",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", "whsec_other", body, eachhooktest.BodyScheme, time.Now())
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", `reason="signature does not match: the secret is wrong or the body was changed"`},
		},
		{
			name: "timestamp too old",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", secret, body, eachhooktest.TimestampScheme, now.Add(-time.Hour))
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "timestamp too old: signed 1h0m0s ago, tolerance 15m0s"},
		},
		{
			name: "lookup, empty body",
			opts: []eachhook.Option{eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) { return []string{secret}, nil })},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", secret, nil, eachhooktest.BodyScheme, time.Now())
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "refused unverified delivery (401)"},
		},
		{
			name: "415 names the Content-Type",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				r := eachhooktest.NewRequest("/", secret, body, eachhooktest.BodyScheme, time.Now())
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl -d without -H
				return r
			},
			code:     http.StatusUnsupportedMediaType,
			wantLine: []string{"level=WARN", "refused delivery (415)", "content_type=application/x-www-form-urlencoded"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs logBuffer
			h := newHandler(t, append(c.opts, eachhook.WithClock(func() time.Time { return now }), eachhook.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
			require.Equal(t, c.code, serve(h, c.req()).Code)
			out := logs.String()
			require.Equal(t, 1, strings.Count(out, "\n"), out)
			for _, w := range c.wantLine {
				require.Contains(t, out, w)
			}
			require.NotContains(t, out, secret)
			require.NotContains(t, out, "whsec_other")
			require.NotContains(t, out, sig[:16])
			require.NotContains(t, out, "log-secret-id", "the unverified body stays out")
		})
	}
}

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
	rec := eachhooktest.NewRecorder()
	rec.Register(h)

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
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	require.Equal(t, 200, serve(h, signed(eachhooktest.SuccessBody("quiet-id"))).Code)
	require.Equal(t, 200, serve(h, signed(eachhooktest.SuccessBody("quiet-id"))).Code)
	drain(t, h)
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logs.String(), "duplicate delivery", "debug logging is on")
	require.NotContains(t, logs.String(), eachhooktest.SeedOutput)
}

// FuzzServeHTTP checks that ServeHTTP never panics, answers only the
// documented codes, and never runs a callback for a request whose signature
// does not verify.
func FuzzServeHTTP(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(eachhooktest.SuccessBody("p1"), "", "", "application/json", true)
	f.Add(eachhooktest.FailedBody("p2"), "", "1800000000", "application/json; charset=utf-8", true)
	f.Add([]byte(`{"id":"x","status":"success"}`), "sha256=00", "", "", false)
	f.Add([]byte(`{"id":"","status":"failed"}`), "", "", "", true)
	f.Add([]byte(`{"id":"a","status":"success","output":[1,{"a":null}]}`), "", "1799999000", "", true)
	f.Add([]byte(`not json`), "", "", "text/plain", true)
	f.Fuzz(func(t *testing.T, body []byte, sig, ts, contentType string, sign bool) {
		if sign {
			sig = signature.Sign(secret, ts, body)
		}
		verifyErr := signature.Verify(body, sig, ts, now, signature.DefaultTolerance, secret)
		h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet),
			eachhook.WithClock(func() time.Time { return now }), eachhook.WithMaxBodyBytes(4096))
		if err != nil {
			t.Fatal(err)
		}
		var ran atomic.Int32
		h.OnSuccess(func(context.Context, *eachhook.Success) error { ran.Add(1); return nil })
		h.OnFailed(func(context.Context, *eachhook.Failure) error { ran.Add(1); return nil })
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set(signature.Header, sig)
		if ts != "" {
			r.Header.Set(signature.HeaderTimestamp, ts)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if err := h.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		switch w.Code {
		case 200, 400, 401, 413, 415:
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
		if ran.Load() > 0 && verifyErr != nil {
			t.Fatalf("callback ran for a request that does not verify (%v)", verifyErr)
		}
		if w.Code == 200 && verifyErr != nil {
			t.Fatalf("200 for a request that does not verify (%v)", verifyErr)
		}
		if ran.Load() > 1 {
			t.Fatalf("%d callbacks for one request", ran.Load())
		}
	})
}

// benchWriter is a reusable ResponseWriter, so that the benchmarks measure
// the handlers rather than httptest.ResponseRecorder.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// deliveries returns n signed success bodies with distinct ids and their
// signatures.
func deliveries(n int) ([][]byte, []string) {
	bodies := make([][]byte, n)
	sigs := make([]string, n)
	for i := range bodies {
		bodies[i] = eachhooktest.SuccessBody(fmt.Sprintf("pred-%08d-0000-0000-0000-000000000000", i))
		sigs[i] = signature.Sign(secret, "", bodies[i])
	}
	return bodies, sigs
}

// serveFresh runs h on b.N signed deliveries with fresh ids and fails the
// benchmark unless every one is answered 200; the time includes finish,
// which waits for the callbacks, if not nil.
func serveFresh(b *testing.B, h http.Handler, finish func()) {
	bodies, sigs := deliveries(b.N)
	r, _ := http.NewRequest(http.MethodPost, "/webhook", nil)
	r.Header.Set("Content-Type", "application/json")
	body := &benchBody{}
	r.Body = body
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		body.Reset(bodies[i])
		r.ContentLength = int64(len(bodies[i]))
		r.Header[signature.Header] = sigs[i : i+1]
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("delivery %d: status %d", i, w.code)
		}
	}
	if finish != nil {
		finish()
	}
	b.StopTimer()
}

// BenchmarkServeHTTP measures a Handler from request through callback: read,
// verify, decode the envelope, claim the id, queue the delivery, answer
// 200, and run the callback (the time includes waiting for the last one).
func BenchmarkServeHTTP(b *testing.B) {
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueueSize(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	var ran atomic.Int64
	h.OnSuccess(func(context.Context, *eachhook.Success) error { ran.Add(1); return nil })
	serveFresh(b, h, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
	})
	if ran.Load() != int64(b.N) {
		b.Fatalf("%d callbacks ran, want %d", ran.Load(), b.N)
	}
}

// BenchmarkHandWritten is the yardstick for BenchmarkServeHTTP: the handler
// a user could write by hand, which reads the body, checks its HMAC-SHA256
// signature, decodes it with encoding/json and runs the callback on a
// goroutine of its own (no dedupe, no retries, no dead letters).
func BenchmarkHandWritten(b *testing.B) {
	var wg sync.WaitGroup
	var ran atomic.Int64
	type payload struct {
		ID     string          `json:"id"`
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
	}
	serveFresh(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want, err := hex.DecodeString(r.Header.Get(signature.Header))
		if err != nil || !hmac.Equal(mac.Sum(nil), want) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p payload
		if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.Status == eachhook.StatusSuccess {
				ran.Add(1)
			}
		}()
		w.WriteHeader(http.StatusOK)
	}), wg.Wait)
	if ran.Load() != int64(b.N) {
		b.Fatalf("%d callbacks ran, want %d", ran.Load(), b.N)
	}
}

// BenchmarkBareHandler is the floor for BenchmarkServeHTTP: a handler that
// only reads the body and answers 200.
func BenchmarkBareHandler(b *testing.B) {
	serveFresh(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}), nil)
}

var verifySizes = []struct {
	name string
	n    int
}{{"300B", 300}, {"4KiB", 4 << 10}, {"64KiB", 64 << 10}}

func verifyBody(n int) []byte { return bytes.Repeat([]byte("a"), n) }

// BenchmarkVerify measures Verifier.Verify on the original body scheme.
func BenchmarkVerify(b *testing.B) {
	v, err := signature.NewVerifier(secret)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, size := range verifySizes {
		body := verifyBody(size.n)
		sig := signature.Sign(secret, "", body)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				if err := v.Verify(body, sig, "", now, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyFloor is the floor for BenchmarkVerify: a pre-keyed
// HMAC-SHA256 (Reset, Write, Sum), hex decoding and hmac.Equal.
func BenchmarkVerifyFloor(b *testing.B) {
	mac := hmac.New(sha256.New, []byte(secret))
	for _, size := range verifySizes {
		body := verifyBody(size.n)
		sig := signature.Sign(secret, "", body)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			var want [sha256.Size]byte
			for b.Loop() {
				if _, err := hex.Decode(want[:], []byte(sig)); err != nil {
					b.Fatal(err)
				}
				mac.Reset()
				mac.Write(body)
				if !hmac.Equal(mac.Sum(nil), want[:]) {
					b.Fatal("mismatch")
				}
			}
		})
	}
}

// Receive matches header names whatever their case: a gateway's lower-case
// map gets the answers ServeHTTP gives.
func TestReceiveCanonicalisesHeaderNames(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	lower := func(hd http.Header) http.Header {
		out := http.Header{}
		for k, v := range hd {
			out[strings.ToLower(k)] = v
		}
		return out
	}
	body := eachhooktest.SuccessBody("lower-1")
	for _, scheme := range []eachhooktest.Scheme{eachhooktest.BodyScheme, eachhooktest.TimestampScheme} {
		hd := lower(eachhooktest.Headers(secret, body, scheme, time.Now()))
		hd["content-type"] = []string{"application/json"}
		require.Equal(t, 200, h.Receive(context.Background(), http.MethodPost, hd, body))
	}
	hd := lower(eachhooktest.Headers(secret, eachhooktest.SuccessBody("lower-2"), eachhooktest.BodyScheme, time.Now()))
	hd["content-type"] = []string{"text/plain"}
	require.Equal(t, 415, h.Receive(context.Background(), http.MethodPost, hd, eachhooktest.SuccessBody("lower-2")))
	// The same header under two spellings is a repeated authentication header.
	hd = eachhooktest.Headers(secret, eachhooktest.SuccessBody("lower-3"), eachhooktest.BodyScheme, time.Now())
	hd["x-webhook-signature"] = hd[signature.Header]
	require.Equal(t, 401, h.Receive(context.Background(), http.MethodPost, hd, eachhooktest.SuccessBody("lower-3")))
	drain(t, h)
	require.Equal(t, []string{"lower-1"}, rec.IDs())
}

// Health answers 503 while claims fail and for 10 s by the Handler's clock
// after the last failure, unless a claim succeeds before.
func TestHealthReportsRecentStoreFailures(t *testing.T) {
	var clock clockAt
	clock.set(time.Now())
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &flakyStore{Store: mem}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(st), eachhook.WithClock(clock.now), eachhook.WithTolerance(time.Hour), eachhook.WithDedupeTTL(time.Hour))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	health := func() (int, string) {
		w := serve(h.Health(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code, w.Body.String()
	}
	code, _ := health()
	require.Equal(t, 200, code)
	st.broken.Store(true)
	for i := range 3 {
		require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "hf-"+strconv.Itoa(i))).Code)
	}
	code, body := health()
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"store failed"}`, body)
	clock.set(clock.now().Add(9 * time.Second))
	code, _ = health()
	require.Equal(t, 503, code, "9 s after the last failure")
	clock.set(clock.now().Add(time.Second))
	code, _ = health()
	require.Equal(t, 200, code, "10 s after the last failure")

	require.Equal(t, 503, serve(h, eachhooktest.NewSuccessRequest("/", secret, "hf-0")).Code)
	code, _ = health()
	require.Equal(t, 503, code)
	st.broken.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "hf-0")).Code)
	code, _ = health()
	require.Equal(t, 200, code, "a claim succeeded since")
	drain(t, h)
}

// slowPinger is a Store whose Ping ignores its context until released.
type slowPinger struct {
	eachhook.Store
	release chan struct{}
}

func (s *slowPinger) Ping(context.Context) error { <-s.release; return nil }

// Health answers within its bound even when a Ping ignores its context.
func TestHealthBoundedWhenPingIgnoresItsContext(t *testing.T) {
	mem := eachhook.NewMemoryStore()
	defer mem.Close()
	st := &slowPinger{Store: mem, release: make(chan struct{})}
	defer close(st.release)
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(st))
	w := serve(h.Health(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, 503, w.Code)
	require.JSONEq(t, `{"status":"unavailable","reason":"store unreachable"}`, w.Body.String())
}

// The README's answer table is doc.go's, row for row and word for word.
func TestREADMEAnswerTableIsTheDocs(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	columns := regexp.MustCompile(`\s{2,}`)
	var fromDoc [][]string
	section := string(doc[bytes.Index(doc, []byte("// # Responses")):bytes.Index(doc, []byte("// # Delivery guarantees"))])
	for _, line := range strings.Split(section, "\n") {
		text, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			continue
		}
		cols := columns.Split(strings.TrimSpace(text), -1)
		if strings.HasPrefix(text, "  ") && !strings.HasPrefix(text, "  ...") { // a wrapped row goes on
			last := fromDoc[len(fromDoc)-1]
			last[0] += " " + cols[0]
			fromDoc[len(fromDoc)-1] = append(last[:1], cols[1:]...)
			continue
		}
		fromDoc = append(fromDoc, cols)
	}
	var fromREADME [][]string
	section = string(readme[bytes.Index(readme, []byte("## What it answers")):])
	for _, line := range strings.Split(section, "\n")[4:] {
		if !strings.HasPrefix(line, "| ") {
			if len(fromREADME) > 0 {
				break
			}
			continue
		}
		cols := strings.Split(strings.Trim(line, "| "), " | ")
		if cols[0] == "check" {
			continue
		}
		fromREADME = append(fromREADME, cols)
	}
	require.NotEmpty(t, fromDoc)
	require.Equal(t, fromDoc, fromREADME)
}
