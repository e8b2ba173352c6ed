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
	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
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
	ID     string // prediction id of a verified delivery
	Status string // the payload's status, of a verified delivery
	Reason string // why a request was refused or ignored
	Err    error  // the verification error of a 401
	Remote string
}

// receiverConfig configures a receiver.
type receiverConfig struct {
	secrets   []string
	path      string
	tolerance time.Duration
	legacy    bool // accept X-Webhook-Secret: eachhook.WithLegacySecretHeader
	now       func() time.Time
	logger    *slog.Logger
	onSuccess func(context.Context, *eachhook.Success) error
	onFailed  func(context.Context, *eachhook.Failure) error
	report    func(outcome) // called once per request, on its goroutine
}

// receiver serves an [eachhook.Handler] at one path and reports what the
// Handler did with each request, as its [observe.Observer] tells it.
type receiver struct {
	cfg     receiverConfig
	handler *eachhook.Handler
}

// decision is the Handler's decision on one request, noted by the observer
// through the request's context.
type decision struct {
	kind    string
	info    observe.DeliveryInfo // of a verified delivery
	refusal observe.Refusal      // of a refused request
}

type decisionKey struct{}

// note returns an observer function that notes the decision kind for a
// verified delivery.
func note(kind string) func(context.Context, observe.DeliveryInfo) {
	return func(ctx context.Context, d observe.DeliveryInfo) {
		if dec, ok := ctx.Value(decisionKey{}).(*decision); ok {
			dec.kind, dec.info = kind, d
		}
	}
}

func newReceiver(cfg receiverConfig) (*receiver, error) {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.tolerance == 0 {
		cfg.tolerance = signature.DefaultTolerance
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	opts := []eachhook.Option{
		eachhook.WithSecret(cfg.secrets...),
		eachhook.WithTolerance(cfg.tolerance),
		eachhook.WithClock(cfg.now),
		eachhook.WithLogger(cfg.logger),
		eachhook.WithWorkers(1), // events print in the order they were accepted
		eachhook.WithObserver(observe.Observer{
			Refused: func(ctx context.Context, r observe.Refusal) {
				if dec, ok := ctx.Value(decisionKey{}).(*decision); ok {
					dec.kind, dec.refusal = kindRefused, r
				}
			},
			Duplicate: note(kindDuplicate),
			Ignored:   note(kindIgnored),
			Accepted:  note(kindAccepted),
		}),
	}
	if cfg.legacy {
		opts = append(opts, eachhook.WithLegacySecretHeader())
	}
	h, err := eachhook.New(opts...)
	if err != nil {
		return nil, err
	}
	if cfg.onSuccess != nil {
		h.OnSuccess(cfg.onSuccess)
	}
	if cfg.onFailed != nil {
		h.OnFailed(cfg.onFailed)
	}
	return &receiver{cfg: cfg, handler: h}, nil
}

// Shutdown drains the Handler.
func (rc *receiver) Shutdown(ctx context.Context) error {
	return rc.handler.Shutdown(ctx)
}

// ServeHTTP serves the Handler at the configured path and reports the
// outcome of every request.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := outcome{Time: rc.cfg.now(), Code: http.StatusOK, Remote: r.RemoteAddr}
	if rc.cfg.path != "" && r.URL.Path != rc.cfg.path {
		http.NotFound(w, r)
		o.Kind, o.Code = kindRefused, http.StatusNotFound
		o.Reason = fmt.Sprintf("%s %s: no receiver at this path (listening on %s)", r.Method, r.URL.Path, rc.cfg.path)
		rc.report(o)
		return
	}

	// Keep the bytes the Handler reads, to explain a 400 or a 401.
	var body bytes.Buffer
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(r.Body, &body), r.Body}
	var dec decision
	rc.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), decisionKey{}, &dec)))

	o.Kind, o.ID, o.Status = dec.kind, dec.info.ID, dec.info.Status
	switch dec.kind {
	case kindDuplicate:
		o.Reason = "id already accepted; acknowledged without a callback"
	case kindIgnored:
		o.Reason = fmt.Sprintf("no callback for status %q; acknowledged and dropped", o.Status)
	case kindRefused:
		o.Code, o.ID = dec.refusal.StatusCode, dec.refusal.ID
		o.Reason, o.Err = rc.explainRefusal(r, body.Bytes(), dec.refusal)
	}
	rc.report(o)
}

// verifyErrors are the core's verification errors, by which a 401 is
// reported.
var verifyErrors = []error{
	signature.ErrMissing, signature.ErrMalformed, signature.ErrMalformedTimestamp,
	signature.ErrTimestampOutOfRange, signature.ErrNoSecret, signature.ErrInvalid,
}

// explainRefusal says why the Handler refused a request, and for a 401
// which verification error it was.
func (rc *receiver) explainRefusal(r *http.Request, body []byte, ref observe.Refusal) (string, error) {
	switch ref.Reason {
	case observe.ReasonSignature, observe.ReasonTimestamp:
		err := ref.Err
		for _, sentinel := range verifyErrors {
			if errors.Is(err, sentinel) {
				err = sentinel
				break
			}
		}
		sig, ts := r.Header.Get(signature.Header), r.Header.Get(signature.HeaderTimestamp)
		reason := signature.Explain(err, body, sig, ts, rc.cfg.now(), rc.cfg.tolerance, rc.cfg.secrets...)
		if errors.Is(err, signature.ErrMissing) && r.Header.Get(signature.HeaderSecret) != "" {
			reason += "; the request carries the plain " + signature.HeaderSecret + " header instead, which this receiver accepts only when run with -legacy-secret-header"
		}
		return reason, err
	case observe.ReasonMalformed:
		return "malformed payload: " + payloadProblem(body, ref.Err), nil
	case observe.ReasonMethod:
		return fmt.Sprintf("method %s not allowed: the sender POSTs", r.Method), nil
	case observe.ReasonMediaType:
		return fmt.Sprintf("Content-Type %q is not JSON", r.Header.Get("Content-Type")), nil
	case observe.ReasonTooLarge:
		return "body larger than the receiver's limit", nil
	case observe.ReasonShutdown:
		return "receiver shutting down; the sender will retry", nil
	case observe.ReasonQueueFull:
		return "every worker busy and the queue full; the sender will retry", nil
	}
	// Unreadable body, failed lookup or store: the error says it all.
	reason := strings.ReplaceAll(string(ref.Reason), "_", " ")
	if ref.Err != nil {
		reason += ": " + ref.Err.Error()
	}
	return reason, nil
}

func (rc *receiver) report(o outcome) {
	if rc.cfg.report != nil {
		rc.cfg.report(o)
	}
}

// payloadProblem says what is wrong with a body the Handler refused as
// malformed with err. The problems of the classic prediction form are
// worded for a person; for the other forms, err says what is wrong.
func payloadProblem(body []byte, err error) string {
	var obj map[string]json.RawMessage
	if jerr := json.Unmarshal(body, &obj); jerr != nil {
		return "not a JSON object (" + jerr.Error() + ")"
	}
	var id, status string
	switch {
	case obj["id"] != nil && (json.Unmarshal(obj["id"], &id) != nil || id == ""):
		return "no non-empty string \"id\""
	case obj["status"] != nil && json.Unmarshal(obj["status"], &status) != nil:
		return "\"status\" is not a string"
	}
	return strings.TrimPrefix(err.Error(), eachhook.ErrMalformedPayload.Error()+": ")
}
