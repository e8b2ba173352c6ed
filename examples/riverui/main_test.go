package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	secret     = "whsec_riverui_test"
	uiUser     = "admin"
	uiPassword = "s3cret-for-the-test"
)

var quiet = slog.New(slog.DiscardHandler)

// fastRetry retries a failed callback after 10ms instead of River's
// attempt⁴ seconds.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(10 * time.Millisecond) }

// start runs the example with cfg on a free port until the end of the
// test and returns its base URL.
func start(t *testing.T, cfg config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	base := "http://" + ln.Addr().String()
	// run migrates and starts the Handler before it serves: wait for that.
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)
	return base
}

// deliver posts a signed success delivery of id and returns the status.
func deliver(t *testing.T, base, id string) int {
	t.Helper()
	req, err := eachhooktest.NewClientRequest(base+"/webhooks/prediction", secret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, time.Now())
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// get requests base+path with the given basic-auth credentials (none if
// user is "") and returns the response with its body read.
func get(t *testing.T, base, path, user, password string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// uiJob is what River UI's job API answers per job.
type uiJob struct {
	ID          int64                    `json:"id"`
	Args        string                   `json:"args"` // the args' JSON, as a string
	Attempt     int                      `json:"attempt"`
	Kind        string                   `json:"kind"`
	MaxAttempts int                      `json:"max_attempts"`
	Queue       string                   `json:"queue"`
	State       string                   `json:"state"`
	Errors      []rivertype.AttemptError `json:"errors"`
}

// predictionID is the prediction id in a job's args (the durable queue's
// {"id", "status", "webhook", ...}), which River UI's job list shows
// from their start: the id and the status come first.
func (j uiJob) predictionID(t *testing.T) string {
	t.Helper()
	var args struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(j.Args), &args), "args %s", j.Args)
	require.Regexp(t, `^\{"id": ?"`+regexp.QuoteMeta(args.ID)+`", ?"status": ?"(success|failed)", ?"webhook"`, j.Args)
	return args.ID
}

