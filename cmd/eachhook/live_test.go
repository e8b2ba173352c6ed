package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// liveSecret is the secret the test receivers verify with.
const liveSecret = "whsec_live_test"

// historyAPI plays the each::labs delivery history: GET /v1/webhooks
// (newest first, at most pageCap per page whatever the limit asked) and
// GET /v1/webhooks/{execution_id}. It can answer 429 with Retry-After.
type historyAPI struct {
	mu       sync.Mutex
	hooks    []map[string]any // newest first
	pageCap  int
	limited  int // answer 429 to this many coming list requests
	requests []string
	times    []time.Time // of the list requests
}

// add records a delivery of body created at, sent with headers, as the
// newest one. An empty body records no "request".
func (f *historyAPI) add(id string, at time.Time, body []byte, headers map[string]string) {
	w := map[string]any{
		"execution_id": id, "url": "https://hooks.example.com/discard", "source": "api",
		"created_at": at.UTC().Format(time.RFC3339Nano), "headers": headers,
		"attempts": []map[string]any{{"status": "SUCCESS", "status_code": 200, "created_at": at.UTC().Format(time.RFC3339)}},
	}
	if body != nil {
		w["request"] = string(body)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = append([]map[string]any{w}, f.hooks...)
}

// addSigned records a delivery of body signed with liveSecret under scheme.
func (f *historyAPI) addSigned(id string, at time.Time, body []byte, scheme eachhooktest.Scheme) {
	h := map[string]string{}
	for k, v := range eachhooktest.Headers(liveSecret, body, scheme, at) {
		h[k] = v[0]
	}
	f.add(id, at, body, h)
}

func (f *historyAPI) listRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if strings.HasPrefix(r, "/v1/webhooks?") || r == "/v1/webhooks" {
			out = append(out, r)
		}
	}
	return out
}

