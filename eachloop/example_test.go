package eachloop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/eachlooptest"
)

// A service creates two predictions: the outcome of the first comes by
// webhook; the webhook of the second never comes, so the reconciler polls
// the API for it. Each callback runs once.
func Example() {
	ctx := context.Background()
	api := eachlooptest.NewAPI(time.Now) // a stand-in for https://api.eachlabs.ai
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	defer api.Close()
	mux := http.NewServeMux()
	receiver := httptest.NewServer(mux)
	defer receiver.Close()

	client, _ := eachlabs.NewClient("YOUR_API_KEY", eachlabs.WithBaseURL(apiSrv.URL))
	exp, err := eachloop.NewMemoryExpectations()
	if err != nil {
		panic(err)
	}
	loop, err := eachloop.New(client, exp, receiver.URL+"/webhooks/prediction",
		eachloop.WithGrace(0), eachloop.WithScanInterval(10*time.Millisecond), // minutes in real life
		eachloop.WithPollWait(10*time.Millisecond, 10*time.Millisecond),
		eachloop.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h, err := eachhook.New(
		eachhook.WithSecretLookup(loop.SecretLookup),
		eachhook.WithStore(loop.Store(store)),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	done := make(chan string)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		var polled struct {
			Status string `json:"polled_status"`
		}
		json.Unmarshal(s.Raw, &polled)
		how := "webhook"
		if polled.Status != "" {
			how = "poll"
		}
		done <- fmt.Sprintf("%s succeeded, learned by %s", s.ID, how)
		return nil
	})
	mux.Handle("POST /webhooks/prediction", h)
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- loop.Run(runCtx, h) }()

	input := map[string]any{"prompt": "a lighthouse"}
	a, _ := loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: input})
	b, _ := loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: input})

	// The sender delivers a's outcome, signed with a's own secret; signed
	// with b's secret it would be refused.
	code, _ := api.Deliver(ctx, a, api.Request(b).WebhookSecret, eachhooktest.SuccessBody(a))
	fmt.Println("signed with another prediction's secret:", code)
	code, _ = api.Deliver(ctx, a, api.Request(a).WebhookSecret, eachhooktest.SuccessBody(a))
	fmt.Println("signed with its own secret:", code)
	fmt.Println(<-done)

	// b's webhook is lost; the API knows its outcome.
	api.Script(b, eachlooptest.Success(b))
	fmt.Println(<-done)

	stop()
	<-stopped
	h.Shutdown(ctx)
	// Output:
	// signed with another prediction's secret: 401
	// signed with its own secret: 200
	// pred-1 succeeded, learned by webhook
	// pred-2 succeeded, learned by poll
}
