// Command nethttp is a runnable each::labs webhook receiver on net/http.
//
//	EACHHOOK_SECRET=whsec_demo go run ./examples/nethttp -addr 127.0.0.1:8080
//
// It logs each verified event and shuts down gracefully on SIGINT/SIGTERM.
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
	path := flag.String("path", "/webhooks/prediction", "webhook path")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		log.Info("listening", "addr", ln.Addr().String(), "path", *path)
		err = run(ctx, ln, *path, os.Getenv("EACHHOOK_SECRET"), log)
	}
	if err != nil {
		log.Error("receiver failed", "err", err)
		os.Exit(1)
	}
}

// run serves webhooks on ln until ctx ends, then shuts down gracefully.
func run(ctx context.Context, ln net.Listener, path, secret string, log *slog.Logger) error {
	defer ln.Close()
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(log))
	if err != nil {
		return errors.New("set EACHHOOK_SECRET to the webhook_secret of your predictions: " + err.Error())
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		urls, _ := s.URLs()
		log.Info("prediction succeeded", "id", s.ID, "output", urls, "predict_time", s.Metrics.PredictTime, "cost", s.Metrics.Cost)
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		log.Info("prediction failed", "id", f.ID, "logs", f.Logs)
		return nil
	})

	mux := http.NewServeMux()
	mux.Handle("POST "+path, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Stop taking requests first, then drain the accepted deliveries.
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	return h.Shutdown(shutdownCtx)
}