// listJobs lists the jobs in state through River UI's API, with the right
// credentials, by prediction id.
func listJobs(t *testing.T, base, state string) map[string]uiJob {
	t.Helper()
	resp, body := get(t, base, uiPrefix+"/api/jobs?state="+state+"&limit=100", uiUser, uiPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var list struct {
		Data []uiJob `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &list), "%s", body)
	jobs := map[string]uiJob{}
	for _, j := range list.Data {
		jobs[j.predictionID(t)] = j
	}
	return jobs
}

// TestRiverUIBehindBasicAuth serves completed and discarded deliveries and
// reads them through River UI's HTTP API: refused without the example's
// credentials, listed with them, the dead letters as discarded jobs with
// every attempt's error.
func TestRiverUIBehindBasicAuth(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool)
	const attempts = 2
	var mu sync.Mutex
	runs := map[string]int{}
	base := start(t, config{
		Secret: secret, Pool: pool, Schema: schema,
		UIUser: uiUser, UIPassword: uiPassword,
		Durable:    durable.Config{MaxAttempts: attempts, RetryPolicy: fastRetry{}, Logger: quiet},
		FailPrefix: "fail_",
		OnDone: func(_ context.Context, id string, _ error) {
			mu.Lock()
			runs[id]++
			mu.Unlock()
		},
		Log: quiet,
	})

	completed := []string{"ok_1", "ok_2", "ok_3"}
	discarded := []string{"fail_1", "fail_2"}
	for _, id := range append(completed, discarded...) {
		require.Equal(t, http.StatusOK, deliver(t, base, id), id)
	}

	t.Run("refused without credentials", func(t *testing.T) {
		for _, path := range []string{uiPrefix, uiPrefix + "/", uiPrefix + "/jobs?state=discarded", uiPrefix + "/api/jobs?state=discarded", uiPrefix + "/api/states"} {
			for _, cred := range []struct{ user, password string }{{"", ""}, {uiUser, "wrong"}, {"root", uiPassword}, {uiUser, ""}} {
				resp, body := get(t, base, path, cred.user, cred.password)
				require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s as %q", path, cred.user)
				require.Equal(t, `Basic realm="River UI", charset="UTF-8"`, resp.Header.Get("WWW-Authenticate"))
				require.NotContains(t, string(body), "eachhook_delivery")
			}
		}
	})

	t.Run("refused cross-origin writes with credentials", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, base+uiPrefix+"/api/jobs/retry", strings.NewReader(`{"ids":["1"]}`))
		require.NoError(t, err)
		req.SetBasicAuth(uiUser, uiPassword)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, _ := do(t, req)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	t.Run("UI page with credentials", func(t *testing.T) {
		resp, body := get(t, base, uiPrefix+"/jobs?state=discarded", uiUser, uiPassword)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
		require.Contains(t, string(body), "<title>River</title>")
	})

	t.Run("lists completed and discarded jobs", func(t *testing.T) {
		require.Eventually(t, func() bool {
			return len(listJobs(t, base, "completed")) == len(completed) && len(listJobs(t, base, "discarded")) == len(discarded)
		}, 30*time.Second, 50*time.Millisecond)

		done := listJobs(t, base, "completed")
		require.Len(t, done, len(completed))
		for _, id := range completed {
			j, ok := done[id]
			require.True(t, ok, "completed job of %s listed", id)
			require.Equal(t, "eachhook_delivery", j.Kind)
			require.Equal(t, durable.DefaultQueueName, j.Queue)
			require.Equal(t, 1, j.Attempt)
		}

		dead := listJobs(t, base, "discarded")
		require.Len(t, dead, len(discarded))
		for _, id := range discarded {
			j, ok := dead[id]
			require.True(t, ok, "discarded job of %s listed", id)
			require.Equal(t, "eachhook_delivery", j.Kind)
			require.Equal(t, attempts, j.Attempt)
			require.Equal(t, attempts, j.MaxAttempts)

			// The job page shows why: one error per attempt.
			resp, body := get(t, base, fmt.Sprintf("%s/api/jobs/%d", uiPrefix, j.ID), uiUser, uiPassword)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			var detail uiJob
			require.NoError(t, json.Unmarshal(body, &detail))
			require.Equal(t, "discarded", detail.State)
			require.Len(t, detail.Errors, attempts)
			for i, e := range detail.Errors {
				require.Equal(t, i+1, e.Attempt)
				require.Equal(t, fmt.Sprintf("demo failure of %s (id has prefix %q)", id, "fail_"), e.Error)
			}
		}

		// The UI's counts agree.
		resp, body := get(t, base, uiPrefix+"/api/states", uiUser, uiPassword)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var states map[string]struct {
			Count    int    `json:"count"`
			Accuracy string `json:"accuracy"`
		}
		require.NoError(t, json.Unmarshal(body, &states), "%s", body)
		require.Equal(t, len(completed), states["completed"].Count)
		require.Equal(t, len(discarded), states["discarded"].Count)
		require.Equal(t, "exact", states["discarded"].Accuracy)

		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, map[string]int{"ok_1": 1, "ok_2": 1, "ok_3": 1, "fail_1": attempts, "fail_2": attempts}, runs)
	})

	t.Run("retry of a dead letter runs its callback once more", func(t *testing.T) {
		j := listJobs(t, base, "discarded")["fail_1"]
		req, err := http.NewRequest(http.MethodPost, base+uiPrefix+"/api/jobs/retry", strings.NewReader(fmt.Sprintf(`{"ids":["%d"]}`, j.ID)))
		require.NoError(t, err)
		req.SetBasicAuth(uiUser, uiPassword)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, body := do(t, req)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

		// River gives an exhausted job one more attempt; it fails again.
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return runs["fail_1"] == attempts+1
		}, 30*time.Second, 20*time.Millisecond)
		require.Eventually(t, func() bool {
			resp, body := get(t, base, fmt.Sprintf("%s/api/jobs/%d", uiPrefix, j.ID), uiUser, uiPassword)
			var detail uiJob
			return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &detail) == nil &&
				detail.State == "discarded" && len(detail.Errors) == attempts+1
		}, 30*time.Second, 50*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, attempts, runs["fail_2"])
	})
}

// TestRiverUIOffWithoutCredentials: without RIVERUI_USER and
// RIVERUI_PASSWORD the UI is not mounted at all, and the webhook works.
func TestRiverUIOffWithoutCredentials(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool)
	ran := make(chan string, 1)
	base := start(t, config{
		Secret: secret, Pool: pool, Schema: schema,
		Durable: durable.Config{Logger: quiet},
		OnDone:  func(_ context.Context, id string, _ error) { ran <- id },
		Log:     quiet,
	})
	for _, path := range []string{uiPrefix, uiPrefix + "/", uiPrefix + "/api/jobs?state=discarded"} {
		resp, _ := get(t, base, path, uiUser, uiPassword)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
	require.Equal(t, http.StatusOK, deliver(t, base, "pred_1"))
	require.Equal(t, "pred_1", <-ran)
}

// TestRiverUIHalfConfigured: a user without a password, or the reverse,
// is a mistake the example refuses to start with.
func TestRiverUIHalfConfigured(t *testing.T) {
	for _, c := range []struct{ user, password string }{{uiUser, ""}, {"", uiPassword}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		err = run(context.Background(), ln, config{Secret: secret, UIUser: c.user, UIPassword: c.password, Log: quiet})
		require.ErrorContains(t, err, "set both RIVERUI_USER and RIVERUI_PASSWORD")
	}
}

// TestJobTraceLinksToRequest: otelriver's insert span is a child of the
// request's server span, and each attempt's work span links to the insert
// span, so a job's trace leads back to the request that stored it. The
// callback's context carries the work span.
func TestJobTraceLinksToRequest(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	callbackSpan := make(chan trace.SpanContext, 1)
	base := start(t, config{
		Secret: secret, Pool: pool, Schema: schema,
		Durable:        durable.Config{Logger: quiet},
		TracerProvider: tp,
		OnDone: func(ctx context.Context, _ string, _ error) {
			callbackSpan <- trace.SpanContextFromContext(ctx)
		},
		Log: quiet,
	})
	require.Equal(t, http.StatusOK, deliver(t, base, "pred_traced"))
	inCallback := <-callbackSpan

	named := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range spans.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	// The work span ends after the callback returned.
	require.Eventually(t, func() bool { return len(named("river.work")) == 1 }, 10*time.Second, 10*time.Millisecond)

	requests := named("POST /webhooks/prediction")
	require.Len(t, requests, 1)
	request := requests[0]
	require.Equal(t, trace.SpanKindServer, request.SpanKind())

	inserts := named("river.insert_many")
	require.Len(t, inserts, 1)
	insert := inserts[0]
	require.Equal(t, request.SpanContext().TraceID(), insert.SpanContext().TraceID())
	require.Equal(t, request.SpanContext().SpanID(), insert.Parent().SpanID())
	require.Equal(t, trace.SpanKindProducer, insert.SpanKind())

	work := named("river.work")[0]
	require.Equal(t, trace.SpanKindConsumer, work.SpanKind())
	require.Len(t, work.Links(), 1)
	link := work.Links()[0].SpanContext
	require.Equal(t, request.SpanContext().TraceID(), link.TraceID())
	require.Equal(t, insert.SpanContext().SpanID(), link.SpanID())

	require.Equal(t, work.SpanContext().TraceID(), inCallback.TraceID())
	require.Equal(t, work.SpanContext().SpanID(), inCallback.SpanID())
}

// Twelve concurrent deliveries, stored by one group commit or several:
// each job's work span links to the insert span of its own request's
// trace, never to another request's (issue 20).
func TestConcurrentJobsLinkToTheirOwnRequests(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	const n = 12
	done := make(chan string, n)
	base := start(t, config{
		Secret: secret, Pool: pool, Schema: schema,
		Durable:        durable.Config{Logger: quiet},
		TracerProvider: tp,
		OnDone:         func(_ context.Context, id string, _ error) { done <- id },
		Log:            quiet,
	})
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = deliver(t, base, fmt.Sprintf("pred_concurrent_%02d", i)) })
	}
	wg.Wait()
	for i := range n {
		require.Equal(t, http.StatusOK, codes[i], "delivery %d", i)
	}
	for range n {
		<-done
	}
	named := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range spans.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(named("river.work")) == n }, 10*time.Second, 10*time.Millisecond)

	requests := map[trace.TraceID]bool{}
	for _, r := range named("POST /webhooks/prediction") {
		requests[r.SpanContext().TraceID()] = true
	}
	require.Len(t, requests, n, "one trace per request")
	// Each request's trace holds exactly one insert span, its child.
	insertOf := map[trace.SpanID]trace.TraceID{}
	perTrace := map[trace.TraceID]int{}
	for _, s := range named("river.insert_many") {
		require.True(t, requests[s.SpanContext().TraceID()], "an insert span outside every request's trace")
		insertOf[s.SpanContext().SpanID()] = s.SpanContext().TraceID()
		perTrace[s.SpanContext().TraceID()]++
	}
	for tr := range requests {
		require.Equal(t, 1, perTrace[tr], "inserts in one request's trace")
	}
	// Each work span links to one insert, and no two to the same request.
	linked := map[trace.TraceID]int{}
	for _, w := range named("river.work") {
		require.Len(t, w.Links(), 1)
		l := w.Links()[0].SpanContext
		tr, ok := insertOf[l.SpanID()]
		require.True(t, ok, "a work span linked to no insert span")
		require.Equal(t, tr, l.TraceID())
		linked[tr]++
	}
	require.Len(t, linked, n, "every request's trace is linked by exactly one job")
	for tr, c := range linked {
		require.Equal(t, 1, c, "jobs linked to trace %s", tr)
	}
}
