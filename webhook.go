package eachhook

import (
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
)

// retryAfterSeconds is the Retry-After value sent with a 503.
const retryAfterSeconds = "10"

// Handler receives each::labs webhooks: it verifies each request, answers
// at once, and runs the registered callback for each prediction once, on a
// worker goroutine. Create it with [New]; it is an [http.Handler].
type Handler struct {
	cfg      config
	log      *slog.Logger
	verifier *Verifier
	store    Store
	ownStore *MemoryStore // the default store, closed by Shutdown

	onSuccess atomic.Pointer[func(context.Context, *Success) error]
	onFailed  atomic.Pointer[func(context.Context, *Failure) error]

	onWorkflowCompleted atomic.Pointer[func(context.Context, *WorkflowRun) error]
	onWorkflowFailed    atomic.Pointer[func(context.Context, *WorkflowRun) error]

	queue   Queue       // the in-memory pool unless WithQueue
	closing atomic.Bool // set when Shutdown begins; read without a lock
	startMu sync.Mutex  // serialises Start and the start of Shutdown
	started atomic.Bool
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
	h := &Handler{cfg: cfg, log: cfg.logger, store: cfg.store}
	if h.log == nil {
		h.log = slog.Default()
	}
	if len(cfg.secrets) > 0 {
		v, err := NewVerifier(cfg.secrets...)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
		}
		h.verifier = v
	}
	if h.store == nil {
		h.ownStore = NewMemoryStore(0, cfg.now)
		h.store = h.ownStore
	}
	h.queue = cfg.queue
	if h.queue == nil {
		h.queue = newPool(cfg.workers, cfg.queueSize)
	}
	return h, nil
}

// OnSuccess registers fn to run for each prediction that succeeded. It may
// be called at any time, also while serving; a delivery runs the callback
// registered when it is accepted or later. A successful delivery that
// arrives while no callback is registered is acknowledged, logged and
// dropped. fn must tolerate a context cancelled at shutdown. A nil fn
// unregisters the callback.
func (h *Handler) OnSuccess(fn func(ctx context.Context, s *Success) error) {
	if fn == nil {
		h.onSuccess.Store(nil)
		return
	}
	h.onSuccess.Store(&fn)
}

// OnFailed registers fn to run for each prediction that failed, under the
// same rules as [Handler.OnSuccess].
func (h *Handler) OnFailed(fn func(ctx context.Context, f *Failure) error) {
	if fn == nil {
		h.onFailed.Store(nil)
		return
	}
	h.onFailed.Store(&fn)
}

