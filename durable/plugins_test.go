package durable_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

// requestKey marks a request's context, to see it reach River's insert.
type requestKey struct{}

// tracingPlugin records what River's insert and work middleware see, as
// otelriver does: the context of the insert and the job of each attempt.
type tracingPlugin struct {
	river.PluginDefaults
	mu      sync.Mutex
	inserts []string // the requestKey value of each insert's context
	works   []string // kind of each attempt's job
}

func (p *tracingPlugin) InsertMany(ctx context.Context, params []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	v, _ := ctx.Value(requestKey{}).(string)
	p.mu.Lock()
	p.inserts = append(p.inserts, v)
	p.mu.Unlock()
	return doInner(ctx)
}

func (p *tracingPlugin) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	p.mu.Lock()
	p.works = append(p.works, job.Kind)
	p.mu.Unlock()
	return doInner(ctx)
}

// TestConfigPluginsInstalled: Config.Plugins reaches River's client, and
// the insert runs with the request's context, which is what lets otelriver
// link a job to the request that stored it.
func TestConfigPluginsInstalled(t *testing.T) {
	plugin := &tracingPlugin{}
	q, err := durable.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "plugins.db"), durable.Config{
		Logger:  slog.New(slog.DiscardHandler),
		Plugins: []rivertype.Plugin{plugin},
	})
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler)), eachhook.WithQueue(q))
	require.NoError(t, err)
	ran := make(chan string, 1)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { ran <- s.ID; return nil })
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})

	r := eachhooktest.NewSuccessRequest("/", secret, "pred_plugin")
	r = r.WithContext(context.WithValue(r.Context(), requestKey{}, "request pred_plugin"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "pred_plugin", <-ran)

	require.Eventually(t, func() bool {
		plugin.mu.Lock()
		defer plugin.mu.Unlock()
		return len(plugin.works) == 1
	}, 10*time.Second, 10*time.Millisecond)
	plugin.mu.Lock()
	defer plugin.mu.Unlock()
	require.Equal(t, []string{"request pred_plugin"}, plugin.inserts)
	require.Equal(t, []string{"eachhook_delivery"}, plugin.works)
}

// jobContexts records, for each job River's insert middleware sees, the
// requestKey value of the context it is inserted with, as otelriver's
// insert middleware takes the trace it puts in the job's metadata from
// that context.
type jobContexts struct {
	river.PluginDefaults
	mu    sync.Mutex
	byJob map[string][]string // prediction id -> requestKey value of each insert
}

func (p *jobContexts) InsertMany(ctx context.Context, params []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	v, _ := ctx.Value(requestKey{}).(string)
	p.mu.Lock()
	for _, job := range params {
		var args struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(job.EncodedArgs, &args); err == nil {
			p.byJob[args.ID] = append(p.byJob[args.ID], v)
		}
	}
	p.mu.Unlock()
	return doInner(ctx)
}

// TestEachJobIsInsertedWithItsRequestsContext: on SQLite and Postgres, 12
// concurrent deliveries, 11 of them group-committed in one batch behind
// the first, are each inserted with their own request's context, so that
// otelriver links each job to its own request's trace.
func TestEachJobIsInsertedWithItsRequestsContext(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			plugin := &jobContexts{byJob: map[string][]string{}}
			q := b.open(t, durable.Config{Logger: quiet, Plugins: []rivertype.Plugin{plugin}})
			rec := eachhooktest.NewRecorder()
			h := newHandler(t, q, rec.Register)
			serveTraced := func(id string) <-chan int {
				ch := make(chan int, 1)
				r := eachhooktest.NewSuccessRequest("/", secret, id)
				r = r.WithContext(context.WithValue(r.Context(), requestKey{}, "request "+id))
				go func() { ch <- serve(h, r) }()
				return ch
			}
			unlock := lockJobs(t, b)
			first := serveTraced("traced-0")
			require.Eventually(t, func() bool { return durable.InsertInFlight(q) }, 10*time.Second, time.Millisecond)
			var codes []<-chan int
			for i := 1; i < 12; i++ {
				codes = append(codes, serveTraced("traced-"+strconv.Itoa(i)))
			}
			require.Eventually(t, func() bool { return durable.PendingInserts(q) == 11 }, 10*time.Second, time.Millisecond)
			unlock()
			require.Equal(t, http.StatusOK, <-first)
			for _, c := range codes {
				require.Equal(t, http.StatusOK, <-c)
			}
			wait(t, rec, 12)
			plugin.mu.Lock()
			defer plugin.mu.Unlock()
			require.Len(t, plugin.byJob, 12)
			for id, inserts := range plugin.byJob {
				require.Equal(t, []string{"request " + id}, inserts, id)
			}
		})
	}
}