func (f *historyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.URL.RequestURI())
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+testAPIKey {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": "Invalid or missing API key"}`)
		return
	}
	if r.URL.Path == "/v1/webhooks" {
		f.times = append(f.times, time.Now())
		if f.limited > 0 {
			f.limited--
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error": "Too many requests"}`)
			return
		}
		limit, offset := 50, 0
		if v := r.URL.Query().Get("limit"); v != "" {
			limit, _ = strconv.Atoi(v)
		}
		if v := r.URL.Query().Get("offset"); v != "" {
			offset, _ = strconv.Atoi(v)
		}
		n := min(limit, f.pageCap)
		page := []map[string]any{}
		for i := offset; i < len(f.hooks) && i < offset+n; i++ {
			page = append(page, f.hooks[i])
		}
		json.NewEncoder(w).Encode(map[string]any{"webhooks": page, "limit": limit, "offset": offset, "total_count": len(f.hooks)})
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/webhooks/")
	for _, h := range f.hooks {
		if h["execution_id"] == id {
			json.NewEncoder(w).Encode(h)
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprint(w, `{"error": "webhook not found"}`)
}

// liveReceiver is a receiver built with package eachhook that counts the
// callbacks per id and the requests it answered.
type liveReceiver struct {
	URL        string
	mu         sync.Mutex
	runs       map[string]int
	duplicates int
	refused    int
	posts      int
}

func newLiveReceiver(t *testing.T, opts ...eachhook.Option) *liveReceiver {
	t.Helper()
	rc := &liveReceiver{runs: map[string]int{}}
	obs := observe.Observer{
		Duplicate: func(context.Context, observe.DeliveryInfo) { rc.mu.Lock(); rc.duplicates++; rc.mu.Unlock() },
		Refused:   func(context.Context, observe.Refusal) { rc.mu.Lock(); rc.refused++; rc.mu.Unlock() },
	}
	base := []eachhook.Option{eachhook.WithSecret(liveSecret), eachhook.WithObserver(obs), eachhook.WithLogger(slog.New(slog.DiscardHandler))}
	h, err := eachhook.New(append(base, opts...)...)
	require.NoError(t, err)
	count := func(id string) { rc.mu.Lock(); rc.runs[id]++; rc.mu.Unlock() }
	h.OnSuccess(func(_ context.Context, s *eachhook.Success) error { count(s.ID); return nil })
	h.OnFailed(func(_ context.Context, f *eachhook.Failure) error { count(f.ID); return nil })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.posts++
		rc.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	rc.URL = srv.URL + "/webhooks/prediction"
	return rc
}

// snapshot returns the callback runs per id, the duplicates and the POSTs.
func (rc *liveReceiver) snapshot() (map[string]int, int, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	runs := map[string]int{}
	for k, v := range rc.runs {
		runs[k] = v
	}
	return runs, rc.duplicates, rc.posts
}

func (rc *liveReceiver) waitRuns(t *testing.T, want map[string]int) {
	t.Helper()
	require.Eventually(t, func() bool {
		runs, _, _ := rc.snapshot()
		return fmt.Sprint(runs) == fmt.Sprint(want)
	}, 10*time.Second, 5*time.Millisecond, "want callback runs %v", want)
}

func TestHistoryTellsEachForm(t *testing.T) {
	now := time.Now()
	api := &historyAPI{pageCap: 100}
	api.addSigned("pred-a", now.Add(-4*time.Minute), eachhooktest.SuccessBody("pred-a"), eachhooktest.BodyScheme)
	api.addSigned("pred-b", now.Add(-3*time.Minute), eachhooktest.SucceededBody("pred-b"), eachhooktest.LegacySecretScheme)
	api.addSigned("pred-b2", now.Add(-2*time.Minute), eachhooktest.SucceededBody("pred-b2"), eachhooktest.LegacySecretScheme)
	api.addSigned("pred-c", now.Add(-time.Minute), eachhooktest.SuccessBody("pred-c"), eachhooktest.TimestampScheme)
	api.add("pred-b3", now, eachhooktest.SucceededBody("pred-b3"), nil) // headers not recorded
	// A prefixed signature without a timestamp is form A.
	api.add("pred-a2", now, eachhooktest.SuccessBody("pred-a2"), map[string]string{
		"content-type": "application/json", "x-webhook-signature": "sha256=" + signature.Sign(liveSecret, "", eachhooktest.SuccessBody("pred-a2"))})
	srv := httptest.NewServer(api)
	defer srv.Close()

	r := runCmd(t, runOpts{}, "history", "-api-key", testAPIKey, "-api-url", srv.URL, "-list")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	forms := map[string]string{}
	for _, l := range lines[1:7] {
		f := strings.Fields(l)
		forms[f[0]] = strings.Join(f[2:len(f)-4], " ")
	}
	require.Equal(t, map[string]string{"pred-a": "A", "pred-a2": "A", "pred-b": "B", "pred-b2": "B", "pred-c": "C", "pred-b3": "B (by body)"}, forms)
	require.Equal(t, []string{
		"3 of 6 deliveries: this account sends the plain secret header (form B, X-Webhook-Secret, the documented behaviour): enable eachhook.WithLegacySecretHeader (eachhook listen -legacy-secret-header), or every delivery is refused with 401",
		"2 of 6 deliveries: this account signs the body (form A, X-Webhook-Signature: <hex>): eachhook.WithSecret verifies it as it is; eachhook replay and forward send this form by default",
		`1 of 6 deliveries: this account signs "<timestamp>.<body>" (form C, X-Webhook-Signature: sha256=… with X-Webhook-Timestamp; not publicly documented): eachhook verifies it as it is if the clock is within -tolerance (WithTolerance, 15m); replay and forward send it with -scheme timestamp`,
	}, lines[7:10])

	r = runCmd(t, runOpts{}, "history", "-api-key", testAPIKey, "-api-url", srv.URL, "pred-b")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "\nform       B\nthis account sends the plain secret header (form B, X-Webhook-Secret, the documented behaviour): enable eachhook.WithLegacySecretHeader (eachhook listen -legacy-secret-header), or every delivery is refused with 401\n")
}

func TestReplayRunsEachCallbackOnceAndAgainIsADuplicate(t *testing.T) {
	now := time.Now()
	api := &historyAPI{pageCap: 100}
	api.addSigned("pred-1", now.Add(-2*time.Minute), eachhooktest.SuccessBody("pred-1"), eachhooktest.LegacySecretScheme)
	api.addSigned("pred-2", now.Add(-time.Minute), eachhooktest.FailedBody("pred-2"), eachhooktest.BodyScheme)
	srv := httptest.NewServer(api)
	defer srv.Close()
	rc := newLiveReceiver(t)
	args := []string{"replay", "-api-key", testAPIKey, "-api-url", srv.URL, "-url", rc.URL, "-secret", liveSecret}

	r := runCmd(t, runOpts{}, append(args, "pred-1", "pred-2")...)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, "pred-1 success: 200 OK in ", r.stdout[:len("pred-1 success: 200 OK in ")])
	require.Contains(t, r.stdout, "\npred-2 failed: 200 OK in ")
	require.True(t, strings.HasSuffix(r.stdout, " (acknowledged)\n2 of 2 acknowledged\n"), r.stdout)
	rc.waitRuns(t, map[string]int{"pred-1": 1, "pred-2": 1})

	// Again: the receiver's dedupe answers 200 and runs nothing.
	r = runCmd(t, runOpts{}, append(args, "pred-1")...)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	runs, dups, posts := rc.snapshot()
	require.Equal(t, map[string]int{"pred-1": 1, "pred-2": 1}, runs)
	require.Equal(t, 1, dups)
	require.Equal(t, 3, posts)

	// The recorded bytes, signed with another secret, are refused: exit 1.
	r = runCmd(t, runOpts{}, "replay", "-api-key", testAPIKey, "-api-url", srv.URL, "-url", rc.URL, "-secret", "wrong", "pred-2")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "pred-2 failed: 401 Unauthorized")
	require.Contains(t, r.stdout, "(not acknowledged)\n0 of 1 acknowledged; 1 not\n")

	// An unknown id is reported, the others still replayed.
	r = runCmd(t, runOpts{}, append(args, "nope", "pred-2")...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, `nope: 404 Not Found (webhook not found): no webhook for execution id "nope"`)
	require.Contains(t, r.stdout, "1 of 2 acknowledged; 1 not\n")
}

