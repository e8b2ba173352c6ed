package eachloop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/eachlooptest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is when the fake clock starts.
var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

var quiet = slog.New(slog.DiscardHandler)

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
	clock    *eachlooptest.Clock
	api      *eachlooptest.API
	client   *eachlabs.Client
	exp      eachloop.Expectations
	loop     *eachloop.Loop
	h        *eachhook.Handler
	calls    *calls
	errs     chan error // the Handler's and the Loop's error hook
	receiver *httptest.Server
	store    *eachhook.MemoryStore // the store inside the Loop's tracking store

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
	r := &rig{t: t, clock: eachlooptest.NewClock(t0), errs: make(chan error, 100), calls: &calls{done: make(chan string, 100)}}
	r.api = eachlooptest.NewAPI(r.clock.Now)
	t.Cleanup(r.api.Close)
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

	r.exp = rc.exp
	if r.exp == nil {
		r.exp = newMemoryExpectations(t, eachloop.WithMemoryClock(r.clock.Now))
	}
	onError := func(ctx context.Context, err error) { r.errs <- err }
	opts := append([]eachloop.Option{eachloop.WithClock(r.clock.Now, r.clock.Sleep), eachloop.WithLogger(quiet), eachloop.WithErrorHandler(onError)}, rc.loopOpts...)
	r.loop, err = eachloop.New(r.client, r.exp, r.receiver.URL+"/webhooks/prediction", opts...)
	require.NoError(t, err)

	store := eachhook.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	r.store = store
	hookOpts := append([]eachhook.Option{
		eachhook.WithSecretLookup(r.loop.SecretLookup),
		eachhook.WithStore(r.loop.Store(store)),
		eachhook.WithLogger(quiet),
		eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(onError),
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
		case <-time.After(eachlooptest.Guard):
			r.t.Fatal("Run did not return")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), eachlooptest.Guard)
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
	code, err := r.api.Deliver(context.Background(), id, secret, body)
	require.NoError(r.t, err)
	return code
}

// gets returns when each poll of id came, counted from t0.
func (r *rig) gets(id string) []time.Duration {
	var out []time.Duration
	for _, at := range r.api.Gets(id) {
		out = append(out, at.Sub(t0))
	}
	return out
}

// secret returns the webhook_secret prediction id was created with.
func (r *rig) secret(id string) string { return r.api.Request(id).WebhookSecret }

// callback waits for the next callback and returns its prediction id.
func (r *rig) callback() string {
	r.t.Helper()
	select {
	case id := <-r.calls.done:
		return id
	case <-time.After(eachlooptest.Guard):
		r.t.Fatal("no callback ran")
	}
	return ""
}

// stepUntilPolled steps the clock until the API has been polled for id n
// times, and at most one scan interval further: dispatching the n-th
// answer needs no more fake time.
func (r *rig) stepUntilPolled(id string, n int) {
	r.t.Helper()
	for len(r.api.Gets(id)) < n {
		r.clock.Step(r.t)
	}
}

func (r *rig) pending() []eachloop.Expectation {
	r.t.Helper()
	p, err := r.exp.Pending(context.Background(), r.clock.Now().Add(365*24*time.Hour))
	require.NoError(r.t, err)
	return p
}

func jsonField(t *testing.T, raw []byte, key string) string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	return string(bytes.TrimSpace(m[key]))
}
