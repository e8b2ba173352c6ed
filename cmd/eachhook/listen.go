package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/signature"
)

const listenUsage = `usage: eachhook listen -secret S [-addr 127.0.0.1:8080] [-path /webhooks/prediction] [-json]

Runs a receiver built on package eachhook: it verifies each request, answers
as the library does (200 at once, 401 for a bad signature, ...), runs each
prediction's callback once, and prints each verified event (id, status,
output URLs, cost, predict time, logs), each duplicate, and each refused
request with the reason. With -json it prints one JSON object per line
instead. Stops on Ctrl-C, after the events already accepted are printed.

It listens on 127.0.0.1 (this machine only) unless -addr says otherwise:
-addr :8080 takes requests from every interface, as a tunnel or another
machine needs.

Give -secret more than once to accept any of several secrets (rotation).
The secret may come from $EACHHOOK_SECRET instead of -secret. With
-legacy-secret-header it also accepts a delivery that carries no signature
but the secret itself in X-Webhook-Secret (eachhook.WithLegacySecretHeader).`

const listenExamples = `examples:
  eachhook listen -secret whsec_123
  eachhook listen -addr 127.0.0.1:9000 -path /hooks/eachlabs -secret whsec_old -secret whsec_new
  eachhook listen -secret whsec_123 -json | jq .
  eachhook listen -addr :8080 -secret whsec_123   # every interface
  eachhook listen -secret whsec_123 -legacy-secret-header   # also the plain X-Webhook-Secret form
  # in another terminal:
  eachhook send -url http://localhost:8080/webhooks/prediction -secret whsec_123`

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (a *app) listen(args []string) int {
	fs := a.flagSet("listen", listenUsage, listenExamples)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (host:port; \":8080\" for every interface)")
	path := fs.String("path", "/webhooks/prediction", "URL path of the receiver; other paths answer 404")
	var secrets stringList
	fs.Var(&secrets, "secret", "a webhook_secret to accept; repeat for several (default $EACHHOOK_SECRET)")
	jsonOut := fs.Bool("json", false, "print one JSON object per line")
	tolerance := fs.Duration("tolerance", signature.DefaultTolerance, "how far a signed timestamp may lie from now, either way")
	verbose := fs.Bool("v", false, "also print the library's own log on standard error")
	legacy := fs.Bool("legacy-secret-header", false, "also accept the plain secret in "+signature.HeaderSecret+" instead of a signature")
	if code, ok := a.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
	if len(secrets) == 0 {
		if s := a.getenv("EACHHOOK_SECRET"); s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		return a.usageError(fs, "-secret is required (or set $EACHHOOK_SECRET)")
	}
	if !strings.HasPrefix(*path, "/") {
		return a.usageError(fs, "-path must start with /")
	}
	if *tolerance <= 0 {
		return a.usageError(fs, "-tolerance must be > 0")
	}

	out := &eventPrinter{w: &lockedWriter{w: a.stdout}, json: *jsonOut}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(&lockedWriter{w: a.stderr}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rc, err := newReceiver(receiverConfig{
		secrets:   secrets,
		path:      *path,
		tolerance: *tolerance,
		legacy:    *legacy,
		now:       a.now,
		logger:    logger,
		onSuccess: func(_ context.Context, s *eachhook.Success) error { out.success(a.now(), s); return nil },
		onFailed:  func(_ context.Context, f *eachhook.Failure) error { out.failure(a.now(), f); return nil },
		report:    out.outcome,
	})
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook listen: %v\n", err)
		return 1
	}
	defer rc.Shutdown(context.Background())

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook listen: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(a.stderr, "eachhook listen: receiving on http://%s%s (Ctrl-C to stop)\n", displayAddr(ln.Addr()), *path)
	if a.ready != nil {
		a.ready(ln.Addr().String())
	}

	code := 0
	select {
	case <-a.ctx.Done():
	case err := <-served:
		fmt.Fprintf(a.stderr, "eachhook listen: %v\n", err)
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(a.stderr, "eachhook listen: stopping the server: %v\n", err)
		code = 1
	}
	if code == 0 {
		<-served // http.ErrServerClosed
	}
	if err := rc.Shutdown(ctx); err != nil {
		fmt.Fprintf(a.stderr, "eachhook listen: events not printed before the deadline: %v\n", err)
		code = 1
	}
	return code
}

// displayAddr turns a wildcard listen address into one a browser or curl
// can use.
func displayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// lockedWriter serialises writes from the server's and the workers'
// goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// eventPrinter prints events and outcomes, readably or as JSON lines. Each
// event is one Write.
type eventPrinter struct {
	w    io.Writer
	json bool
}

