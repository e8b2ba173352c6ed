package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// startListen runs "eachhook listen" on a free loopback port and returns
// the receiver's URL and a function that stops it and returns its result.
func startListen(t *testing.T, args ...string) (string, func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan result, 1)
	go func() {
		done <- runCmd(t, runOpts{ctx: ctx, ready: func(addr string) { ready <- addr }},
			append([]string{"listen", "-addr", "127.0.0.1:0"}, args...)...)
	}()
	select {
	case addr := <-ready:
		var once sync.Once
		var r result
		stop := func() result {
			once.Do(func() { cancel(); r = <-done })
			return r
		}
		t.Cleanup(func() { stop() })
		return "http://" + addr, stop
	case r := <-done:
		cancel()
		t.Fatalf("listen ended before it was ready: %d\n%s%s", r.code, r.stdout, r.stderr)
		return "", nil
	}
}

func TestSendToListen(t *testing.T) {
	base, stop := startListen(t, "-secret", "whsec_old", "-secret", "whsec_new")
	url := base + "/webhooks/prediction"

	send := func(args ...string) result {
		return runCmd(t, runOpts{}, append([]string{"send", "-url", url}, args...)...)
	}
	r := send("-secret", "whsec_new", "-id", "pred-1")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Regexp(t, `(?m)^attempt 1: 200 OK in \S+$`, r.stdout)
	require.Regexp(t, `(?m)^acknowledged$`, r.stdout)

	// The secret from the environment, the old secret (rotation), the
	// timestamp scheme.
	r = runCmd(t, runOpts{env: map[string]string{"EACHHOOK_SECRET": "whsec_old"}},
		"send", "-url", url, "-id", "pred-2", "-status", "failed", "-scheme", "timestamp")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)

	r = send("-secret", "whsec_new", "-id", "pred-1")
	require.Equal(t, 0, r.code, "a duplicate is acknowledged: "+r.stdout)

	r = send("-secret", "whsec_wrong", "-id", "pred-3")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, `attempt 1: 401 Unauthorized in `)
	require.Regexp(t, `(?m)^not acknowledged$`, r.stdout)

	r = runCmd(t, runOpts{}, "send", "-url", base+"/elsewhere", "-secret", "whsec_new")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, "attempt 1: 404 Not Found")

	processing := filepath.Join(t.TempDir(), "processing.json")
	require.NoError(t, os.WriteFile(processing, []byte(`{"id":"pred-4","status":"processing"}`), 0o600))
	r = send("-secret", "whsec_new", "-file", processing)
	require.Equal(t, 0, r.code, r.stdout)

	l := stop()
	require.Equal(t, 0, l.code, l.stderr)
	require.Regexp(t, `^eachhook listen: receiving on http://127\.0\.0\.1:\d+/webhooks/prediction \(Ctrl-C to stop\)\n$`, l.stderr)
	out := l.stdout
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d success pred-1\n`+
		`         output       https://storage\.example\.com/predictions/abc123/image\.jpg\n`+
		`         cost         0\.05\n`+
		`         predict time 12\.5s\n`, out)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d failed  pred-2\n`+
		`         logs         Error: Model timeout after 30s\n`, out)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d duplicate pred-1: answered 200, id already accepted; acknowledged without a callback$`, out)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d refused 401 Unauthorized from 127\.0\.0\.1:\d+: signature does not match: the secret is wrong or the body was changed$`, out)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d refused 404 Not Found from 127\.0\.0\.1:\d+: POST /elsewhere: no receiver at this path \(listening on /webhooks/prediction\)$`, out)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d ignored pred-4: answered 200, no callback for status "processing"; acknowledged and dropped$`, out)
	require.Equal(t, 1, strings.Count(out, "success pred-1"), "one callback per id:\n"+out)
	require.NotContains(t, out, "pred-3", "a forged delivery's id is not printed as an event")
}

func TestListenJSON(t *testing.T) {
	base, stop := startListen(t, "-secret", "s3cret", "-json", "-path", "/hooks")
	url := base + "/hooks"
	require.Equal(t, 0, runCmd(t, runOpts{}, "send", "-url", url, "-secret", "s3cret", "-id", "j-1").code)
	require.Equal(t, 0, runCmd(t, runOpts{}, "send", "-url", url, "-secret", "s3cret", "-id", "j-2", "-status", "failed").code)
	require.Equal(t, 0, runCmd(t, runOpts{}, "send", "-url", url, "-secret", "s3cret", "-id", "j-1").code)
	require.Equal(t, 1, runCmd(t, runOpts{}, "send", "-url", url, "-secret", "other", "-id", "j-3").code)

	// A request with the legacy plain-secret header and no signature.
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"id":"j-4","status":"success"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signature.HeaderSecret, "s3cret")
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	client.CloseIdleConnections()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	l := stop()
	require.Equal(t, 0, l.code, l.stderr)
	events := map[string][]map[string]any{}
	for line := range strings.SplitSeq(strings.TrimSpace(l.stdout), "\n") {
		var e map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		events[e["event"].(string)] = append(events[e["event"].(string)], e)
	}
	require.Len(t, events["success"], 1)
	s := events["success"][0]
	require.Equal(t, "j-1", s["id"])
	require.Equal(t, eachhooktest.SeedOutput, s["output"])
	require.Equal(t, []any{eachhooktest.SeedOutput}, s["urls"])
	require.Equal(t, 0.05, s["cost"])
	require.Equal(t, 12.5, s["predict_time"])
	require.Equal(t, map[string]any{"prompt": "A beautiful sunset over the ocean", "aspect_ratio": "16:9"}, s["input"])

	require.Len(t, events["failed"], 1)
	require.Equal(t, "j-2", events["failed"][0]["id"])
	require.Equal(t, eachhooktest.SeedLogs, events["failed"][0]["logs"])
	require.NotContains(t, events["failed"][0], "output", "a null output is left out")

	require.Len(t, events["duplicate"], 1)
	require.Equal(t, "j-1", events["duplicate"][0]["id"])
	require.Equal(t, 200.0, events["duplicate"][0]["code"])

	require.Len(t, events["refused"], 2)
	forged, legacy := events["refused"][0], events["refused"][1]
	require.Equal(t, 401.0, forged["code"])
	require.Equal(t, signature.ErrInvalid.Error(), forged["error"])
	require.Equal(t, "signature does not match: the secret is wrong or the body was changed", forged["reason"])
	require.Equal(t, signature.ErrMissing.Error(), legacy["error"])
	require.Equal(t, "no signature: the X-Webhook-Signature header is missing or empty; the request carries the plain X-Webhook-Secret header instead, which this receiver accepts only when run with -legacy-secret-header", legacy["reason"])
	require.NotContains(t, l.stdout, `"s3cret"`, "the plain secret is never printed")
}

// flakyServer answers 503 to the first failures requests, then 200, and
// records every request.
type flakyServer struct {
	mu       sync.Mutex
	failures int
	bodies   [][]byte
	headers  []http.Header
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, body)
	f.headers = append(f.headers, r.Header.Clone())
	if len(f.bodies) <= f.failures {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func TestSendRetriesOnTheSpecScheduleUntilAcknowledged(t *testing.T) {
	for _, scheme := range []string{"body", "timestamp"} {
		t.Run(scheme, func(t *testing.T) {
			f := &flakyServer{failures: 2}
			srv := httptest.NewServer(f)
			defer srv.Close()

			r := runCmd(t, runOpts{}, "send", "-url", srv.URL, "-secret", "whsec_x", "-id", "retry-1",
				"-scheme", scheme, "-retries", "spec", "-time-scale", "0.001")
			require.Equal(t, 0, r.code, r.stdout+r.stderr)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			require.Len(t, lines, 5, r.stdout)
			require.Equal(t, "POST "+srv.URL+": success payload for retry-1, "+scheme+" scheme, up to 4 attempts", lines[0])
			require.Regexp(t, `^attempt 1: 503 Service Unavailable in \S+, body "try later"; next attempt in 30ms$`, lines[1])
			require.Regexp(t, `^attempt 2: 503 Service Unavailable in \S+, body "try later"; next attempt in 120ms$`, lines[2])
			require.Regexp(t, `^attempt 3: 200 OK in \S+$`, lines[3])
			require.Equal(t, "acknowledged", lines[4])

			f.mu.Lock()
			defer f.mu.Unlock()
			require.Len(t, f.bodies, 3)
			for i := range f.bodies {
				require.Equal(t, eachhooktest.SuccessBody("retry-1"), f.bodies[i], "every attempt sends the same bytes")
				require.Equal(t, "application/json", f.headers[i].Get("Content-Type"))
				require.Equal(t, f.headers[0].Get(signature.Header), f.headers[i].Get(signature.Header))
				require.Equal(t, f.headers[0].Get(signature.HeaderTimestamp), f.headers[i].Get(signature.HeaderTimestamp))
				require.NoError(t, signature.Verify(f.bodies[i], f.headers[i].Get(signature.Header),
					f.headers[i].Get(signature.HeaderTimestamp), time.Now(), signature.DefaultTolerance, "whsec_x"))
			}
			if scheme == "timestamp" {
				require.Regexp(t, `^sha256=[0-9a-f]{64}$`, f.headers[0].Get(signature.Header))
				require.NotEmpty(t, f.headers[0].Get(signature.HeaderTimestamp))
			} else {
				require.Regexp(t, `^[0-9a-f]{64}$`, f.headers[0].Get(signature.Header))
				require.Empty(t, f.headers[0].Get(signature.HeaderTimestamp))
			}
		})
	}
}

func TestSendGivesUpAfterTheLastSpecAttempt(t *testing.T) {
	f := &flakyServer{failures: 1000}
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := runCmd(t, runOpts{}, "send", "-url", srv.URL, "-secret", "s", "-retries", "spec", "-time-scale", "0.0001")
	require.Equal(t, 1, r.code, r.stdout)
	require.Equal(t, 4, strings.Count(r.stdout, ": 503 Service Unavailable in "))
	require.Regexp(t, `(?m)^attempt 4: 503 .*; no attempts left$`, r.stdout)
	require.Regexp(t, `(?m)^not acknowledged$`, r.stdout)

	r = runCmd(t, runOpts{}, "send", "-url", srv.URL, "-secret", "s")
	require.Equal(t, 1, r.code)
	require.Equal(t, 1, strings.Count(r.stdout, "attempt "), "-retries none is the default: %s", r.stdout)
}

func TestSendReportsNoAnswerAndRedirects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())
	r := runCmd(t, runOpts{}, "send", "-url", closed, "-secret", "s")
	require.Equal(t, 1, r.code)
	require.Regexp(t, `(?m)^attempt 1: no answer after \S+: dial tcp .*connection refused$`, r.stdout)

	srv := httptest.NewServer(http.RedirectHandler("https://example.com/hook", http.StatusMovedPermanently))
	defer srv.Close()
	r = runCmd(t, runOpts{}, "send", "-url", srv.URL, "-secret", "s")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "301 Moved Permanently")
	require.Contains(t, r.stdout, "redirect to https://example.com/hook (not followed")
}

// cancelOnWrite cancels a context when a write contains a string.
type cancelOnWrite struct {
	syncBuffer
	when   string
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.when) {
		c.cancel()
	}
	return c.syncBuffer.Write(p)
}

func TestSendStopsWaitingWhenCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The user presses Ctrl-C once the first attempt is printed; unscaled,
	// the next attempt would come 30 s later.
	stdout := &cancelOnWrite{when: "next attempt in 30s", cancel: cancel}
	a := &app{ctx: ctx, stdin: strings.NewReader(""), stdout: stdout, stderr: io.Discard, getenv: func(string) string { return "" }, now: time.Now}
	require.Equal(t, 1, a.run([]string{"send", "-url", srv.URL, "-secret", "s", "-retries", "spec"}))
	out := stdout.String()
	require.Contains(t, out, "attempt 1: 500 Internal Server Error")
	require.NotContains(t, out, "attempt 2")
	require.Contains(t, out, "not acknowledged")
}

func TestSendFileFromStdin(t *testing.T) {
	f := &flakyServer{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	body := "{\"id\": \"from-stdin\",\n \"status\": \"success\"}"
	r := runCmd(t, runOpts{stdin: body}, "send", "-url", srv.URL, "-secret", "s", "-file", "-", "-redelivery")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "42-byte payload")
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, []byte(body), f.bodies[0], "the file's bytes are sent unchanged")
	require.Equal(t, "true", f.headers[0].Get(signature.HeaderRedelivery))
	require.Equal(t, signature.Sign("s", "", []byte(body)), f.headers[0].Get(signature.Header))
}

func TestListenExplainsEveryRefusal(t *testing.T) {
	const secret = "whsec_r"
	now := time.Now()
	base, stop := startListen(t, "-secret", secret, "-tolerance", "5m", "-v")
	url := base + "/webhooks/prediction"
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	post := func(body string, header http.Header) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header = header
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	signed := func(body string, at time.Time) http.Header {
		return eachhooktest.Headers(secret, []byte(body), eachhooktest.TimestampScheme, at)
	}
	require.Equal(t, 400, post(`[1,2]`, signed(`[1,2]`, now)))
	require.Equal(t, 400, post(`{"id":7}`, signed(`{"id":7}`, now)))
	require.Equal(t, 400, post(`{"id":"x","status":3}`, signed(`{"id":"x","status":3}`, now)))
	old := `{"id":"old"}`
	require.Equal(t, 401, post(old, signed(old, now.Add(-6*time.Minute))))
	h := signed(`{"id":"ct"}`, now)
	h.Set("Content-Type", "text/plain")
	require.Equal(t, 415, post(`{"id":"ct"}`, h))
	h = signed(`{"id":"nl"}`, now)
	require.Equal(t, 401, post("{\"id\":\"nl\"}\n", h))
	resp, err := client.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 405, resp.StatusCode)

	// A failure with an output and metrics.
	failed := `{"id":"f-1","status":"failed","output":{"error_code":"EXECUTION_TIMEOUT"},"metrics":{"predict_time":30},"logs":"timeout"}`
	require.Equal(t, 200, post(failed, signed(failed, now)))

	l := stop()
	require.Equal(t, 0, l.code)
	out := l.stdout
	require.Contains(t, out, "refused 400 Bad Request from 127.0.0.1:")
	require.Contains(t, out, ": malformed payload: not a JSON object (json: cannot unmarshal array into Go value of type map[string]json.RawMessage)\n")
	require.Contains(t, out, `: malformed payload: no non-empty string "id"`+"\n")
	require.Contains(t, out, `: malformed payload: "status" is not a string`+"\n")
	require.Regexp(t, `: timestamp too old: signed 6m\d+s ago, tolerance 5m0s \(a replay, or a delivery held up too long\)\n`, out)
	require.Contains(t, out, `: Content-Type "text/plain" is not JSON`+"\n")
	require.Contains(t, out, `(it matches the body without its trailing newline: a newline was added, as echo or an editor does)`+"\n")
	require.Contains(t, out, "refused 405 Method Not Allowed from 127.0.0.1:")
	require.Contains(t, out, ": method GET not allowed: the sender POSTs\n")
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d failed  f-1\n`+
		`         logs         timeout\n`+
		`         output       \{"error_code":"EXECUTION_TIMEOUT"\}\n`+
		`         predict time 30s\n`, out)
	// -v adds the library's own log, which never contains the secret.
	require.Greater(t, strings.Count(l.stderr, "\n"), 1, l.stderr)
	require.NotContains(t, l.stderr, secret)
}

