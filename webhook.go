package eachhook

// This file owns the Handler and the steps of a request that are not
// verification, decoding or admission: ServeHTTP reads the request, hands
// it to verify.go, payload.go and idempotency.go in turn and answers it in
// one place, answer, which turns the outcome into its status and tells the
// observer once. It also holds the Handler's life cycle (Start, Shutdown),
// Health, and Deliver for deliveries that were not signed requests.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
)

// Handler receives each::labs webhooks: it verifies each request, answers at
// once, accepts each id once and runs its callback on a worker goroutine, at
// least once. Create it with [New] and register its callbacks; it is an
// [http.Handler].
type Handler struct {
	cfg      config
	log      *slog.Logger
	verifier *signature.Verifier // nil without WithSecret
	store    Store
	ownStore *MemoryStore // the default store, closed by Shutdown
	queue    Queue
	// claimLease is how long an accepted id stays claimed as in progress,
	// derived once from the retry and timeout settings (see WithRetry).
	claimLease time.Duration
	memQueue   *memQueue // the queue when it is the in-memory one, else nil
	dead       deadLetters
	running    running  // the callback attempts running now
	failed     failures // recent failures, for Health

	// callbacks are written only before serving starts (see register).
	callbacks callbacks

	mu      sync.Mutex  // serialises registration, Start and the start of Shutdown
	serving atomic.Bool // set by Start, the first request or Shutdown: configuration is fixed
	started atomic.Bool // the queue runs
	closing atomic.Bool // Shutdown has begun
}

// New returns a Handler configured by opts, or an error matching
// [ErrInvalidOption].
func New(opts ...Option) (*Handler, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.logger, store: cfg.store, queue: cfg.queue, claimLease: cfg.claimLease()}
	if h.log == nil {
		h.log = slog.Default()
	}
	if len(cfg.secrets) > 0 {
		v, err := signature.NewVerifier(cfg.secrets...)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
		h.verifier = v
	}
	if h.store == nil {
		h.ownStore = newMemoryStore(0, cfg.now)
		h.store = h.ownStore
	}
	h.dead.store, h.dead.stop = cfg.deadLetters, make(chan struct{})
	if h.dead.store == nil {
		h.dead.store = newMemoryDeadLetters(h.log, memoryDeadLettersMax, memoryDeadLettersMaxBytes)
	}
	if h.queue == nil {
		h.memQueue = newMemQueue(memQueueConfig{
			workers: cfg.workers, size: cfg.queueSize, attempts: cfg.maxAttempts, backoff: cfg.backoff,
			onChange: cfg.observer.QueueChanged, onLost: h.lost,
		})
		h.queue = h.memQueue
	}
	return h, nil
}

// lost logs an accepted delivery that will never run (the in-memory queue
// dropped it at Shutdown's deadline), tells the observer and releases its
// claim, so that a redelivery is processed.
func (h *Handler) lost(d Delivery) {
	h.log.Error("eachhook: accepted delivery not run before shutdown", "id", d.ID, "status", d.Status)
	if f := h.cfg.observer.GaveUp; f != nil {
		f(context.Background(), observe.DeliveryInfo{ID: d.ID, Status: d.Status}, 0, observe.ErrNotRun)
	}
	if err := h.store.Release(context.Background(), d.ID, d.Claim); err != nil {
		h.log.Error("eachhook: release failed", "id", d.ID, "err", err)
	}
}

// ServeHTTP implements [http.Handler]. See the package documentation for
// the status code of every outcome.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.answer(w, r, h.receive(r))
}

// result is what became of a request.
type result uint8

const (
	refused   result = iota // answered with the status of its reason
	accepted                // claimed and queued: its callback will run (200)
	duplicate               // its id was accepted before: nothing to run (200)
	ignored                 // a non-terminal status, or a dead letter at once: nothing to run (200)
)

// outcome is the result of a request with what answer needs to tell it.
type outcome struct {
	result result
	reason observe.Reason // of a refusal
	err    error          // behind a refusal, for the observer; nil when reason says all
	env    envelope       // of a verified delivery; zero before verification

	queueErr error // the queue's error, when the queue refused the delivery

	body []byte // of a request refused as unverified, to explain it in the log
}