// ServeHTTP implements [http.Handler]. See the package documentation for
// the status code of every outcome.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.refused(r.Context(), ReasonMethod, 405, "", nil)
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.closing.Load() {
		h.refused(r.Context(), ReasonShutdown, 503, "", nil)
		unavailable(w, "shutting down")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		h.refused(r.Context(), ReasonMediaType, 415, "", nil)
		http.Error(w, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := readBody(r.Body, r.ContentLength, h.cfg.maxBody)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			h.refused(r.Context(), ReasonTooLarge, 413, "", nil)
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.refused(r.Context(), ReasonUnreadable, 400, "", err)
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}

	env, envErr, err := h.authenticate(r, body)
	if err != nil {
		if errors.Is(err, errLookup) {
			// env.ID is not verified: it stays out of the log.
			h.log.Error("eachhook: secret lookup failed", "err", err)
			h.refused(r.Context(), ReasonLookup, 503, "", err)
			unavailable(w, "temporarily unavailable")
			return
		}
		h.log.Info("eachhook: refused unverified delivery", "reason", err.Error(), "remote", r.RemoteAddr)
		h.refusedUnverified(r.Context(), err)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if envErr == nil && env.ID == "" {
		env, envErr = decodeEnvelope(body)
	}
	h.logPayload(r.Context(), env, body)
	if envErr != nil {
		h.log.Info("eachhook: refused malformed delivery", "err", envErr.Error())
		h.refused(r.Context(), ReasonMalformed, 400, "", envErr)
		http.Error(w, "malformed payload", http.StatusBadRequest)
		return
	}

	res, err := h.admit(r.Context(), env, body)
	switch {
	case errors.Is(err, ErrNotQueued):
		h.refusedNotQueued(r.Context(), env, err)
		unavailable(w, "busy")
	case err != nil:
		h.refused(r.Context(), ReasonStore, 503, env.ID, err)
		unavailable(w, "temporarily unavailable")
	case res == admitIgnored:
		h.ignored(r.Context(), env)
		w.WriteHeader(http.StatusOK)
	case res == admitDuplicate:
		h.duplicate(r.Context(), env)
		w.WriteHeader(http.StatusOK)
	default:
		h.accepted(r.Context(), env)
		w.WriteHeader(http.StatusOK)
	}
}

// admitResult is what admit did with a delivery that it did not refuse.
type admitResult int

const (
	admitAccepted  admitResult = iota // claimed and queued: its callback will run
	admitIgnored                      // no callback for its status: dropped
	admitDuplicate                    // its id was claimed before: nothing to run
)

// admit claims a decoded delivery's id and queues it: the steps a verified
// webhook and [Handler.Deliver] share. An error means nothing was accepted
// (a claim already taken is released): it matches [ErrNotQueued] when the
// queue refused the delivery, and is the Store's error otherwise.
func (h *Handler) admit(ctx context.Context, env envelope, body []byte) (admitResult, error) {
	if !h.hasCallback(env) {
		h.log.Info("eachhook: acknowledged delivery with no callback", "id", env.ID, "status", env.Status)
		return admitIgnored, nil
	}
	claimed, err := h.store.Claim(ctx, env.ID, h.cfg.dedupeTTL)
	if err != nil {
		h.log.Error("eachhook: dedupe store failed", "id", env.ID, "err", err)
		return 0, err
	}
	_, deduping := h.queue.(DedupingQueue)
	if !claimed && !deduping {
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return admitDuplicate, nil
	}
	// A DedupingQueue decides duplicates itself, also when the claim was
	// not won: see DedupingQueue.
	fresh, err := h.enqueue(ctx, Delivery{ID: env.ID, Status: env.Status, Body: body, req: h.requestContext(ctx)})
	if err != nil {
		if claimed {
			// Release so that the sender's retry of this delivery is processed.
			if rerr := h.store.Release(context.WithoutCancel(ctx), env.ID); rerr != nil {
				h.log.Error("eachhook: release after failed enqueue failed", "id", env.ID, "err", rerr)
			}
		}
		h.log.Warn("eachhook: delivery not queued", "id", env.ID, "err", err)
		return 0, fmt.Errorf("%w: %w", ErrNotQueued, err)
	}
	if !fresh {
		h.log.Debug("eachhook: duplicate delivery", "id", env.ID)
		return admitDuplicate, nil
	}
	return admitAccepted, nil
}

// errLookup marks a failure of the SecretLookup (a 503, not a 401).
var errLookup = errors.New("eachhook: secret lookup failed")

// authenticate verifies the request. When a per-prediction lookup was
// needed it also returns the decoded envelope (or its decoding error), so
// that the body is decoded once.
func (h *Handler) authenticate(r *http.Request, body []byte) (env envelope, envErr, err error) {
	if h.cfg.insecure {
		return env, nil, nil
	}
	sig := r.Header.Get(HeaderSignature)
	if strings.TrimSpace(sig) == "" && r.Header.Get(HeaderSecret) != "" {
		return h.authenticateSecretHeader(r, body)
	}
	ts := r.Header.Get(HeaderTimestamp)
	now := h.cfg.now()
	err = ErrNoSecret
	if h.verifier != nil {
		err = h.verifier.Verify(body, sig, ts, now, h.cfg.tolerance)
	}
	if h.cfg.lookup == nil || !(errors.Is(err, ErrInvalidSignature) || errors.Is(err, ErrNoSecret)) {
		return env, nil, err
	}
	// Refuse a malformed header or a stale timestamp before reading the
	// unverified body or calling the lookup (the order of the checks).
	if _, perr := parseSignature(sig); perr != nil {
		return env, nil, perr
	}
	if terr := checkTimestamp(ts, now, h.cfg.tolerance); terr != nil {
		return env, nil, terr
	}
	env, envErr = decodeEnvelope(body)
	if envErr != nil {
		return env, envErr, ErrNoSecret
	}
	secrets, lerr := h.cfg.lookup(r.Context(), env.ID)
	if lerr != nil {
		return env, envErr, fmt.Errorf("%w: %v", errLookup, lerr)
	}
	return env, nil, VerifySignature(body, sig, ts, now, h.cfg.tolerance, secrets...)
}

func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	http.Error(w, msg, http.StatusServiceUnavailable)
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
