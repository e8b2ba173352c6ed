package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

// specSchedule is the wait before each retry in the spec: about 30 s, 2 min
// and 10 min, so the last attempt comes about 12.5 minutes after the first.
var specSchedule = []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute}

const sendUsage = `usage: eachhook send -url URL -secret S [flags]

Signs a prediction webhook and POSTs it to URL exactly as the each::labs
sender does (Content-Type, X-Webhook-Signature and, with -scheme timestamp,
X-Webhook-Timestamp; with -scheme secret, no signature but the secret itself
in X-Webhook-Secret; every attempt carries the same bytes and headers).
Prints each attempt's answer and latency. The endpoint acknowledges with a
2xx answer (the spec asks for 200). Redirects are not followed.

Exit status: 0 if the endpoint acknowledged, 1 if not, 2 for bad flags.
The secret may come from $EACHHOOK_SECRET instead of -secret.`

const sendExamples = `examples:
  eachhook send -url http://localhost:8080/webhooks/prediction -secret whsec_123
  eachhook send -url https://example.com/hook -secret whsec_123 -status failed -id abc123-def456-ghi789
  eachhook send -url https://example.com/hook -scheme timestamp -file payload.json
  eachhook send -url http://localhost:8080/webhooks/prediction -secret whsec_123 -scheme secret
  eachhook send -url https://example.com/hook -retries spec               # 30s, 2m, 10m like the sender
  eachhook send -url https://example.com/hook -retries spec -time-scale 0.01  # 0.3s, 1.2s, 6s`

func (a *app) send(args []string) int {
	fs := a.flagSet("send", sendUsage, sendExamples)
	url := fs.String("url", "", "the endpoint to deliver to (required)")
	secret := fs.String("secret", "", "the prediction's webhook_secret (default $EACHHOOK_SECRET)")
	status := fs.String("status", eachhook.StatusSuccess, "payload to send: success or failed (the documented example payloads)")
	file := fs.String("file", "", "send this file's bytes as the payload instead (- for stdin)")
	id := fs.String("id", "", "prediction id of the payload (default: a new random id, so that each send is a new prediction)")
	scheme := fs.String("scheme", "body", "how to authenticate the delivery: body (HMAC of the body), timestamp (HMAC of \"<unix time>.<body>\") or secret (plain "+signature.HeaderSecret+")")
	retries := fs.String("retries", "none", "none (one attempt) or spec (retry after 30s, 2m, 10m, scaled by -time-scale)")
	scale := fs.Float64("time-scale", 1, "multiply the retry waits by this factor (> 0)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on an attempt after this long")
	redelivery := fs.Bool("redelivery", false, "mark the delivery as a manual redelivery ("+signature.HeaderRedelivery+": true)")
	if code, ok := a.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if *url == "" {
		return a.usageError(fs, "-url is required")
	}
	if *secret == "" {
		*secret = a.getenv("EACHHOOK_SECRET")
	}
	if *secret == "" {
		return a.usageError(fs, "-secret is required (or set $EACHHOOK_SECRET)")
	}
	sch, err := parseScheme(*scheme)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	var schedule []time.Duration
	switch *retries {
	case "none":
	case "spec":
		schedule = specSchedule
	default:
		return a.usageError(fs, "-retries must be spec or none, not %q", *retries)
	}
	if !(*scale > 0) {
		return a.usageError(fs, "-time-scale must be > 0")
	}
	if *timeout <= 0 {
		return a.usageError(fs, "-timeout must be > 0")
	}

	var body []byte
	if *file != "" {
		if flagSet(fs, "status") || flagSet(fs, "id") {
			return a.usageError(fs, "-status and -id build the payload; they cannot be combined with -file")
		}
		if body, err = a.readInput(*file); err != nil {
			fmt.Fprintf(a.stderr, "eachhook send: %v\n", err)
			return 1
		}
	} else {
		if *id == "" {
			*id = randomID()
		}
		switch *status {
		case eachhook.StatusSuccess:
			body = eachhooktest.SuccessBody(*id)
		case eachhook.StatusFailed:
			body = eachhooktest.FailedBody(*id)
		default:
			return a.usageError(fs, "-status must be success or failed, not %q", *status)
		}
	}

	header := eachhooktest.Headers(*secret, body, sch, a.now())
	if *redelivery {
		header.Set(signature.HeaderRedelivery, "true")
	}
	s := newSender(*timeout)
	defer s.close()

	what := fmt.Sprintf("%d-byte payload", len(body))
	if *file == "" {
		what = fmt.Sprintf("%s payload for %s", *status, *id)
	}
	attempts := "one attempt"
	if len(schedule) > 0 {
		attempts = fmt.Sprintf("up to %d attempts", len(schedule)+1)
	}
	fmt.Fprintf(a.stdout, "POST %s: %s, %s scheme, %s\n", *url, what, *scheme, attempts)
	ok := s.deliver(a.ctx, *url, body, header, scaled(schedule, *scale), func(r attemptResult) {
		fmt.Fprintln(a.stdout, r)
	})
	if ok {
		fmt.Fprintln(a.stdout, "acknowledged")
		return 0
	}
	fmt.Fprintln(a.stdout, "not acknowledged")
	return 1
}

