package eachloop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/eachhook/eachhook/eachlabs"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is when the fake clock starts.
var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

var quiet = slog.New(slog.DiscardHandler)

// guard bounds every wait of a test for something another goroutine does,
// so that a bug fails the test instead of hanging it. It is never reached
// by a passing test.
const guard = 10 * time.Second

// fakeClock is the reconciler's clock. Its Sleep blocks until the test
// calls Step, which moves the time to the end of the sleep; the reconciler
// is the only sleeper.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	until  time.Time
	wake   chan struct{}
	asleep chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: t0, asleep: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	c.mu.Lock()
	c.until, c.wake = c.now.Add(d), ch
	c.mu.Unlock()
	select {
	case c.asleep <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Step waits until the reconciler sleeps, ends its sleep and returns the
// new time.
func (c *fakeClock) Step(t *testing.T) time.Time {
	t.Helper()
	select {
	case <-c.asleep:
	case <-time.After(guard):
		t.Fatal("the reconciler never went to sleep")
	}
	return c.wakeUp()
}

func (c *fakeClock) wakeUp() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.until
	close(c.wake)
	return c.now
}

// StepUntil steps until the time is at least at.
func (c *fakeClock) StepUntil(t *testing.T, at time.Time) {
	t.Helper()
	for c.Now().Before(at) {
		c.Step(t)
	}
}

// StepUntilSignal steps until ch is ready, and returns what it carried.
func StepUntilSignal[T any](t *testing.T, c *fakeClock, ch <-chan T) T {
	t.Helper()
	for {
		select {
		case v := <-ch:
			return v
		case <-c.asleep:
			c.wakeUp()
		case <-time.After(guard):
			t.Fatal("neither a signal nor a sleep")
		}
	}
}

// answer is one scripted answer of the fake API to a GET.
type answer struct {
	status int
	header http.Header
	body   string
}

func ok(body string) answer { return answer{status: 200, body: body} }

// fakeAPI plays the each::labs API: it creates predictions pred-1,
// pred-2... and answers GET /v1/prediction/{id} from a script, the last
// answer repeating; the default is "processing".
type fakeAPI struct {
	clock *fakeClock

	mu       sync.Mutex
	n        int
	requests map[string]eachlabs.PredictionRequest
	script   map[string][]answer
	gets     map[string][]time.Time
	// onCreate runs before the create is answered, onGet before a GET is.
	onCreate func(id string, req eachlabs.PredictionRequest)
	onGet    func(id string)
	refuse   bool // answer creates with 400
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer test-key" {
		w.WriteHeader(401)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/prediction":
		var req eachlabs.PredictionRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || a.refuse {
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error": "Invalid input"}`)
			return
		}
		a.mu.Lock()
		a.n++
		id := fmt.Sprint("pred-", a.n)
		a.requests[id] = req
		onCreate := a.onCreate
		a.mu.Unlock()
		if onCreate != nil {
			onCreate(id, req)
		}
		fmt.Fprintf(w, `{"status": "success", "message": "Prediction created successfully", "predictionID": %q}`, id)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/prediction/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/prediction/")
		a.mu.Lock()
		a.gets[id] = append(a.gets[id], a.clock.Now())
		onGet := a.onGet
		a.mu.Unlock()
		if onGet != nil {
			onGet(id)
		}
		a.mu.Lock()
		ans := ok(fmt.Sprintf(`{"id": %q, "status": "processing", "output": null}`, id))
		if s := a.script[id]; len(s) > 0 {
			ans = s[0]
			if len(s) > 1 {
				a.script[id] = s[1:]
			}
		}
		a.mu.Unlock()
		for k, v := range ans.header {
			w.Header()[k] = v
		}
		w.WriteHeader(ans.status)
		fmt.Fprint(w, ans.body)
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error": "not found"}`)
	}
}

func (a *fakeAPI) Script(id string, answers ...answer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.script[id] = answers
}

func (a *fakeAPI) Gets(id string) []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for _, at := range a.gets[id] {
		out = append(out, at.Sub(t0))
	}
	return out
}

func (a *fakeAPI) Request(id string) eachlabs.PredictionRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[id]
}

// calls records the callbacks a Handler ran.
type calls struct {
	mu        sync.Mutex
	successes []*eachhook.Success
	failures  []*eachhook.Failure
	done      chan string
}

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

// rig is a service built as the package documentation says, against a
// fake API, with a sender that delivers webhooks to it.
type rig struct {
	t        *testing.T
	clock    *fakeClock
	api      *fakeAPI
	client   *eachlabs.Client
	exp      eachloop.Expectations
	loop     *eachloop.Loop
	h        *eachhook.Handler
	calls    *calls
	errs     chan error // the Handler's error hook
	receiver *httptest.Server
	sender   *http.Client

	cancel context.CancelFunc
	ran    chan error
	shut   bool
}

