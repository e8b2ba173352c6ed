// Command closedloop creates each::labs predictions, each with a webhook
// secret of its own, and receives every outcome either way: by its
// webhook, or by polling the API when the webhook never comes.
//
//	go run ./examples/closedloop
//
// It runs against a fake each::labs API on 127.0.0.1 that delivers the
// webhook of the first prediction and loses the second's, prints how each
// outcome arrived, and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		err = run(ctx, ln, os.Stdout, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "closedloop:", err)
		os.Exit(1)
	}
}

// run receives webhooks on ln, creates two predictions against a fake API
// and writes each outcome to out as it arrives.
func run(ctx context.Context, ln net.Listener, out io.Writer, log *slog.Logger) error {
	api := newFakeAPI()
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	defer api.Close()

	client, err := eachlabs.NewClient("demo-key", eachlabs.WithBaseURL(apiSrv.URL))
	if err != nil {
		return err
	}
	// Short periods so that the demo ends quickly; the defaults are a
	// grace period of 15 minutes and a horizon of 6 hours.
	exp, err := eachloop.NewMemoryExpectations()
	if err != nil {
		return err
	}
	loop, err := eachloop.New(client, exp,
		"http://"+ln.Addr().String()+"/webhooks/prediction",
		eachloop.WithGrace(time.Second), eachloop.WithScanInterval(100*time.Millisecond),
		eachloop.WithPollWait(100*time.Millisecond, time.Second), eachloop.WithLogger(log))
	if err != nil {
		return err
	}
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h, err := eachhook.New(
		eachhook.WithSecretLookup(loop.SecretLookup), // each delivery is verified with its own prediction's secret
		eachhook.WithStore(loop.Store(store)),        // an accepted outcome stops the polling
		eachhook.WithLogger(log),
	)
	if err != nil {
		return err
	}
	outcomes := make(chan string, 2)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		url, _ := s.URL()
		how := "webhook"
		var polled struct {
			Status string `json:"polled_status"`
		}
		if json.Unmarshal(s.Raw, &polled) == nil && polled.Status != "" {
			how = "poll"
		}
		outcomes <- fmt.Sprintf("%s succeeded, learned by %s: %s", s.ID, how, url)
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		outcomes <- fmt.Sprintf("%s failed: %s", f.ID, f.Logs)
		return nil
	})

	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/prediction", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	runCtx, stopLoop := context.WithCancel(ctx)
	looped := make(chan error, 1)
	go func() { looped <- loop.Run(runCtx, h) }()

	err = createAndWait(ctx, loop, outcomes, out)

	stopLoop()
	<-looped
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdownCtx), h.Shutdown(shutdownCtx))
	if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// createAndWait creates one prediction whose webhook arrives and one whose
// webhook is lost, and waits for both outcomes.
func createAndWait(ctx context.Context, loop *eachloop.Loop, outcomes <-chan string, out io.Writer) error {
	for _, prompt := range []string{"a lighthouse at dawn", "a lighthouse whose webhook gets lost"} {
		id, err := loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: map[string]any{"prompt": prompt}})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created %s (%q)\n", id, prompt)
		select {
		case o := <-outcomes:
			fmt.Fprintln(out, o)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