func TestListenLegacySecretHeader(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprint("legacy=", legacy), func(t *testing.T) {
			args := []string{"-secret", "whsec_plain"}
			if legacy {
				args = append(args, "-legacy-secret-header")
			}
			base, stop := startListen(t, args...)
			url := base + "/webhooks/prediction"
			want := 1
			if legacy {
				want = 0
			}
			r := runCmd(t, runOpts{}, "send", "-url", url, "-secret", "whsec_plain", "-scheme", "secret", "-id", "plain-1")
			require.Equal(t, want, r.code, r.stdout)
			r = runCmd(t, runOpts{}, "send", "-url", url, "-secret", "whsec_wrong", "-scheme", "secret", "-id", "plain-2")
			require.Equal(t, 1, r.code, r.stdout)
			require.Contains(t, r.stdout, "attempt 1: 401 Unauthorized in ")

			l := stop()
			require.Equal(t, 0, l.code, l.stderr)
			hint := "; the request carries the plain X-Webhook-Secret header instead, which this receiver accepts only when run with -legacy-secret-header\n"
			if legacy {
				require.Regexp(t, `(?m)^\d\d:\d\d:\d\d success plain-1$`, l.stdout)
				require.Regexp(t, `(?m)^\d\d:\d\d:\d\d refused 401 Unauthorized from 127\.0\.0\.1:\d+: signature does not match: the secret is wrong or the body was changed$`, l.stdout)
				require.NotContains(t, l.stdout, hint)
			} else {
				require.Equal(t, 2, strings.Count(l.stdout, hint), l.stdout)
				require.NotContains(t, l.stdout, "success")
			}
			require.NotContains(t, l.stdout, "whsec_", "the plain secret is never printed")
		})
	}
}

func TestSendSchemeSecret(t *testing.T) {
	f := &flakyServer{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	r := runCmd(t, runOpts{}, "send", "-url", srv.URL, "-secret", "whsec_plain", "-scheme", "secret", "-id", "plain-3")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "success payload for plain-3, secret scheme, one attempt")
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.headers, 1)
	require.Equal(t, "whsec_plain", f.headers[0].Get(signature.HeaderSecret))
	require.Empty(t, f.headers[0].Values(signature.Header))
	require.Empty(t, f.headers[0].Values(signature.HeaderTimestamp))
}