func TestReplayTimestampScheme(t *testing.T) {
	api := &historyAPI{pageCap: 100}
	api.addSigned("pred-t", time.Now(), eachhooktest.SuccessBody("pred-t"), eachhooktest.TimestampScheme)
	srv := httptest.NewServer(api)
	defer srv.Close()
	var got http.Header
	var body []byte
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		body, _ = io.ReadAll(r.Body)
	}))
	defer target.Close()
	at := time.Unix(1_900_000_000, 0)
	r := runCmd(t, runOpts{now: func() time.Time { return at }}, "replay", "-api-key", testAPIKey, "-api-url", srv.URL,
		"-url", target.URL, "-secret", liveSecret, "-scheme", "timestamp", "pred-t")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, eachhooktest.SuccessBody("pred-t"), body, "the recorded body byte for byte")
	require.Equal(t, "1900000000", got.Get(signature.HeaderTimestamp))
	require.Equal(t, "sha256="+signature.Sign(liveSecret, "1900000000", body), got.Get(signature.Header))
}

func TestReplaySincePagesWaitsOut429AndReportsMissingBodies(t *testing.T) {
	now := time.Now()
	api := &historyAPI{pageCap: 3, limited: 1}
	api.addSigned("old-1", now.Add(-3*time.Hour), eachhooktest.SuccessBody("old-1"), eachhooktest.BodyScheme)
	api.addSigned("old-2", now.Add(-2*time.Hour), eachhooktest.SuccessBody("old-2"), eachhooktest.BodyScheme)
	var ids []string
	for i := range 7 {
		id := fmt.Sprintf("pred-%d", i)
		ids = append(ids, id)
		api.addSigned(id, now.Add(-time.Duration(50-i)*time.Minute), eachhooktest.SuccessBody(id), eachhooktest.LegacySecretScheme)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	rc := newLiveReceiver(t)
	args := []string{"replay", "-api-key", testAPIKey, "-api-url", srv.URL, "-url", rc.URL, "-secret", liveSecret, "-since", "1h"}

	// The receiver crashed after running the first three.
	for _, id := range ids[:3] {
		resp, err := http.DefaultClient.Do(must(eachhooktest.NewClientRequest(rc.URL, liveSecret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, now)))
		require.NoError(t, err)
		resp.Body.Close()
	}
	rc.waitRuns(t, map[string]int{"pred-0": 1, "pred-1": 1, "pred-2": 1})

	r := runCmd(t, runOpts{}, args...)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, "rate limited by the API: waiting 1s\n", r.stderr)
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
	}
	rc.waitRuns(t, want)
	_, dups, _ := rc.snapshot()
	require.Equal(t, 3, dups, "the three that already ran are duplicates")
	require.Contains(t, r.stdout, "7 deliveries created since ")
	require.True(t, strings.HasSuffix(r.stdout, "7 of 7 acknowledged\n"), r.stdout)
	require.Less(t, strings.Index(r.stdout, "pred-0 "), strings.Index(r.stdout, "pred-6 "), "oldest first")
	// One 429, then pages of 3 until the first delivery older than the window.
	require.Equal(t, []string{
		"/v1/webhooks?limit=100", "/v1/webhooks?limit=100",
		"/v1/webhooks?limit=100&offset=3", "/v1/webhooks?limit=100&offset=6",
	}, api.listRequests())

	// A delivery whose payload was not kept is reported, not skipped.
	api.add("pred-empty", now, nil, map[string]string{"Content-Type": "application/json"})
	r = runCmd(t, runOpts{}, args...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "pred-empty: each::labs kept no payload (no \"request\"): cannot send it again\n")
	require.True(t, strings.HasSuffix(r.stdout, "7 of 8 acknowledged; 1 not\n"), r.stdout)
}