func refusal(reason observe.Reason, err error) outcome {
	if err == errRefused {
		err = nil
	}
	return outcome{result: refused, reason: reason, err: err}
}

// receive takes a request through the steps up to the queue, in the order
// the package documentation gives, and returns its outcome: read (this
// file), authenticate (auth.go), admit (queue.go).
func (h *Handler) receive(r *http.Request) outcome {
	body, reason, err := h.read(r)
	if err != nil {
		return refusal(reason, err)
	}
	if err := h.authenticate(r, body); err != nil {
		o := refusal(reasonOf(err), err)
		o.body = body
		return o
	}
	env, p, err := decode(body)
	if err != nil {
		return refusal(observe.ReasonMalformed, err)
	}
	h.logPayload(r.Context(), env, body)
	d := Delivery{Body: body}
	if h.memQueue != nil { // the one queue that runs the Delivery it was given
		d.payload = p
	}
	return h.admit(r.Context(), env, d)
}

// logPayload logs a verified body when WithPayloadLogging is on.
func (h *Handler) logPayload(ctx context.Context, env envelope, body []byte) {
	if !h.cfg.logPayloads || !h.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	h.log.LogAttrs(ctx, slog.LevelDebug, "eachhook: verified payload",
		slog.String("id", env.ID), slog.String("status", env.Status), slog.String("body", string(body)))
}

// errRefused is behind the refusals whose reason says all; answer passes
// a nil error to the observer for them.
var errRefused = errors.New("eachhook: refused")

// read checks what can be checked before the body (the method, the
// Handler's state, the Content-Type) and reads the body. On error it
// returns the refusal's reason.
func (h *Handler) read(r *http.Request) ([]byte, observe.Reason, error) {
	switch {
	case r.Method != http.MethodPost:
		return nil, observe.ReasonMethod, errRefused
	case h.closing.Load():
		return nil, observe.ReasonShutdown, errRefused
	}
	if !h.started.Load() {
		if reason, err := h.startLazily(); err != nil {
			return nil, reason, err
		}
	}
	if h.stuck() {
		return nil, observe.ReasonStuck, errRefused
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return nil, observe.ReasonMediaType, errRefused
	}
	body, err := readBody(r.Body, r.ContentLength, h.cfg.maxBody)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, observe.ReasonTooLarge, errRefused
	case err != nil:
		return nil, observe.ReasonUnreadable, err
	}
	return body, "", nil
}

// answer writes the response for o: the one exit of ServeHTTP.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, o outcome) {
	code, text := h.settle(r, o)
	switch code {
	case http.StatusOK:
		w.WriteHeader(http.StatusOK)
		return
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	http.Error(w, text, code)
}

// settle turns o into its status code and response text, and logs it and
// tells the observer, once: what ServeHTTP and Receive share.
func (h *Handler) settle(r *http.Request, o outcome) (int, string) {
	ctx, obs := r.Context(), &h.cfg.observer
	info := observe.DeliveryInfo{ID: o.env.ID, Status: o.env.Status}
	switch o.result {
	case accepted:
		if obs.Accepted != nil {
			obs.Accepted(ctx, info)
		}
	case duplicate:
		if obs.Duplicate != nil {
			obs.Duplicate(ctx, info)
		}
	case ignored:
		if obs.Ignored != nil {
			obs.Ignored(ctx, info)
		}
	case refused:
		code, text := statusOf(o.reason)
		h.logRefusal(r, o)
		if obs.Refused != nil {
			obs.Refused(ctx, observe.Refusal{Reason: o.reason, StatusCode: code, ID: o.env.ID, Err: o.err})
		}
		return code, text
	}
	return http.StatusOK, ""
}

