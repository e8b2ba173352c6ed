package eachloop_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/eachlooptest"
	"github.com/stretchr/testify/require"
)

// outstanding creates n predictions the API will report finished: most
// succeeded, every tenth failed with an error object, every fiftieth was
// cancelled. It returns the ids of each kind.
func outstanding(r *rig, n int) (succeeded, failed, cancelled []string) {
	for i := range n {
		id := r.create()
		switch {
		case i%50 == 49:
			cancelled = append(cancelled, id)
			r.api.Script(id, eachlooptest.OK(fmt.Sprintf(`{"id": %q, "status": "cancelled", "output": null}`, id)))
		case i%10 == 9:
			failed = append(failed, id)
			r.api.Script(id, eachlooptest.OK(fmt.Sprintf(`{"id": %q, "status": "error", "output": {"error_code": "PROVIDER_RATE_LIMIT",
				"error_message": "provider is busy", "retryable": true, "classification": {"category": "RATE_LIMIT"}}}`, id)))
		default:
			succeeded = append(succeeded, id)
			r.api.Script(id, eachlooptest.Success(id))
		}
	}
	return succeeded, failed, cancelled
}

// settleAll runs the reconciler until n callbacks ran and returns how many
// ran per id.
func settleAll(r *rig, n int) map[string]int {
	r.t.Helper()
	r.start()
	runs := map[string]int{}
	for range n {
		runs[eachlooptest.StepUntilReceive(r.t, r.clock, r.calls.done)]++
	}
	r.stop()
	return runs
}

func TestSweepSettles500OutstandingPredictionsInAHandfulOfCalls(t *testing.T) {
	const n = 500
	cases := []struct {
		name      string
		listing   bool
		capTotal  int
		wantLists int
		wantGets  int
	}{
		// Before: one GET per prediction (the API has no list: one 404).
		{name: "per prediction", listing: false, wantLists: 1, wantGets: n},
		// 450 successes in 5 pages of 100, 40 failures and 10
		// cancellations in one page each.
		{name: "sweep", listing: true, wantLists: 7, wantGets: 0},
		// A capped total_count: pages until a short page.
		{name: "sweep, capped total", listing: true, capTotal: 150, wantLists: 7, wantGets: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithGrace(0)}})
			r.calls.done = make(chan string, n)
			r.api.ServeExecutions(tc.listing)
			r.api.CapTotal(tc.capTotal)
			succeeded, failed, cancelled := outstanding(r, n)
			require.Len(t, succeeded, 450)
			runs := settleAll(r, n)

			require.Len(t, runs, n)
			for id, k := range runs {
				require.Equal(t, 1, k, id)
			}
			s, f := r.calls.counts()
			require.Equal(t, len(succeeded), s)
			require.Equal(t, len(failed)+len(cancelled), f)
			require.Empty(t, r.pending())
			lists, gets := len(r.api.ExecutionLists()), r.api.GetCount()
			t.Logf("%d outstanding predictions settled with %d list requests and %d prediction GETs: %d API calls", n, lists, gets, lists+gets)
			require.Equal(t, tc.wantLists, lists, r.api.ExecutionLists())
			require.Equal(t, tc.wantGets, gets)

			r.calls.mu.Lock()
			defer r.calls.mu.Unlock()
			for _, x := range r.calls.failures {
				if x.ID == failed[0] {
					require.Equal(t, "PROVIDER_RATE_LIMIT", x.Code)
					require.Equal(t, "provider is busy", x.Logs)
					require.Equal(t, "RATE_LIMIT", x.Category)
					require.True(t, x.Retryable)
				}
				if x.ID == cancelled[0] {
					require.Equal(t, eachhook.CodeCancelled, x.Code)
				}
			}
			if tc.listing {
				require.Contains(t, r.api.ExecutionLists()[0], "status=success")
				for _, x := range r.calls.successes {
					require.Equal(t, 12.5, x.Metrics.PredictTime, "run_time")
					u, err := x.URL()
					require.NoError(t, err)
					require.NotEmpty(t, u)
				}
			}
		})
	}
}

