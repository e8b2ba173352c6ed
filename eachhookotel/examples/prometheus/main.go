// Command prometheus serves an eachhook webhook endpoint beside its
// metrics in the Prometheus text format, exported through OpenTelemetry's
// Prometheus exporter, and a health endpoint:
//
//	cd eachhookotel && go run ./examples/prometheus
//
//	POST /webhooks/prediction   the webhook endpoint
//	GET  /metrics               Prometheus metrics (eachhook_deliveries_received_total, ...)
//	GET  /healthz               200 while accepting deliveries, 503 otherwise
//
// It listens on 127.0.0.1:8080 (flag -addr) and verifies deliveries with
// the secret in EACHHOOK_SECRET, or "whsec_demo" (the README's) when that
// is unset.
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
	"github.com/eachhook/eachhook/eachhookotel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// exampleSecret is used when EACHHOOK_SECRET is unset, so that the example
// runs with one command. Never use a well-known secret on a reachable
// endpoint.
const exampleSecret = "whsec_demo"

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	secret := os.Getenv("EACHHOOK_SECRET")
	if secret == "" {
		secret = exampleSecret
		logger.Warn("EACHHOOK_SECRET is unset: verifying with the README's demo secret; never use it on a reachable endpoint")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	logger.Info("serving", "webhook", "http://"+ln.Addr().String()+"/webhooks/prediction",
		"metrics", "http://"+ln.Addr().String()+"/metrics", "health", "http://"+ln.Addr().String()+"/healthz")
	if err := run(ctx, ln, secret, logger); err != nil {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends, then shuts down: first the HTTP server
// (no new requests), then the Handler (drains accepted deliveries).
func run(ctx context.Context, ln net.Listener, secret string, logger *slog.Logger) error {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())

	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithLogger(logger))
	if err != nil {
		return err
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		logger.Info("prediction succeeded", "id", s.ID, "output", string(s.Output))
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		logger.Info("prediction failed", "id", f.ID, "logs", f.Logs)
		return nil
	})

	mux := http.NewServeMux()
	mux.Handle("/webhooks/prediction", h) // every method, so that the Handler counts a wrong one
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", h.Health())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdownCtx), h.Shutdown(shutdownCtx))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
