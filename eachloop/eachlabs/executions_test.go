package eachlabs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/stretchr/testify/require"
)

func TestListExecutionsSendsTheFiltersAndDecodes(t *testing.T) {
	var got string
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Path + "?" + r.URL.RawQuery
		w.Write([]byte(`{"executions": [
  {"id": "p1", "model": "flux-1-1-pro", "status": "success", "output": "https://x/y.png", "created_at": "2026-11-27T08:00:00Z",
   "started_at": "2026-11-27T08:00:01Z", "completed_at": "2026-11-27T08:00:13Z", "run_time": 12.5, "execution_cost": 0.05},
  {"id": "p2", "status": "failed", "output": {"error_code": "EXECUTION_TIMEOUT"}, "run_time": "n/a", "workflow_id": "wf", "workflow_execution_id": "x"}
], "limit": 2, "offset": 4, "total_count": 1000, "total_capped": true}`))
	})
	from := time.Date(2026, 11, 27, 9, 0, 0, 0, time.FixedZone("CET", 3600))
	p, err := c.ListExecutions(t.Context(), eachlabs.ExecutionListOptions{Status: "success", Model: "flux-1-1-pro",
		From: from, To: from.Add(time.Hour), Limit: 2, Offset: 4})
	require.NoError(t, err)
	require.Equal(t, "/v1/executions?from=2026-11-27T08%3A00%3A00Z&limit=2&model=flux-1-1-pro&offset=4&status=success&to=2026-11-27T09%3A00%3A00Z", got)
	require.Equal(t, 2, p.Limit)
	require.Equal(t, 4, p.Offset)
	require.Equal(t, 1000, p.TotalCount)
	require.True(t, p.TotalCapped)
	require.Len(t, p.Executions, 2)
	e := p.Executions[0]
	require.Equal(t, "p1", e.ID)
	require.Equal(t, "flux-1-1-pro", e.Model)
	require.Equal(t, `"https://x/y.png"`, string(e.Output))
	require.Equal(t, "2026-11-27T08:00:13Z", e.CompletedAt)
	require.Equal(t, 12.5, e.RunTime)
	require.Equal(t, 0.05, e.ExecutionCost)
	require.True(t, e.Terminal())
	f := p.Executions[1]
	require.Equal(t, eachlabs.StatusFailed, f.Status)
	require.True(t, f.Terminal())
	require.Zero(t, f.RunTime, "a member of another type is left zero")
	require.Equal(t, "wf", f.WorkflowID)
	require.JSONEq(t, `{"error_code": "EXECUTION_TIMEOUT"}`, string(f.Output))

	_, err = c.ListExecutions(t.Context(), eachlabs.ExecutionListOptions{Limit: 101})
	require.Error(t, err)
}

// pagedAPI lists n executions, at most pageCap per page, with total_count
// capped at capAt (0: exact).
func pagedAPI(n, pageCap, capAt int, offsets *[]int, mu *sync.Mutex) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		mu.Lock()
		*offsets = append(*offsets, offset)
		mu.Unlock()
		var page []map[string]any
		for i := offset; i < n && i < offset+min(limit, pageCap); i++ {
			page = append(page, map[string]any{"id": fmt.Sprint("p", i), "status": "success"})
		}
		total, capped := n, false
		if capAt > 0 && n > capAt {
			total, capped = capAt, true
		}
		json.NewEncoder(w).Encode(map[string]any{"executions": page, "limit": limit, "offset": offset, "total_count": total, "total_capped": capped})
	}
}

