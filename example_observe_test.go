package eachhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
)

// An Observer counts what the Handler did with each request.
func ExampleWithObserver() {
	var mu sync.Mutex
	outcomes := map[string]int{}
	count := func(outcome string) {
		mu.Lock()
		defer mu.Unlock()
		outcomes[outcome]++
	}
	h, err := eachhook.New(
		eachhook.WithSecret("whsec_example"),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)),
		eachhook.WithObserver(observe.Observer{
			Refused:  func(ctx context.Context, r observe.Refusal) { count("refused/" + string(r.Reason)) },
			Accepted: func(ctx context.Context, d observe.DeliveryInfo) { count("accepted") },
			Duplicate: func(ctx context.Context, d observe.DeliveryInfo) {
				count("duplicate")
			},
		}))
	if err != nil {
		panic(err)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { return nil })

	for _, r := range []*http.Request{
		eachhooktest.NewSuccessRequest("/webhook", "whsec_example", "pred-1"),
		eachhooktest.NewSuccessRequest("/webhook", "whsec_example", "pred-1"),
		eachhooktest.NewSuccessRequest("/webhook", "forged", "pred-2"),
	} {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.Shutdown(ctx)
	fmt.Println(outcomes)
	// Output: map[accepted:1 duplicate:1 refused/signature:1]
}

// The health endpoint answers 503 once Shutdown has begun, so that a load
// balancer stops sending deliveries.
func ExampleHandler_Health() {
	h, err := eachhook.New(eachhook.WithSecret("whsec_example"))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhook", h)
	mux.Handle("GET /healthz", h.Health())

	check := func() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		fmt.Print(w.Code, " ", w.Body.String())
	}
	check()
	h.Shutdown(context.Background())
	check()
	// Output:
	// 200 {"status":"ok"}
	// 503 {"status":"unavailable","reason":"shutting down"}
}