func TestForwardSurvivesARestartWithoutForwardingTwice(t *testing.T) {
	start := time.Now()
	api := &historyAPI{pageCap: 2}
	api.addSigned("before-window", start.Add(-2*time.Hour), eachhooktest.SuccessBody("before-window"), eachhooktest.BodyScheme)
	api.addSigned("in-since", start.Add(-30*time.Minute), eachhooktest.SuccessBody("in-since"), eachhooktest.LegacySecretScheme)
	srv := httptest.NewServer(api)
	defer srv.Close()
	rc := newLiveReceiver(t)
	state := filepath.Join(t.TempDir(), "state", "forward.json")
	args := []string{"forward", "-api-key", testAPIKey, "-api-url", srv.URL, "-to", rc.URL, "-secret", liveSecret,
		"-interval", "20ms", "-since", "1h", "-state", state}

	runForward := func(during func()) result {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan result, 1)
		go func() { done <- runCmd(t, runOpts{ctx: ctx}, args...) }()
		during()
		cancel()
		select {
		case r := <-done:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("forward did not stop at Ctrl-C")
			return result{}
		}
	}

	r := runForward(func() {
		rc.waitRuns(t, map[string]int{"in-since": 1})
		api.addSigned("new-1", time.Now(), eachhooktest.SuccessBody("new-1"), eachhooktest.BodyScheme)
		api.addSigned("new-2", time.Now(), eachhooktest.FailedBody("new-2"), eachhooktest.BodyScheme)
		rc.waitRuns(t, map[string]int{"in-since": 1, "new-1": 1, "new-2": 1})
		// Stop once the answers are recorded, not while one is in flight.
		require.Eventually(t, func() bool { return forwardedIn(state) == 3 }, 10*time.Second, 5*time.Millisecond)
	})
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "\nin-since success: 200 OK in ")
	require.Contains(t, r.stdout, "\nnew-2 failed: 200 OK in ")
	require.NotContains(t, r.stdout, "before-window")
	require.True(t, strings.HasSuffix(r.stdout, "stopped: 3 deliveries forwarded in this run; state in "+state+"\n"), r.stdout)

	// Restarted, rate limited once: only the new delivery is forwarded.
	api.mu.Lock()
	api.limited = 1
	api.times = nil
	api.mu.Unlock()
	r = runForward(func() {
		api.addSigned("new-3", time.Now(), eachhooktest.SuccessBody("new-3"), eachhooktest.BodyScheme)
		rc.waitRuns(t, map[string]int{"in-since": 1, "new-1": 1, "new-2": 1, "new-3": 1})
		// Poll a few more times over the whole list.
		n := len(api.listRequests())
		require.Eventually(t, func() bool { return len(api.listRequests()) >= n+4 }, 10*time.Second, 5*time.Millisecond)
	})
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "429 Too Many Requests (Too many requests): rate limited: the API asks to wait 1s; next poll in 1s\n")
	require.Contains(t, r.stdout, "\nnew-3 success: 200 OK in ")
	require.True(t, strings.HasSuffix(r.stdout, "stopped: 1 deliveries forwarded in this run; state in "+state+"\n"), r.stdout)
	_, dups, posts := rc.snapshot()
	require.Equal(t, 0, dups, "nothing was forwarded twice")
	require.Equal(t, 4, posts)

	// At most one request per interval, and the Retry-After waited out.
	api.mu.Lock()
	times := append([]time.Time(nil), api.times...)
	api.mu.Unlock()
	require.GreaterOrEqual(t, times[1].Sub(times[0]), time.Second)
	for i := 2; i < len(times); i++ {
		require.GreaterOrEqual(t, times[i].Sub(times[i-1]), 20*time.Millisecond)
	}
}