// Receive is ServeHTTP for a delivery that did not arrive as an
// *http.Request: it takes the method, headers (names in any case) and raw
// body and returns the status code ServeHTTP would answer; ctx plays the
// request context. Send a 503 with Retry-After and a 405 with Allow: POST.
func (h *Handler) Receive(ctx context.Context, method string, header http.Header, body []byte) int {
	header = canonical(header)
	r := (&http.Request{
		Method:        method,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	code, _ := h.settle(r, h.receive(r))
	return code
}

// canonical returns header with canonical names, as net/http gives a
// request's, merging the values of names that differ only in case; header
// itself when its names are canonical already.
func canonical(header http.Header) http.Header {
	for k := range header {
		if http.CanonicalHeaderKey(k) != k {
			c := make(http.Header, len(header))
			for k, v := range header {
				c[http.CanonicalHeaderKey(k)] = append(c[http.CanonicalHeaderKey(k)], v...)
			}
			return c
		}
	}
	if header == nil {
		return http.Header{}
	}
	return header
}

// retryAfterSeconds is the Retry-After value sent with a 503.
const retryAfterSeconds = "10"

// statusOf returns the status code and the response text of a refusal.
func statusOf(reason observe.Reason) (int, string) {
	switch reason {
	case observe.ReasonMethod:
		return http.StatusMethodNotAllowed, "method not allowed"
	case observe.ReasonShutdown:
		return http.StatusServiceUnavailable, "shutting down"
	case observe.ReasonNotStarted:
		return http.StatusServiceUnavailable, "not started"
	case observe.ReasonMediaType:
		return http.StatusUnsupportedMediaType, "content type must be application/json"
	case observe.ReasonTooLarge:
		return http.StatusRequestEntityTooLarge, "body too large"
	case observe.ReasonUnreadable:
		return http.StatusBadRequest, "cannot read body"
	case observe.ReasonSignature, observe.ReasonTimestamp:
		return http.StatusUnauthorized, "unauthorized"
	case observe.ReasonMalformed:
		return http.StatusBadRequest, "malformed payload"
	case observe.ReasonQueueFull:
		return http.StatusServiceUnavailable, "busy"
	case observe.ReasonStuck:
		return http.StatusServiceUnavailable, "callbacks stuck"
	}
	return http.StatusServiceUnavailable, "temporarily unavailable" // lookup, store
}

// logRefusal logs the refusals a user needs to see, at Warn for those a
// user meets while setting up (a wrong secret, a missing Content-Type).
// An unverified id, the secrets, the signature and an unverified body
// stay out of the log.
func (h *Handler) logRefusal(r *http.Request, o outcome) {
	switch o.reason {
	case observe.ReasonNotStarted:
		h.log.Error("eachhook: delivery refused: the Handler's queue is not started: call Handler.Start before serving", "err", o.err)
	case observe.ReasonLookup:
		h.log.Error("eachhook: secret lookup failed", "err", o.err)
	case observe.ReasonSignature, observe.ReasonTimestamp:
		h.log.Warn("eachhook: refused unverified delivery (401)", "reason", h.explain(r, o), "remote", r.RemoteAddr)
	case observe.ReasonMediaType:
		h.log.Warn("eachhook: refused delivery (415): the Content-Type is not JSON; the sender sends application/json",
			"content_type", clip(r.Header.Get("Content-Type"), 100), "remote", r.RemoteAddr)
	case observe.ReasonMalformed:
		h.log.Info("eachhook: refused malformed delivery", "err", o.err.Error())
	case observe.ReasonStore:
		h.log.Error("eachhook: delivery not accepted", "id", o.env.ID, "err", o.err)
	case observe.ReasonQueueFull:
		h.log.Warn("eachhook: delivery not queued: queue full", "id", o.env.ID)
	case observe.ReasonStuck:
		h.log.Warn("eachhook: delivery refused: every worker runs a callback past its timeout")
	}
}

// clip returns s cut to at most n bytes, for a header value in a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// isJSON reports whether a Content-Type names JSON: application/json or a
// +json type, with any parameters.
func isJSON(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if strings.EqualFold(ct, "application/json") {
		return true
	}
	return len(ct) > len("application/+json") &&
		strings.EqualFold(ct[:len("application/")], "application/") &&
		strings.EqualFold(ct[len(ct)-len("+json"):], "+json")
}

var errTooLarge = errors.New("eachhook: body too large")

// readBody reads the whole body, at most max bytes, into a buffer of its
// own (it becomes the delivery's body, so it is not pooled). The buffer
// grows with the bytes that arrive: a Content-Length alone, which anyone
// can send, reserves at most readAhead bytes.
func readBody(rc io.Reader, contentLength, max int64) ([]byte, error) {
	if contentLength > max {
		return nil, errTooLarge
	}
	size := int64(512)
	if contentLength >= 0 {
		size = min(contentLength, readAhead)
	}
	// One byte more than expected, so that EOF is seen without growing.
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, len(buf))
		}
		n, err := rc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, errTooLarge
		}
		if err == io.EOF {
			if contentLength >= 0 && int64(len(buf)) != contentLength {
				return nil, io.ErrUnexpectedEOF // fewer bytes than declared
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readAhead bounds the buffer reserved from a Content-Length.
const readAhead = 64 << 10

// ErrNotQueued is matched by the error of [Handler.Deliver] when the Handler
// could not take the delivery now; nothing was accepted.
var ErrNotQueued = errors.New("eachhook: delivery not queued")

// Deliver runs body, a trusted JSON object in a webhook's form, through the
// dedupe store and queue without checking a signature. It returns (true, nil)
// when the callback will run, (false, nil) when there is nothing to run (such
// as a duplicate), and otherwise an error matching [ErrMalformedPayload] or
// [ErrNotQueued], or the [Store]'s error.
func (h *Handler) Deliver(ctx context.Context, body []byte) (queued bool, err error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return false, err
	}
	if h.closing.Load() {
		return false, fmt.Errorf("%w: %w", ErrNotQueued, ErrShutdown)
	}
	if !h.started.Load() {
		if _, err := h.startLazily(); err != nil {
			return false, fmt.Errorf("%w: %w", ErrNotQueued, err)
		}
	}
	o := h.admit(ctx, env, Delivery{Body: body})
	switch {
	case o.result == accepted:
		return true, nil
	case o.result != refused:
		return false, nil
	case o.queueErr != nil:
		return false, fmt.Errorf("%w: %w", ErrNotQueued, o.queueErr)
	case o.reason == observe.ReasonStore:
		return false, o.err
	}
	return false, fmt.Errorf("%w: %s", ErrNotQueued, o.reason)
}

// ErrShutdown is returned by [Handler.Start] after [Handler.Shutdown].
var ErrShutdown = errors.New("eachhook: handler shut down")

// errNotStarted is behind the 503 answered while a Queue set with
// [WithQueue] is not started.
var errNotStarted = errors.New("eachhook: queue not started: call Handler.Start before serving")

// Start fixes the configuration and starts the [Queue]; with [WithQueue], call
// it before serving, and otherwise the first request does it. ctx bounds the
// start only. It returns nil if the queue already runs, the queue's error (a
// later call tries again), or [ErrShutdown] after [Handler.Shutdown].
func (h *Handler) Start(ctx context.Context) error {
	if h.started.Load() && !h.closing.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serving.Store(true)
	switch {
	case h.closing.Load():
		return ErrShutdown
	case h.started.Load():
		return nil
	}
	if err := h.queue.Start(ctx, runner{h: h, inline: h.memQueue != nil}); err != nil {
		return err
	}
	h.started.Store(true)
	return nil
}

// startLazily is what the first request does when the queue has not
// started: it starts the in-memory queue, and fixes the configuration
// with any queue. It returns the refusal's reason when it could not start.
func (h *Handler) startLazily() (observe.Reason, error) {
	if h.memQueue == nil {
		h.mu.Lock()
		h.serving.Store(true)
		h.mu.Unlock()
		return observe.ReasonNotStarted, errNotStarted
	}
	switch err := h.Start(context.Background()); {
	case errors.Is(err, ErrShutdown):
		return observe.ReasonShutdown, err
	case err != nil:
		return observe.ReasonNotStarted, err
	}
	return "", nil
}

// Shutdown stops accepting deliveries (new requests are answered 503),
// shuts the queue down and stops the default [MemoryStore]; it may be called
// more than once. The in-memory queue waits until every accepted delivery
// ran, retries included, unless ctx ends first: it then cancels the
// callbacks' context, logs the id of every delivery that never started (it
// is lost) and returns ctx.Err(). Callbacks still running may then still use
// the [Store] and call the [WithErrorHandler] function.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing.Store(true)
	h.serving.Store(true)
	h.mu.Unlock()
	err := h.queue.Shutdown(ctx)
	h.stopRetrying(ctx)
	if h.ownStore != nil {
		h.ownStore.Close()
	}
	return err
}