// jsonEvent is one line of -json output.
type jsonEvent struct {
	Time        time.Time       `json:"time"`
	Event       string          `json:"event"` // success, failed, duplicate, ignored, refused
	ID          string          `json:"id,omitempty"`
	Status      string          `json:"status,omitempty"`
	Code        int             `json:"code,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Error       string          `json:"error,omitempty"`
	Remote      string          `json:"remote,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	URLs        []string        `json:"urls,omitempty"`
	Cost        *float64        `json:"cost,omitempty"`
	PredictTime *float64        `json:"predict_time,omitempty"`
	Logs        string          `json:"logs,omitempty"`
	Input       json.RawMessage `json:"input,omitempty"`
}

func (p *eventPrinter) writeJSON(e jsonEvent) {
	b, err := json.Marshal(e)
	if err != nil {
		// Output or Input was not valid JSON; it came verified from the
		// sender, so keep the event and drop the raw fields.
		e.Output, e.Input = nil, nil
		b, _ = json.Marshal(e)
	}
	p.w.Write(append(b, '\n'))
}

func (p *eventPrinter) success(now time.Time, s *eachhook.Success) {
	urls, _ := s.URLs()
	if p.json {
		p.writeJSON(jsonEvent{Time: now, Event: eachhook.StatusSuccess, ID: s.ID, Status: eachhook.StatusSuccess,
			Output: nullToNil(s.Output), URLs: urls, Cost: nonZero(s.Metrics.Cost), PredictTime: nonZero(s.Metrics.PredictTime),
			Logs: s.Logs, Input: nullToNil(s.Input)})
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s success %s\n", now.Format(time.TimeOnly), s.ID)
	switch {
	case len(urls) > 0:
		for _, u := range urls {
			field(&b, "output", u)
		}
	case len(s.Output) > 0:
		field(&b, "output", shorten(string(s.Output), 300))
	}
	if s.Metrics.Cost != 0 {
		field(&b, "cost", fmt.Sprint(s.Metrics.Cost))
	}
	if s.Metrics.PredictTime != 0 {
		field(&b, "predict time", fmt.Sprintf("%vs", s.Metrics.PredictTime))
	}
	if s.Logs != "" {
		field(&b, "logs", shorten(s.Logs, 2000))
	}
	io.WriteString(p.w, b.String())
}

func (p *eventPrinter) failure(now time.Time, f *eachhook.Failure) {
	if p.json {
		p.writeJSON(jsonEvent{Time: now, Event: eachhook.StatusFailed, ID: f.ID, Status: eachhook.StatusFailed,
			Output: nullToNil(f.Output), Cost: nonZero(f.Metrics.Cost), PredictTime: nonZero(f.Metrics.PredictTime),
			Logs: f.Logs, Input: nullToNil(f.Input)})
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed  %s\n", now.Format(time.TimeOnly), f.ID)
	if f.Logs != "" {
		field(&b, "logs", shorten(f.Logs, 2000))
	}
	if out := nullToNil(f.Output); out != nil {
		field(&b, "output", shorten(string(out), 300))
	}
	if f.Metrics.PredictTime != 0 {
		field(&b, "predict time", fmt.Sprintf("%vs", f.Metrics.PredictTime))
	}
	io.WriteString(p.w, b.String())
}

// outcome prints what the receiver did with a request, except for an
// accepted one: its callback prints the event.
func (p *eventPrinter) outcome(o outcome) {
	if o.Kind == kindAccepted {
		return
	}
	if p.json {
		e := jsonEvent{Time: o.Time, Event: o.Kind, ID: o.ID, Status: o.Status, Code: o.Code, Reason: o.Reason, Remote: o.Remote}
		if o.Err != nil {
			e.Error = o.Err.Error()
		}
		p.writeJSON(e)
		return
	}
	var line string
	switch o.Kind {
	case kindRefused:
		line = fmt.Sprintf("%s refused %d %s from %s: %s", o.Time.Format(time.TimeOnly), o.Code, http.StatusText(o.Code), o.Remote, o.Reason)
	default:
		line = fmt.Sprintf("%s %s %s: answered %d, %s", o.Time.Format(time.TimeOnly), o.Kind, o.ID, o.Code, o.Reason)
	}
	io.WriteString(p.w, line+"\n")
}

func field(b *strings.Builder, name, value string) {
	fmt.Fprintf(b, "         %-13s%s\n", name, value)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func nonZero(f float64) *float64 {
	if f == 0 {
		return nil
	}
	return &f
}

func nullToNil(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}