func TestForwardRetriesAnUnacknowledgedDeliveryThreeTimes(t *testing.T) {
	api := &historyAPI{pageCap: 100}
	srv := httptest.NewServer(api)
	defer srv.Close()
	var mu sync.Mutex
	posts := 0
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts++
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer target.Close()
	api.addSigned("down", time.Now().Add(time.Second), eachhooktest.SuccessBody("down"), eachhooktest.BodyScheme)
	api.add("empty", time.Now().Add(time.Second), nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan result, 1)
	go func() {
		done <- runCmd(t, runOpts{ctx: ctx}, "forward", "-api-key", testAPIKey, "-api-url", srv.URL, "-to", target.URL,
			"-secret", liveSecret, "-interval", "10ms", "-state", filepath.Join(t.TempDir(), "s.json"))
	}()
	require.Eventually(t, func() bool { return len(api.listRequests()) >= 6 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	r := <-done
	require.Equal(t, 0, r.code)
	mu.Lock()
	require.Equal(t, 3, posts)
	mu.Unlock()
	require.Contains(t, r.stdout, "; trying again at the next poll (1 of 3)\n")
	require.Contains(t, r.stdout, "; giving up: replay it later with eachhook replay\n")
	require.Equal(t, 1, strings.Count(r.stdout, "empty: each::labs kept no payload"), r.stdout)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestLiveCommandsUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"replay", "-api-key", "k", "-secret", "s", "id"}, "-url is required"},
		{[]string{"replay", "-api-key", "k", "-secret", "s", "-url", "localhost:8080"}, `-url must be an http:// or https:// URL, not "localhost:8080"`},
		{[]string{"replay", "-api-key", "k", "-secret", "s", "-url", "http://x"}, "give one or more EXECUTION_IDs, or -since DURATION"},
		{[]string{"replay", "-api-key", "k", "-secret", "s", "-url", "http://x", "-since", "1h", "id"}, "give EXECUTION_IDs or -since, not both"},
		{[]string{"replay", "-secret", "s", "-url", "http://x", "id"}, "-api-key is required (or set $EACHLABS_API_KEY)"},
		{[]string{"replay", "-api-key", "k", "-url", "http://x", "id"}, "-secret is required (or set $EACHHOOK_SECRET)"},
		{[]string{"replay", "-api-key", "k", "-secret", "s", "-url", "http://x", "-scheme", "hmac", "id"}, `-scheme must be body, timestamp or secret, not "hmac"`},
		{[]string{"forward", "-api-key", "k", "-secret", "s"}, "-to is required"},
		{[]string{"forward", "-api-key", "k", "-secret", "s", "-to", "http://x", "-interval", "0s"}, "-interval must be > 0"},
		{[]string{"forward", "-api-key", "k", "-secret", "s", "-to", "http://x", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCmd(t, runOpts{}, tc.args...)
			require.Equal(t, 2, r.code)
			// One line: the error, then where to read the flags.
			require.Equal(t, "eachhook "+tc.args[0]+": "+tc.want+"; run 'eachhook "+tc.args[0]+" -h' for its flags and examples\n", r.stderr)
		})
	}
	for _, cmd := range []string{"replay", "forward"} {
		r := runCmd(t, runOpts{}, cmd, "-h")
		require.Equal(t, 0, r.code)
		require.Contains(t, r.stdout, "examples:\n  eachhook "+cmd)
	}
}

