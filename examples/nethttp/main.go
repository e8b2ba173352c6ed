// Command nethttp is a runnable each::labs webhook receiver on net/http:
//
//	EACHHOOK_SECRET=whsec_demo go run ./examples/nethttp -addr 127.0.0.1:8080
//
// It logs each verified event, serves GET /healthz, and on SIGINT or
// SIGTERM stops the server first, then runs the deliveries already
// accepted.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eachhook/eachhook"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		err = run(ctx, ln, os.Getenv("EACHHOOK_SECRET"), log)
	}
	if err != nil {
		log.Error("receiver failed", "err", err)
		os.Exit(1)
	}
}

// run serves webhooks on ln until ctx ends, then shuts down gracefully.
func run(ctx context.Context, ln net.Listener, secret string, log *slog.Logger) error {
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(log))
	if err != nil {
		return errors.New("set EACHHOOK_SECRET to your predictions' webhook_secret: " + err.Error())
	}
	// Register every callback before serving. A callback runs at least
	// once per prediction id: make it idempotent.
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		urls, err := s.URLs() // or s.URL(), or s.Decode(&v) for object outputs
		log.Info("prediction succeeded", "id", s.ID, "output", urls, "predict_time", s.Metrics.PredictTime, "cost", s.Metrics.Cost)
		return err
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		log.Info("prediction failed", "id", f.ID, "code", f.Code, "logs", f.Logs)
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/prediction", h)
	mux.Handle("GET /healthz", h.Health())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done(): // SIGINT or SIGTERM
	}
	// ctx is done: shut down with a fresh context, the server first (no
	// delivery is accepted after the Handler stops), then the Handler,
	// which runs every delivery it accepted.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(ctx), h.Shutdown(ctx))
}
