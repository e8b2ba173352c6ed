package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/eachhook/eachhook"
)

// Kinds of outcome of a request to the receiver.
const (
	kindAccepted  = "accepted"  // 200, the callback runs
	kindDuplicate = "duplicate" // 200, id already accepted, no callback
	kindIgnored   = "ignored"   // 200, no callback for the status
	kindRefused   = "refused"   // any other answer
)

// outcome is what the receiver did with one request.
type outcome struct {
	Time   time.Time
	Kind   string
	Code   int
	ID     string // prediction id, when the body had one
	Status string // the payload's status, when the body had one
	Reason string // why a request was refused or ignored
	Err    error  // the verification error of a 401
	Remote string
}

// receiverConfig configures a receiver.
type receiverConfig struct {
	secrets   []string
	path      string
	tolerance time.Duration
	now       func() time.Time
	logger    *slog.Logger
	workers   int
	onSuccess func(context.Context, *eachhook.Success) error
	onFailed  func(context.Context, *eachhook.Failure) error
	report    func(outcome) // called once per request, on its goroutine
}

// receiver is an [eachhook.Handler] wrapped so that it can tell what it did
// with each request. It does not change the Handler's answers: it records
// the status code, observes the dedupe store's claims through the request's
// context, and explains a 401 by verifying the captured body again with
// the same secrets.
type receiver struct {
	cfg      receiverConfig
	handler  *eachhook.Handler
	store    *eachhook.MemoryStore
	verifier *eachhook.Verifier // explains a 401
}

func newReceiver(cfg receiverConfig) (*receiver, error) {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.tolerance == 0 {
		cfg.tolerance = eachhook.DefaultTolerance
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.workers == 0 {
		cfg.workers = 1
	}
	verifier, err := eachhook.NewVerifier(cfg.secrets...)
	if err != nil {
		return nil, err
	}
	store := eachhook.NewMemoryStore(0, cfg.now)
	h, err := eachhook.New(
		eachhook.WithSecret(cfg.secrets...),
		eachhook.WithTolerance(cfg.tolerance),
		eachhook.WithClock(cfg.now),
		eachhook.WithLogger(cfg.logger),
		eachhook.WithWorkers(cfg.workers),
		eachhook.WithStore(claimObserver{store}),
	)
	if err != nil {
		store.Close()
		return nil, err
	}
	if cfg.onSuccess != nil {
		h.OnSuccess(cfg.onSuccess)
	}
	if cfg.onFailed != nil {
		h.OnFailed(cfg.onFailed)
	}
	return &receiver{cfg: cfg, handler: h, store: store, verifier: verifier}, nil
}

// Shutdown drains the Handler and stops the store's sweep.
func (rc *receiver) Shutdown(ctx context.Context) error {
	err := rc.handler.Shutdown(ctx)
	rc.store.Close()
	return err
}

// claimKey is the context key of a request's *claimRecord.
type claimKey struct{}

// claimRecord is where claimObserver notes the Handler's claim of an id.
type claimRecord struct {
	called  bool
	claimed bool
}

// claimObserver is the Handler's dedupe store; it notes in the request's
// context whether the id was claimed (first delivery) or not (duplicate).
type claimObserver struct{ eachhook.Store }

func (s claimObserver) Claim(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	ok, err := s.Store.Claim(ctx, id, ttl)
	if rec, _ := ctx.Value(claimKey{}).(*claimRecord); rec != nil && err == nil {
		rec.called, rec.claimed = true, ok
	}
	return ok, err
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP serves the Handler at the configured path and reports the
// outcome of every request.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := outcome{Time: rc.cfg.now(), Remote: r.RemoteAddr}
	if rc.cfg.path != "" && r.URL.Path != rc.cfg.path {
		http.NotFound(w, r)
		o.Kind, o.Code = kindRefused, http.StatusNotFound
		o.Reason = fmt.Sprintf("%s %s: no receiver at this path (listening on %s)", r.Method, r.URL.Path, rc.cfg.path)
		rc.report(o)
		return
	}

	var body bytes.Buffer
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(r.Body, &body), r.Body}
	rec := &claimRecord{}
	r = r.WithContext(context.WithValue(r.Context(), claimKey{}, rec))
	sw := &statusWriter{ResponseWriter: w}
	rc.handler.ServeHTTP(sw, r)

	o.Code = sw.code
	if o.Code == 0 {
		o.Code = http.StatusOK
	}
	var env struct {
		ID     any `json:"id"`
		Status any `json:"status"`
	}
	_ = json.Unmarshal(body.Bytes(), &env)
	o.ID, _ = env.ID.(string)
	o.Status, _ = env.Status.(string)

	switch {
	case o.Code == http.StatusOK && rec.called && rec.claimed:
		o.Kind = kindAccepted
	case o.Code == http.StatusOK && rec.called:
		o.Kind, o.Reason = kindDuplicate, "id already accepted; acknowledged without a callback"
	case o.Code == http.StatusOK:
		o.Kind, o.Reason = kindIgnored, fmt.Sprintf("no callback for status %q; acknowledged and dropped", o.Status)
	default:
		o.Kind = kindRefused
		o.Reason = rc.refusal(r, o.Code, body.Bytes(), &o.Err)
	}
	rc.report(o)
}

// refusal explains an answer other than 200.
func (rc *receiver) refusal(r *http.Request, code int, body []byte, verr *error) string {
	switch code {
	case http.StatusUnauthorized:
		sig := r.Header.Get(eachhook.HeaderSignature)
		ts := r.Header.Get(eachhook.HeaderTimestamp)
		now := rc.cfg.now()
		err := rc.verifier.Verify(body, sig, ts, now, rc.cfg.tolerance)
		if err == nil {
			// The Handler's clock moved on between the two checks.
			err = eachhook.ErrTimestampOutOfRange
		}
		*verr = err
		reason := explain(err, body, sig, ts, now, rc.cfg.tolerance, rc.cfg.secrets)
		if errors.Is(err, eachhook.ErrMissingSignature) && r.Header.Get(eachhook.HeaderSecret) != "" {
			reason += "; the request carries the legacy " + eachhook.HeaderSecret + " header instead, which this receiver does not accept: create the prediction with a webhook_secret so that it is signed"
		}
		return reason
	case http.StatusBadRequest:
		return "malformed payload: " + payloadProblem(body)
	case http.StatusMethodNotAllowed:
		return fmt.Sprintf("method %s not allowed: the sender POSTs", r.Method)
	case http.StatusUnsupportedMediaType:
		return fmt.Sprintf("Content-Type %q is not JSON", r.Header.Get("Content-Type"))
	case http.StatusRequestEntityTooLarge:
		return "body larger than the receiver's limit"
	case http.StatusServiceUnavailable:
		return "receiver busy or shutting down; the sender will retry"
	}
	return strings.ToLower(http.StatusText(code))
}

func (rc *receiver) report(o outcome) {
	if rc.cfg.report != nil {
		rc.cfg.report(o)
	}
}

// payloadProblem says what is wrong with a body the Handler refused as
// malformed.
func payloadProblem(body []byte) string {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return "not a JSON object (" + err.Error() + ")"
	}
	var id string
	if err := json.Unmarshal(obj["id"], &id); err != nil || id == "" {
		return "no non-empty string \"id\""
	}
	return "\"status\" is not a string"
}