func TestForwardRefusesAStateFileItCannotRead(t *testing.T) {
	state := filepath.Join(t.TempDir(), "s.json")
	require.NoError(t, os.WriteFile(state, []byte("not json"), 0o600))
	r := runCmd(t, runOpts{}, "forward", "-api-key", "k", "-secret", "s", "-to", "http://x", "-api-url", "http://127.0.0.1:1", "-state", state)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "is not a forward state file (delete it to start afresh)")
}

// TestForwardBinaryStopsOnSIGINT runs the built command as a user would
// and stops it with Ctrl-C.
func TestForwardBinaryStopsOnSIGINT(t *testing.T) {
	if testing.Short() || runtime.GOOS == "windows" {
		t.Skip("builds the binary; needs SIGINT")
	}
	bin := filepath.Join(t.TempDir(), "eachhook")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))

	api := &historyAPI{pageCap: 100}
	api.addSigned("bin-1", time.Now().Add(time.Second), eachhooktest.SuccessBody("bin-1"), eachhooktest.BodyScheme)
	srv := httptest.NewServer(api)
	defer srv.Close()
	rc := newLiveReceiver(t)
	cmd := exec.Command(bin, "forward", "-api-url", srv.URL, "-to", rc.URL, "-interval", "20ms",
		"-state", filepath.Join(t.TempDir(), "state.json"))
	cmd.Env = append(os.Environ(), "EACHLABS_API_KEY="+testAPIKey, "EACHHOOK_SECRET="+liveSecret)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()

	rc.waitRuns(t, map[string]int{"bin-1": 1})
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "\nbin-1 success: 200 OK in ") },
		10*time.Second, 5*time.Millisecond, "the answer was printed")
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), "forward exits 0 on SIGINT: %s", stderr.String())
	require.Contains(t, stdout.String(), "\nbin-1 success: 200 OK in ")
	require.Contains(t, stdout.String(), "\nstopped: 1 deliveries forwarded in this run; state in ")
}

// forwardedIn returns how many deliveries the forward state file at path
// holds (0 while there is none).
func forwardedIn(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var st forwardState
	if json.Unmarshal(b, &st) != nil {
		return 0
	}
	return len(st.Forwarded)
}
