package expectationstest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/eachlooptest"
)

// Backend opens what one run of the service keeps its state in.
// RunRestart calls it once per process; the second call, after a restart,
// must see what the first wrote. It should open new clients, as a new
// process does, and close them when the test ends (a Queue given in
// Options is shut down with the Handler).
type Backend func(t *testing.T) Process

// Process is what a [Backend] opens for one run of the service.
type Process struct {
	// Expectations records the predictions.
	Expectations eachloop.Expectations
	// Store is the Handler's dedupe store; the Loop wraps it.
	Store eachhook.Store
	// Options are more options of the Handler, such as eachhook.WithQueue.
	Options []eachhook.Option
}

// RunRestart runs a service (an eachloop.Loop and an eachhook.Handler on
// the backend) that creates two predictions against a fake API, restarts
// it, and checks that the expectations and their secrets survived: the
// webhook of the first prediction, signed with its secret, is verified by
// the new process (and one signed with the other's secret is refused with
// 401), the second, whose webhook never comes, is polled and dispatched,
// its late webhook is a duplicate, and each callback ran once.
func RunRestart(t *testing.T, open Backend) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	clock1, clock2 := eachlooptest.NewClock(t0), eachlooptest.NewClock(t0.Add(time.Minute))
	api := eachlooptest.NewAPI(clock2.Now) // only the second process polls
	t.Cleanup(api.Close)
	apiSrv := httptest.NewServer(api)
	t.Cleanup(apiSrv.Close)
	// The webhook URL stays while the process behind it restarts.
	var route atomic.Pointer[eachhook.Handler]
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { route.Load().ServeHTTP(w, r) }))
	t.Cleanup(receiver.Close)

	var mu sync.Mutex
	runs := map[string]int{}
	done := make(chan string, 10)
	start := func(clock *eachlooptest.Clock) *process {
		t.Helper()
		st := open(t)
		p := &process{t: t}
		quiet := slog.New(slog.DiscardHandler)
		client, err := eachlabs.NewClient("test-key", eachlabs.WithBaseURL(apiSrv.URL))
		check(t, err)
		p.loop, err = eachloop.New(client, st.Expectations, receiver.URL+"/webhooks/prediction",
			eachloop.WithClock(clock.Now, clock.Sleep), eachloop.WithLogger(quiet))
		check(t, err)
		p.h, err = eachhook.New(append([]eachhook.Option{
			eachhook.WithSecretLookup(p.loop.SecretLookup), eachhook.WithStore(p.loop.Store(st.Store)),
			eachhook.WithLogger(quiet),
		}, st.Options...)...)
		check(t, err)
		p.h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			mu.Lock()
			runs[s.ID]++
			mu.Unlock()
			done <- s.ID
			return nil
		})
		check(t, p.h.Start(ctx)) // a durable queue runs what the last process left
		route.Store(p.h)
		runCtx, cancel := context.WithCancel(ctx)
		p.cancel, p.ran = cancel, make(chan error, 1)
		go func() { p.ran <- p.loop.Run(runCtx, p.h) }()
		t.Cleanup(p.stop)
		return p
	}
	deliver := func(id, secret string, want int) {
		t.Helper()
		code, err := api.Deliver(ctx, id, secret, eachhooktest.SuccessBody(id))
		check(t, err)
		if code != want {
			t.Fatalf("delivery of %s: status %d, want %d", id, code, want)
		}
	}
	receive := func(got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("callback for %s, want %s", got, want)
		}
	}

	first := start(clock1)
	input := map[string]any{"prompt": "a lighthouse"}
	a, err := first.loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: input})
	check(t, err)
	b, err := first.loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: input})
	check(t, err)
	first.stop()

	second := start(clock2)
	deliver(a, api.Request(b).WebhookSecret, http.StatusUnauthorized)
	deliver(a, api.Request(a).WebhookSecret, http.StatusOK)
	select {
	case id := <-done:
		receive(id, a)
	case <-time.After(eachlooptest.Guard):
		t.Fatal("no callback for the webhook delivered after the restart")
	}

	api.Script(b, eachlooptest.Success(b))
	receive(eachlooptest.StepUntilReceive(t, clock2, done), b)
	if got, want := api.Gets(b), []time.Time{t0.Add(eachloop.DefaultGrace)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("polls of %s at %v, want %v", b, got, want)
	}
	if got := api.Gets(a); len(got) != 0 {
		t.Fatalf("%s was polled at %v after its webhook was accepted", a, got)
	}
	deliver(b, api.Request(b).WebhookSecret, http.StatusOK) // late: a duplicate
	clock2.StepUntil(t, t0.Add(2*time.Hour))
	if got := api.Gets(b); len(got) != 1 {
		t.Fatalf("%s polled %d times, want 1", b, len(got))
	}
	second.stop()

	mu.Lock()
	defer mu.Unlock()
	if want := map[string]int{a: 1, b: 1}; !reflect.DeepEqual(runs, want) {
		t.Fatalf("callbacks ran %v, want %v", runs, want)
	}
}

// process is one run of the service.
type process struct {
	t       *testing.T
	loop    *eachloop.Loop
	h       *eachhook.Handler
	cancel  context.CancelFunc
	ran     chan error
	stopped bool
}

// stop ends the process as a graceful shutdown does.
func (p *process) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	p.cancel()
	select {
	case <-p.ran:
	case <-time.After(eachlooptest.Guard):
		p.t.Fatal("Run did not return")
	}
	ctx, cancel := context.WithTimeout(context.Background(), eachlooptest.Guard)
	defer cancel()
	check(p.t, p.h.Shutdown(ctx))
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
