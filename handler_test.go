package eachhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "whsec_test_secret"

var quiet = slog.New(slog.DiscardHandler)

// calls records the callbacks a Handler ran.
type calls struct {
	mu        sync.Mutex
	successes []*eachhook.Success
	failures  []*eachhook.Failure
	done      chan string // one send per callback run
}

func newCalls() *calls { return &calls{done: make(chan string, 1000)} }

func (c *calls) register(h *eachhook.Handler) {
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		c.mu.Lock()
		c.successes = append(c.successes, s)
		c.mu.Unlock()
		c.done <- s.ID
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		c.mu.Lock()
		c.failures = append(c.failures, f)
		c.mu.Unlock()
		c.done <- f.ID
		return nil
	})
}

func (c *calls) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.successes), len(c.failures)
}

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
			c := newCalls()
			c.register(h)
			w := serve(h, tc.req)
			require.Equal(t, tc.want, w.Code, w.Body.String())
			if tc.want == 405 {
				require.Equal(t, "POST", w.Header().Get("Allow"))
			}
			if tc.want == 401 {
				require.Equal(t, "unauthorized\n", w.Body.String())
			}
			drain(t, h)
			s, f := c.counts()
			require.Equal(t, tc.successes, s, "successes")
			require.Equal(t, tc.failures, f, "failures")
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
	c := newCalls()
	c.register(h2)
	r = signed(ok)
	r.ContentLength = -1
	require.Equal(t, 200, serve(h2, r).Code)
	drain(t, h2)
	s, _ := c.counts()
	require.Equal(t, 1, s)
}

func TestAfterShutdown503EvenUnsigned(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	c := newCalls()
	c.register(h)
	drain(t, h)
	r := signed(eachhooktest.SuccessBody("late"))
	r.Header.Del(signature.Header)
	w := serve(h, r)
	require.Equal(t, 503, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Equal(t, 503, serve(h, signed(eachhooktest.SuccessBody("late"))).Code)
	s, f := c.counts()
	require.Zero(t, s+f)
}

func TestSuccessFields(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "abc123-def456-ghi789")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewFailedRequest("/", secret, "f-1")).Code)
	drain(t, h)

	require.Len(t, c.successes, 1)
	s := c.successes[0]
	require.Equal(t, "abc123-def456-ghi789", s.ID)
	require.Equal(t, eachhook.Metrics{PredictTime: 12.5, Cost: 0.05}, s.Metrics)
	u, err := s.URL()
	require.NoError(t, err)
	require.Equal(t, eachhooktest.SeedOutput, u)
	us, err := s.URLs()
	require.NoError(t, err)
	require.Equal(t, []string{eachhooktest.SeedOutput}, us)
	require.JSONEq(t, `{"prompt":"A beautiful sunset over the ocean","aspect_ratio":"16:9"}`, string(s.Input))

	require.Len(t, c.failures, 1)
	f := c.failures[0]
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
	c := newCalls()
	c.register(h)
	body := []byte(`{"id":"odd","status":"success","metrics":{"predict_time":"slow","cost":0.5},"logs":["a","b"]}`)
	require.Equal(t, 200, serve(h, signed(body)).Code)
	drain(t, h)
	require.Len(t, c.successes, 1)
	require.Equal(t, 0.5, c.successes[0].Metrics.Cost)
	require.Equal(t, `["a","b"]`, c.successes[0].Logs)
}

func TestDuplicateDeliveries(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	c := newCalls()
	c.register(h)
	for range 3 {
		require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "dup")).Code)
	}
	// A redelivery under the newer scheme is the same prediction.
	require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody("dup"), eachhooktest.TimestampScheme, time.Now())).Code)
	drain(t, h)
	s, f := c.counts()
	require.Equal(t, 1, s)
	require.Equal(t, 0, f)
}

func TestConcurrentDuplicatesRunOneCallback(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(4))
	c := newCalls()
	c.register(h)
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
	s, _ := c.counts()
	require.Equal(t, 1, s)
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
	c := newCalls()
	c.register(h)
	w := serve(h, eachhooktest.NewSuccessRequest("/", secret, "s1"))
	require.Equal(t, 503, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	st.broken.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "s1")).Code)
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 1, s)
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
	// callback gave up; "never-started" was released.
	require.Eventually(t, func() bool { return st.completed.Load() == 1 && st.released.Load() == 1 }, 5*time.Second, time.Millisecond)
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
	require.False(t, ok, "the dead letter keeps its id claimed")
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

func TestGivingUpReportsAndKeepsTheClaim(t *testing.T) {
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
	// A dead letter keeps its id claimed: a redelivery runs nothing again.
	fail.Store(false)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "flaky")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "panics")).Code)
	drain(t, h)
	require.Equal(t, int32(4), runs.Load()) // 2 failed + 2 panics

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
	// The dead letter keeps its id claimed: a Handler with OnFailed on the
	// same store takes the sender's retry for a duplicate (replaying the
	// dead letter is the way to run it).
	h2 := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(store))
	h2.OnFailed(func(ctx context.Context, f *eachhook.Failure) error { n.Add(10); return nil })
	require.Equal(t, 200, serve(h2, eachhooktest.NewFailedRequest("/", secret, "x")).Code)
	drain(t, h2)
	require.Equal(t, int32(0), n.Load())
}

func TestSecretRotation(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret("old"), eachhook.WithSecret("new"))
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "old", "r1")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "new", "r2")).Code)
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "neither", "r3")).Code)
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 2, s)
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
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "p1")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewRequest("/", "secret-2", eachhooktest.SuccessBody("p2"), eachhooktest.TimestampScheme, time.Now())).Code)
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "p2")).Code, "another prediction's secret")
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/", "secret-1", "unknown")).Code, "no secret")
	w := serve(h, eachhooktest.NewSuccessRequest("/", "x", "explode"))
	require.Equal(t, 503, w.Code, "lookup failure")
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Equal(t, 401, serve(h, signed([]byte("not json"))).Code, "unsigned garbage has no id to look up")
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 2, s)
}

func TestStaticSecretAndLookupTogether(t *testing.T) {
	var looked atomic.Int32
	lookup := func(ctx context.Context, id string) ([]string, error) {
		looked.Add(1)
		return []string{"per-" + id}, nil
	}
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithSecretLookup(lookup))
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "a")).Code)
	require.Equal(t, int32(0), looked.Load(), "the static secret matched: no lookup")
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", "per-b", "b")).Code)
	require.Equal(t, int32(1), looked.Load())
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 2, s)
}

func TestInsecureSkipVerification(t *testing.T) {
	h := newHandler(t, eachhook.WithInsecureSkipVerification())
	c := newCalls()
	c.register(h)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(eachhooktest.SuccessBody("dev"))))
	require.Equal(t, 200, serve(h, r).Code)
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 1, s)
}

func TestFakeClockTolerance(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now.Store(base.Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithClock(clock), eachhook.WithTolerance(5*time.Minute))
	c := newCalls()
	c.register(h)
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
	s, _ := c.counts()
	require.Equal(t, 1, s)
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