// Pinger is an optional interface of a [Store] or [Queue] that tells
// whether it is reachable (Ping returns nil); see [Handler.Health].
type Pinger interface {
	Ping(ctx context.Context) error
}

// healthTimeout bounds one health check, its [Pinger.Ping] calls included.
const healthTimeout = 2 * time.Second

// healthRecent is how long a failure that refused a delivery keeps Health
// at 503 unless the same step succeeds before, by the Handler's clock.
const healthRecent = 10 * time.Second

// Reasons written by [Handler.Health] with a 503. They hold no character
// JSON would escape.
const (
	healthShuttingDown     = "shutting down"
	healthNotStarted       = "not started"
	healthQueueFull        = "queue full"
	healthStuck            = "callbacks stuck past their timeout"
	healthStoreFailed      = "store failed"
	healthQueueFailed      = "queue failed"
	healthDeadLetterFailed = "dead-letter store failed"
	healthStoreUnreachable = "store unreachable"
	healthQueueUnreachable = "queue unreachable"
)

// failures holds, for each step whose failure refuses or endangers a
// delivery, when it last failed (Unix nanoseconds by the Handler's clock)
// since it last succeeded; 0 when it has not.
type failures struct {
	store, queue, deadLetters atomic.Int64
}

// fail records a failure of the step f at now.
func fail(f *atomic.Int64, now time.Time) { f.Store(now.UnixNano()) }

