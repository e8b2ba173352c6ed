// Command riverui is an each::labs webhook receiver in durable mode on
// Postgres that serves River UI (riverqueue.com/riverui) on the same router
// and the same database, behind HTTP basic auth, and traces each job back to
// the request that stored it with otelriver.
//
//	DATABASE_URL='postgres://eachhook:eachhook@127.0.0.1:5432/eachhook?sslmode=disable' \
//	EACHHOOK_SECRET=whsec_demo RIVERUI_USER=admin RIVERUI_PASSWORD=change-me \
//	go run . -addr 127.0.0.1:8080
//
// Routes:
//
//	POST /webhooks/prediction   the eachhook Handler (durable.NewPostgres queue)
//	GET  /healthz               the Handler's health
//	     /riverui/              River UI, only with RIVERUI_USER and RIVERUI_PASSWORD set
//
// Without RIVERUI_USER and RIVERUI_PASSWORD the UI is not mounted (404):
// River UI can retry, cancel and delete jobs, so it is never open by
// default. Setting only one of the two is an error.
//
// Dead letters, the deliveries whose callbacks failed every attempt, are
// River's discarded jobs: in the UI, Jobs, state "Discarded"
// (/riverui/jobs?state=discarded), kind eachhook_delivery, with each
// attempt's error.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"riverqueue.com/riverui"
)

// uiPrefix is where River UI is mounted.
const uiPrefix = "/riverui"

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	schema := flag.String("schema", "", "Postgres schema of River's tables (empty: the search_path)")
	maxAttempts := flag.Int("max-attempts", 0, "attempts before a failing callback's job is discarded (0: durable's default, 10)")
	failPrefix := flag.String("fail-prefix", "", "for trying the UI out: callbacks of prediction ids with this prefix return an error, so their jobs end up discarded")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr, *schema, *maxAttempts, *failPrefix, log); err != nil {
		log.Error("receiver failed", "err", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, addr, schema string, maxAttempts int, failPrefix string, log *slog.Logger) error {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("set DATABASE_URL to the Postgres database of the River tables")
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String(), "webhook", "/webhooks/prediction", "ui", uiPrefix+"/")
	return run(ctx, ln, config{
		Secret:     os.Getenv("EACHHOOK_SECRET"),
		Pool:       pool,
		Schema:     schema,
		UIUser:     os.Getenv("RIVERUI_USER"),
		UIPassword: os.Getenv("RIVERUI_PASSWORD"),
		Durable:    durable.Config{MaxAttempts: maxAttempts, Logger: log},
		FailPrefix: failPrefix,
		Log:        log,
	})
}

// config is what run needs; main fills it from the flags and environment,
// the tests directly.
type config struct {
	// Secret is the webhook secret (EACHHOOK_SECRET).
	Secret string
	// Pool and Schema locate River's tables; run migrates them.
	Pool   *pgxpool.Pool
	Schema string
	// UIUser and UIPassword are the basic-auth credentials of River UI;
	// both empty leaves the UI unmounted.
	UIUser, UIPassword string
	// Durable configures the queue; run appends otelriver to its Plugins.
	Durable durable.Config
	// TracerProvider traces requests and jobs; nil is otel's global one.
	TracerProvider trace.TracerProvider
	// FailPrefix makes the callbacks of ids with this prefix fail.
	FailPrefix string
	// OnDone, if set, is called after each callback with its id and error.
	OnDone func(ctx context.Context, id string, err error)
	Log    *slog.Logger
}

// run serves the webhook, health and River UI on ln until ctx ends, then
// shuts down gracefully.
func run(ctx context.Context, ln net.Listener, cfg config) error {
	defer ln.Close()
	if (cfg.UIUser == "") != (cfg.UIPassword == "") {
		return errors.New("set both RIVERUI_USER and RIVERUI_PASSWORD to serve River UI, or neither to leave it off")
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if err := durable.MigratePostgres(ctx, cfg.Pool, cfg.Schema); err != nil {
		return err
	}

	// otelriver starts a span around each insert, a child of the request's
	// span (the queue inserts with the request's context), writes its trace
	// context into the job's metadata, and links each attempt's work span
	// to it.
	dcfg := cfg.Durable
	dcfg.Plugins = append(dcfg.Plugins[:len(dcfg.Plugins):len(dcfg.Plugins)], otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
		EnableTracePropagation: true,
		TracerProvider:         tp,
	}))
	dcfg.Schema = cfg.Schema
	q, err := durable.NewPostgres(cfg.Pool, dcfg)
	if err != nil {
		return err
	}
	h, err := eachhook.New(eachhook.WithSecret(cfg.Secret), eachhook.WithLogger(cfg.Log), eachhook.WithQueue(q))
	if err != nil {
		return errors.New("set EACHHOOK_SECRET to the webhook_secret of your predictions: " + err.Error())
	}
	done := func(ctx context.Context, id string, err error) error {
		if cfg.OnDone != nil {
			cfg.OnDone(ctx, id, err)
		}
		return err
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if cfg.FailPrefix != "" && strings.HasPrefix(s.ID, cfg.FailPrefix) {
			return done(ctx, s.ID, fmt.Errorf("demo failure of %s (id has prefix %q)", s.ID, cfg.FailPrefix))
		}
		urls, _ := s.URLs()
		cfg.Log.Info("prediction succeeded", "id", s.ID, "output", urls)
		return done(ctx, s.ID, nil)
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		cfg.Log.Info("prediction failed", "id", f.ID, "logs", f.Logs)
		return done(ctx, f.ID, nil)
	})

	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/prediction", otelhttp.NewHandler(h, "POST /webhooks/prediction", otelhttp.WithTracerProvider(tp)))
	mux.Handle("GET /healthz", h.Health())

	uiCtx, stopUI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUI()
	if cfg.UIPassword != "" {
		ui, err := newUI(uiCtx, cfg.Pool, cfg.Schema, cfg.Log)
		if err != nil {
			return err
		}
		// The UI can retry, cancel and delete jobs: refuse cross-origin
		// writes too, since a browser resends basic-auth credentials on
		// requests other sites make.
		protected := requireBasicAuth(cfg.UIUser, cfg.UIPassword, http.NewCrossOriginProtection().Handler(ui))
		mux.Handle(uiPrefix+"/", protected)
		mux.Handle(uiPrefix, protected)
	} else {
		cfg.Log.Warn("River UI is off: set RIVERUI_USER and RIVERUI_PASSWORD to serve it at " + uiPrefix + "/")
	}

	if err := h.Start(ctx); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = errors.Join(serveErr, srv.Shutdown(shutdownCtx), h.Shutdown(shutdownCtx))
	stopUI()
	return err
}

// newUI returns River UI over River's tables in schema, started with ctx.
// It has a River client of its own, never started: the UI reads and
// changes jobs through it, the durable queue's client works them.
func newUI(ctx context.Context, pool *pgxpool.Pool, schema string, log *slog.Logger) (*riverui.Handler, error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: log, Schema: schema})
	if err != nil {
		return nil, err
	}
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil),
		Logger:    log,
		Prefix:    uiPrefix,
	})
	if err != nil {
		return nil, err
	}
	if err := ui.Start(ctx); err != nil {
		return nil, err
	}
	return ui, nil
}

// requireBasicAuth answers 401 with a Basic challenge unless the request
// carries user and password. The comparison takes the same time whatever
// the guess.
func requireBasicAuth(user, password string, next http.Handler) http.Handler {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passwordOK := subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		if !ok || userOK&passwordOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="River UI", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