func parseScheme(s string) (eachhooktest.Scheme, error) {
	switch s {
	case "body":
		return eachhooktest.BodyScheme, nil
	case "timestamp":
		return eachhooktest.TimestampScheme, nil
	case "secret":
		return eachhooktest.LegacySecretScheme, nil
	}
	return 0, fmt.Errorf("-scheme must be body, timestamp or secret, not %q", s)
}

// scaled returns schedule with every wait multiplied by f.
func scaled(schedule []time.Duration, f float64) []time.Duration {
	out := make([]time.Duration, len(schedule))
	for i, d := range schedule {
		out[i] = time.Duration(float64(d) * f)
	}
	return out
}

// randomID returns a new prediction id shaped like the documented
// "abc123-def456-ghi789".
func randomID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:6] + "-" + h[6:12] + "-" + h[12:]
}

// sender POSTs deliveries the way the each::labs sender does.
type sender struct {
	transport *http.Transport
	client    *http.Client
}

func newSender(timeout time.Duration) *sender {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &sender{transport: t, client: &http.Client{
		Transport: t,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// close releases the sender's idle connections.
func (s *sender) close() { s.transport.CloseIdleConnections() }

// attemptResult is the outcome of one POST.
type attemptResult struct {
	N        int
	Code     int // 0 when no answer came
	Latency  time.Duration
	Body     string // start of the answer's body
	Location string // of a redirect
	Err      error  // why no answer came
	Next     time.Duration
	Last     bool
}

func (r attemptResult) acknowledged() bool { return r.Err == nil && r.Code >= 200 && r.Code <= 299 }

// String formats r as one line, such as
// "attempt 1: 503 Service Unavailable in 1.2ms, body "busy"; next attempt in 30s".
func (r attemptResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "attempt %d: ", r.N)
	if r.Err != nil {
		fmt.Fprintf(&b, "no answer after %v: %v", roundLatency(r.Latency), r.Err)
	} else {
		fmt.Fprintf(&b, "%d %s in %v", r.Code, http.StatusText(r.Code), roundLatency(r.Latency))
		if !r.acknowledged() && r.Body != "" {
			fmt.Fprintf(&b, ", body %q", r.Body)
		}
		if r.Location != "" {
			fmt.Fprintf(&b, ", redirect to %s (not followed: point webhook_url at the final URL)", r.Location)
		}
		if r.acknowledged() && r.Code != http.StatusOK {
			b.WriteString(" (the spec's sender expects 200; newer senders accept any 2xx)")
		}
	}
	switch {
	case r.acknowledged():
	case !r.Last:
		fmt.Fprintf(&b, "; next attempt in %v", r.Next)
	case r.N > 1:
		b.WriteString("; no attempts left")
	}
	return b.String()
}

func roundLatency(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// deliver POSTs body with header to target until it is acknowledged, once
// plus once per wait in schedule, reporting every attempt. It reports
// whether the endpoint acknowledged. It stops early when ctx ends.
func (s *sender) deliver(ctx context.Context, target string, body []byte, header http.Header, schedule []time.Duration, report func(attemptResult)) bool {
	for n := 1; ; n++ {
		r := s.post(ctx, target, body, header)
		r.N = n
		r.Last = n > len(schedule)
		if !r.Last {
			r.Next = schedule[n-1]
		}
		report(r)
		if r.acknowledged() {
			return true
		}
		if r.Last || !sleep(ctx, r.Next) {
			return false
		}
	}
}

// post makes one attempt.
func (s *sender) post(ctx context.Context, target string, body []byte, header http.Header) attemptResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return attemptResult{Err: err}
	}
	req.Header = header.Clone()
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return attemptResult{Latency: time.Since(start), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so the connection can be reused
	return attemptResult{
		Code:     resp.StatusCode,
		Latency:  time.Since(start),
		Body:     strings.TrimSpace(string(snippet)),
		Location: resp.Header.Get("Location"),
	}
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the
// method and URL already printed.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*neturl.Error](err); ok {
		return ue.Err
	}
	return err
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readInput reads a file, or stdin for "-".
func (a *app) readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(a.stdin)
	}
	return os.ReadFile(name)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}
