package eachhook

// This file owns the Handler and the first and last steps of a request:
// ServeHTTP reads the request, hands it to the steps below it in order
// (authenticate in auth.go, decode in payload.go, admit in queue.go) and
// answers it in one place, answer, which turns the outcome into its status
// and tells the observer once.

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

// Handler receives each::labs webhooks: it verifies each request, answers
// at once, accepts each prediction id once and runs the registered
// callback on a worker goroutine (at least once: a failed run is retried). Create it with [New], register its callbacks, then
// serve it; it is an [http.Handler].
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

	// callbacks are written only before serving starts (see register).
	callbacks callbacks

	mu      sync.Mutex  // serialises registration, Start and the start of Shutdown
	serving atomic.Bool // set by Start, the first request or Shutdown: configuration is fixed
	started atomic.Bool // the queue runs
	closing atomic.Bool // Shutdown has begun
}

// New returns a Handler configured by opts. It returns an error matching
// [ErrInvalidOption] for a configuration that cannot work, such as no secret
// at all (see [WithSecret]) or an empty one.
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
	h.dead.store = cfg.deadLetters
	if h.dead.store == nil {
		h.dead.store = newMemoryDeadLetters(h.log, memoryDeadLettersMax, memoryDeadLettersMaxBytes)
	}
	if h.queue == nil {
		h.memQueue = newMemQueue(h, cfg.workers, cfg.queueSize)
		h.queue = h.memQueue
	}
	return h, nil
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
	env, reason, err := h.authenticate(r, body)
	if err != nil {
		o := refusal(reason, err)
		o.body = body
		return o
	}
	return h.admit(r.Context(), env, body)
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
// *http.Request, such as an AWS API Gateway event or a message a queue
// delivered: it takes the request's method, headers and raw body (decoded,
// if the gateway encoded it, and byte for byte as the sender sent it) and
// returns the status code ServeHTTP would have answered, after the same
// checks in the same order, with the same secret lookup, dedupe and queue,
// the same logs and the same observer calls; ctx plays the request
// context's part. The answer table in the package documentation applies
// unchanged. Answer a 503 with Retry-After (ServeHTTP sends 10 seconds)
// and a 405 with Allow: POST, as ServeHTTP does.
func (h *Handler) Receive(ctx context.Context, method string, header http.Header, body []byte) int {
	if header == nil {
		header = http.Header{}
	}
	r := (&http.Request{
		Method:        method,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	code, _ := h.settle(r, h.receive(r))
	return code
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
	}
}

// explain says why an unverified delivery was refused, in the words of
// [signature.Explain]. With fixed secrets and a body of at most
// explainMaxBody bytes it also names the accident (a trailing newline,
// reformatted JSON, the other scheme) that explains a mismatch; the
// secrets a lookup returned are not kept, so for those it names only what
// needs no secret.
func (h *Handler) explain(r *http.Request, o outcome) string {
	var secrets []string
	if len(o.body) <= explainMaxBody {
		secrets = h.cfg.secrets
	}
	return signature.Explain(o.err, o.body, r.Header.Get(signature.Header), r.Header.Get(signature.HeaderTimestamp),
		h.cfg.now(), h.cfg.tolerance, secrets...)
}

// explainMaxBody bounds the body explain retries with the secrets: each
// refused request then costs at most four more HMACs of 64 KiB per secret.
const explainMaxBody = 64 << 10

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