type rigConfig struct {
	loopOpts []eachloop.Option
	hookOpts []eachhook.Option
	exp      eachloop.Expectations
	noCalls  bool // register no callbacks
}

func newRig(t *testing.T, rc rigConfig) *rig {
	t.Helper()
	r := &rig{t: t, clock: newFakeClock(), errs: make(chan error, 100), calls: &calls{done: make(chan string, 100)}}
	r.api = &fakeAPI{clock: r.clock, requests: map[string]eachlabs.PredictionRequest{}, script: map[string][]answer{}, gets: map[string][]time.Time{}}
	apiSrv := httptest.NewServer(r.api)
	t.Cleanup(apiSrv.Close)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	var err error
	r.client, err = eachlabs.NewClient("test-key", eachlabs.WithBaseURL(apiSrv.URL), eachlabs.WithHTTPClient(hc))
	require.NoError(t, err)

	var handler http.Handler
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/prediction", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { handler.ServeHTTP(w, req) }))
	r.receiver = httptest.NewServer(mux)
	t.Cleanup(r.receiver.Close)
	r.sender = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(r.sender.CloseIdleConnections)

	r.exp = rc.exp
	if r.exp == nil {
		r.exp = eachloop.NewMemoryExpectations(0, r.clock.Now)
	}
	opts := append([]eachloop.Option{eachloop.WithClock(r.clock.Now, r.clock.Sleep), eachloop.WithLogger(quiet)}, rc.loopOpts...)
	r.loop, err = eachloop.New(r.client, r.exp, r.receiver.URL+"/webhooks/prediction", opts...)
	require.NoError(t, err)

	store := eachhook.NewMemoryStore(0, nil)
	t.Cleanup(func() { store.Close() })
	hookOpts := append([]eachhook.Option{
		eachhook.WithSecretLookup(r.loop.SecretLookup),
		eachhook.WithStore(r.loop.Store(store)),
		eachhook.WithLogger(quiet),
		eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(func(ctx context.Context, err error) { r.errs <- err }),
	}, rc.hookOpts...)
	r.h, err = eachhook.New(hookOpts...)
	require.NoError(t, err)
	handler = r.h
	if !rc.noCalls {
		r.calls.register(r.h)
	}
	t.Cleanup(r.stop)
	return r
}

// start runs the reconciler.
func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.ran = cancel, make(chan error, 1)
	go func() { r.ran <- r.loop.Run(ctx, r.h) }()
}

// stop ends the reconciler, then shuts the Handler down, which waits for
// every accepted callback: the counts are final afterwards.
func (r *rig) stop() {
	if r.shut {
		return
	}
	r.shut = true
	if r.cancel != nil {
		r.cancel()
		select {
		case err := <-r.ran:
			require.ErrorIs(r.t, err, context.Canceled)
		case <-time.After(guard):
			r.t.Fatal("Run did not return")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	require.NoError(r.t, r.h.Shutdown(ctx))
}

// create creates a prediction and returns its id.
func (r *rig) create() string {
	r.t.Helper()
	id, err := r.loop.Create(r.t.Context(), eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: map[string]any{"prompt": "a lighthouse"}})
	require.NoError(r.t, err)
	return id
}

// deliver plays the sender: it posts body to the webhook URL the
// prediction was created with, signed with secret, and returns the status.
func (r *rig) deliver(id, secret string, body []byte) int {
	r.t.Helper()
	req, err := eachhooktest.NewClientRequest(r.api.Request(id).WebhookURL, secret, body, eachhooktest.BodyScheme, time.Now())
	require.NoError(r.t, err)
	resp, err := r.sender.Do(req)
	require.NoError(r.t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// secret returns the webhook_secret prediction id was created with.
func (r *rig) secret(id string) string { return r.api.Request(id).WebhookSecret }

// callback waits for the next callback and returns its prediction id.
func (r *rig) callback() string {
	r.t.Helper()
	select {
	case id := <-r.calls.done:
		return id
	case <-time.After(guard):
		r.t.Fatal("no callback ran")
	}
	return ""
}

func (r *rig) pending() []eachloop.Expectation {
	r.t.Helper()
	p, err := r.exp.Pending(context.Background(), r.clock.Now().Add(365*24*time.Hour))
	require.NoError(r.t, err)
	return p
}

func successAnswer(id string) answer {
	return ok(fmt.Sprintf(`{"id": %q, "input": {"prompt": "a lighthouse"}, "status": "success",
		"output": %q, "logs": null, "metrics": {"predict_time": 12.5, "cost": 0.05},
		"urls": {"cancel": "https://api.eachlabs.ai/v1/prediction/%s/cancel", "get": "https://api.eachlabs.ai/v1/prediction/%s"}}`,
		id, eachhooktest.SeedOutput, id, id))
}

func jsonField(t *testing.T, raw []byte, key string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	return string(bytes.TrimSpace(m[key]))
}