// recovered records a success of the step f; it writes only after a failure.
func recovered(f *atomic.Int64) {
	if f.Load() != 0 {
		f.Store(0)
	}
}

// recent reports whether the step f failed within healthRecent of now.
func recent(f *atomic.Int64, now time.Time) bool {
	t := f.Load()
	return t != 0 && now.UnixNano()-t < int64(healthRecent)
}

// Health returns a handler for a health endpoint: 200 {"status":"ok"} to GET
// and HEAD while the Handler accepts deliveries, else 503 {"status":
// "unavailable","reason":R} (see the README), within 2 s.
func (h *Handler) Health() http.Handler {
	return http.HandlerFunc(h.serveHealth)
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	reason := h.unhealthy(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if reason == "" {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"status":"ok"}` + "\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"status":"unavailable","reason":"` + reason + `"}` + "\n"))
}

// unhealthy returns why the Handler cannot accept deliveries now, or "".
func (h *Handler) unhealthy(ctx context.Context) string {
	now := h.cfg.now()
	switch {
	case h.closing.Load():
		return healthShuttingDown
	case h.memQueue == nil && !h.started.Load():
		return healthNotStarted
	case h.memQueue != nil && h.memQueue.full():
		return healthQueueFull
	case h.stuck():
		return healthStuck
	case recent(&h.failed.store, now):
		return healthStoreFailed
	case recent(&h.failed.queue, now):
		return healthQueueFailed
	case recent(&h.failed.deadLetters, now) || h.dead.holding():
		return healthDeadLetterFailed
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if p, ok := h.store.(Pinger); ok {
		if err := ping(ctx, p); err != nil {
			h.log.Warn("eachhook: health check: store unreachable", "err", err)
			return healthStoreUnreachable
		}
	}
	if p, ok := h.queue.(Pinger); ok {
		if err := ping(ctx, p); err != nil {
			h.log.Warn("eachhook: health check: queue unreachable", "err", err)
			return healthQueueUnreachable
		}
	}
	return ""
}

// ping runs p.Ping on a goroutine of its own, so that a client that
// ignores ctx's deadline does not hold the health check past it.
func ping(ctx context.Context, p Pinger) error {
	done := make(chan error, 1)
	go func() { done <- p.Ping(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