func TestSweepFallsBackToOnePollPerPrediction(t *testing.T) {
	r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithGrace(0), eachloop.WithPollWait(time.Minute, time.Minute)}})
	r.api.ServeExecutions(true)
	ok1, ok2, bare, running, gone := r.create(), r.create(), r.create(), r.create(), r.create()
	r.api.Script(ok1, eachlooptest.Success(ok1))
	r.api.Script(ok2, eachlooptest.Success(ok2))
	// A failure listed without its error object is polled for its logs.
	r.api.Script(bare, eachlooptest.OK(fmt.Sprintf(`{"id": %q, "status": "failed", "output": null, "logs": "Error: Model timeout after 30s"}`, bare)))
	// A prediction the list does not have (its poll fails) is polled.
	r.api.Script(gone, eachlooptest.Answer{Status: http.StatusNotFound, Body: `{"error": "Prediction not found"}`}, eachlooptest.Success(gone))

	r.start()
	// The first sweep, at t0, settles these three: wait for their
	// callbacks without moving the clock. The callbacks run on the
	// Handler's workers and may come after the reconciler went to sleep,
	// so StepUntilReceive would poll running and gone early.
	got := map[string]bool{}
	for range 3 {
		got[r.callback()] = true
	}
	require.Equal(t, map[string]bool{ok1: true, ok2: true, bare: true}, got)
	require.Equal(t, t0, r.clock.Now(), "settled without a step")
	require.Len(t, r.api.Gets(bare), 1, "the failure listed without its error is polled")
	require.Empty(t, r.api.Gets(ok1), "settled from the list")
	require.Empty(t, r.api.Gets(running), "not listed: still running, not polled")
	r.calls.mu.Lock()
	require.Equal(t, "Error: Model timeout after 30s", r.calls.failures[0].Logs)
	r.calls.mu.Unlock()

	// The two left are below the sweep's minimum: polled one by one.
	r.api.Script(running, eachlooptest.Success(running))
	got = map[string]bool{}
	for range 2 {
		got[eachlooptest.StepUntilReceive(t, r.clock, r.calls.done)] = true
	}
	require.Equal(t, map[string]bool{running: true, gone: true}, got)
	require.Len(t, r.api.Gets(running), 1)
	require.Len(t, r.api.Gets(gone), 2)
	require.Len(t, r.api.ExecutionLists(), 3, "one sweep: success, error, cancelled")
	r.stop()
	s, f := r.calls.counts()
	require.Equal(t, [2]int{4, 1}, [2]int{s, f})
}

func TestSweepPollsAtTheHorizonBeforeGivingUp(t *testing.T) {
	r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithGrace(0), eachloop.WithHorizon(time.Hour),
		eachloop.WithPollWait(10*time.Minute, 10*time.Minute)}})
	r.api.ServeExecutions(true)
	var ids []string
	for range 4 {
		ids = append(ids, r.create())
	}
	r.start()
	for range 4 {
		err := eachlooptest.StepUntilReceive(t, r.clock, r.errs)
		require.ErrorIs(t, err, eachloop.ErrGaveUp)
	}
	r.stop()
	for _, id := range ids {
		require.Len(t, r.api.Gets(id), 1, "one poll, at the horizon")
		require.Equal(t, time.Hour, r.gets(id)[0])
	}
	require.Len(t, r.api.ExecutionLists(), 7*3, "a sweep at 0, 10m, … 60m")
}

func TestSweepWithoutTheListPollsEachPrediction(t *testing.T) {
	r := newRig(t, rigConfig{loopOpts: []eachloop.Option{eachloop.WithGrace(0)}})
	var ids []string
	for range 5 {
		id := r.create()
		ids = append(ids, id)
		r.api.Script(id, eachlooptest.OK(fmt.Sprintf(`{"id": %q, "status": "processing"}`, id)), eachlooptest.Success(id))
	}
	runs := settleAll(r, 5)
	require.Len(t, runs, 5)
	require.Equal(t, []string{"from=2026-11-27T07%3A55%3A00Z&limit=100&status=success&to=2026-11-27T08%3A05%3A00Z"}, r.api.ExecutionLists(),
		"one 404, then no more sweeps")
	for _, id := range ids {
		require.Len(t, r.api.Gets(id), 2)
	}
}

func TestCreateRefusedForBalanceOrConcurrencyIsATypedErrorNotRetried(t *testing.T) {
	cases := []struct {
		code int
		body string
		want error
	}{
		{http.StatusPaymentRequired, `{"status": "error", "error": "Insufficient balance", "details": "balance 0.00"}`, eachlabs.ErrPaymentRequired},
		{http.StatusTooManyRequests, `{"status": "error", "error": "Too many concurrent predictions", "details": "limit 10"}`, eachlabs.ErrConcurrencyLimit},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			r := newRig(t, rigConfig{})
			r.api.RefuseWith(tc.code, tc.body)
			var creates atomic.Int32
			r.api.OnCreate(func(string, eachlabs.PredictionRequest) { creates.Add(1) })
			id, err := r.loop.Create(t.Context(), eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: map[string]any{}})
			require.ErrorIs(t, err, tc.want)
			require.NotErrorIs(t, err, eachloop.ErrNotRecorded)
			require.Empty(t, id)
			require.Zero(t, creates.Load())
			require.Equal(t, 1, r.api.CreateRequests(), "one request, not retried")
			require.Empty(t, r.pending(), "nothing recorded")

			r.api.RefuseWith(0, "")
			_, err = r.loop.Create(t.Context(), eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: map[string]any{}})
			require.NoError(t, err)
			require.Len(t, r.pending(), 1)
		})
	}
}