func TestWalkExecutionsReadsEveryPage(t *testing.T) {
	cases := []struct {
		name              string
		n, pageCap, capAt int
		wantOffsets       []int
	}{
		{"exact count", 250, 100, 0, []int{0, 100, 200}},
		{"exact count, short pages", 250, 60, 0, []int{0, 60, 120, 180, 240}},
		{"exact count on a page boundary", 200, 100, 0, []int{0, 100}},
		{"capped: until a short page", 250, 100, 120, []int{0, 100, 200}},
		{"capped on a page boundary: until an empty page", 200, 100, 120, []int{0, 100, 200}},
		{"none", 0, 100, 0, []int{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var offsets []int
			var mu sync.Mutex
			c := newClient(t, pagedAPI(tc.n, tc.pageCap, tc.capAt, &offsets, &mu))
			seen := 0
			n, err := c.WalkExecutions(t.Context(), eachlabs.ExecutionListOptions{Limit: 100}, func(p *eachlabs.ExecutionPage) bool {
				seen += len(p.Executions)
				return true
			})
			require.NoError(t, err)
			require.Equal(t, tc.n, seen)
			require.Equal(t, tc.wantOffsets, offsets)
			require.Equal(t, len(tc.wantOffsets), n)
		})
	}

	var offsets []int
	var mu sync.Mutex
	c := newClient(t, pagedAPI(500, 100, 0, &offsets, &mu))
	n, err := c.WalkExecutions(t.Context(), eachlabs.ExecutionListOptions{Limit: 100}, func(*eachlabs.ExecutionPage) bool { return false })
	require.NoError(t, err)
	require.Equal(t, 1, n, "stops when fn says so")

	c = newClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	n, err = c.WalkExecutions(t.Context(), eachlabs.ExecutionListOptions{}, func(*eachlabs.ExecutionPage) bool { return true })
	require.ErrorIs(t, err, eachlabs.ErrRateLimited)
	require.False(t, errors.Is(err, eachlabs.ErrConcurrencyLimit), "only creation has a concurrency cap")
	var ae *eachlabs.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 7*time.Second, ae.RetryAfter)
	require.Equal(t, 1, n)
}

func TestWalkWebhooksAdvancesByWhatAPageHeld(t *testing.T) {
	var mu sync.Mutex
	var offsets []int
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		mu.Lock()
		offsets = append(offsets, offset)
		mu.Unlock()
		var page []map[string]any
		for i := offset; i < 7 && i < offset+3; i++ { // 3 a page, whatever the limit
			page = append(page, map[string]any{"execution_id": fmt.Sprint("e", i), "url": "u", "request": "{}", "source": "s", "created_at": "t"})
		}
		json.NewEncoder(w).Encode(map[string]any{"webhooks": page, "limit": 100, "offset": offset, "total_count": 7})
	})
	var ids []string
	require.NoError(t, c.WalkWebhooks(t.Context(), 100, func(w eachlabs.Webhook) bool {
		ids = append(ids, w.ExecutionID)
		return true
	}))
	require.Equal(t, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6"}, ids)
	mu.Lock()
	require.Equal(t, []int{0, 3, 6}, offsets)
	offsets = nil
	mu.Unlock()
	require.NoError(t, c.WalkWebhooks(t.Context(), 100, func(w eachlabs.Webhook) bool { return w.ExecutionID != "e4" }))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{0, 3}, offsets, "stops when fn says so")
}

func TestCreatePredictionRefusals(t *testing.T) {
	cases := []struct {
		code  int
		body  string
		want  []error
		never []error
	}{
		{402, `{"status": "error", "error": "Insufficient balance", "details": "balance 0.00"}`,
			[]error{eachlabs.ErrPaymentRequired}, []error{eachlabs.ErrRateLimited, eachlabs.ErrConcurrencyLimit}},
		{429, `{"status": "error", "error": "Concurrency limit reached", "details": "10 predictions in flight"}`,
			[]error{eachlabs.ErrRateLimited, eachlabs.ErrConcurrencyLimit}, []error{eachlabs.ErrPaymentRequired}},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			var calls atomic.Int32
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tc.code)
				w.Write([]byte(tc.body))
			})
			_, err := c.CreatePrediction(t.Context(), eachlabs.PredictionRequest{Model: "m", Input: map[string]any{}})
			for _, e := range tc.want {
				require.ErrorIs(t, err, e)
			}
			for _, e := range tc.never {
				require.NotErrorIs(t, err, e)
			}
			require.Equal(t, int32(1), calls.Load(), "never retried")
		})
	}
}
