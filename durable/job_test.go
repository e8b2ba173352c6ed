package durable_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
)

// oldArgs is the job args of a delivery as the previous version stored
// them.
type oldArgs struct {
	ID     string `json:"id" river:"unique"`
	Status string `json:"status"`
	Body   []byte `json:"body"`
	Claim  string `json:"claim,omitempty"`
}

func (oldArgs) Kind() string { return "eachhook_delivery" }

// TestJobArgsShowIDAndStatus: on SQLite and Postgres, a job's args JSON
// holds the prediction id and status as its first two keys, the raw body
// (base64) byte for byte and the accept time; a job stored by the
// previous version ({"id", "status", "body", "claim"}) still runs, with
// its body intact, and is a duplicate of a redelivery of its id.
func TestJobArgsShowIDAndStatus(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := newBackend(t, name).open(t, durable.Config{Logger: quiet})
			var mu sync.Mutex
			bodies := map[string][]byte{}
			ran := make(chan string, 3)
			h := newHandler(t, q, func(h *eachhook.Handler) {
				h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
					mu.Lock()
					defer mu.Unlock()
					bodies[s.ID] = s.Raw
					ran <- s.ID
					return nil
				})
			})
			body := eachhooktest.SuccessBody("args-new")
			require.Equal(t, 200, serve(h, signed(body)))
			old := eachhooktest.SuccessBody("args-old")
			require.NoError(t, durable.InsertJob(ctx, q, oldArgs{ID: "args-old", Status: "success", Body: old}))
			require.ElementsMatch(t, []string{"args-new", "args-old"}, []string{<-ran, <-ran})

			stored, err := durable.StoredArgs(ctx, q)
			require.NoError(t, err)
			require.Len(t, stored, 2)
			var args struct {
				ID         string    `json:"id"`
				Status     string    `json:"status"`
				Webhook    string    `json:"webhook"`
				AcceptedAt time.Time `json:"webhook_accepted_at"`
			}
			require.NoError(t, json.Unmarshal([]byte(stored[0]), &args))
			require.Equal(t, "args-new", args.ID)
			require.Equal(t, "success", args.Status)
			require.Equal(t, base64.StdEncoding.EncodeToString(body), args.Webhook)
			require.False(t, args.AcceptedAt.IsZero())
			require.Regexp(t, `^\{\s*"id"\s*:\s*"args-new"\s*,\s*"status"\s*:\s*"success"\s*,`, stored[0], "River UI's job list shows the start of the args")

			mu.Lock()
			require.Equal(t, body, bodies["args-new"])
			require.Equal(t, old, bodies["args-old"])
			mu.Unlock()
			require.Equal(t, 200, serve(h, signed(old)), "a duplicate of the old job")
			require.NoError(t, h.Shutdown(ctx))
			require.Empty(t, ran, "no run for the duplicate")
		})
	}
}

// TestQueueWaitIsTheHandlersClock: the wait the observer is told is
// measured with the Handler's clock from its accept time, which the job
// keeps, not from the database's clock: with a Handler clock an hour
// behind the database's, a delivery that waits while the clock moves 7s
// reports a wait of 7s.
func TestQueueWaitIsTheHandlersClock(t *testing.T) {
	q := newBackend(t, "sqlite").open(t, durable.Config{Logger: quiet, Workers: 1})
	var mu sync.Mutex
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	waited := make(chan time.Duration, 2)
	blocking, release := make(chan struct{}), make(chan struct{})
	h := newHandler(t, q, func(h *eachhook.Handler) {
		h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			if s.ID == "wait-first" {
				close(blocking)
				<-release // holds the one worker
			}
			return nil
		})
	}, eachhook.WithClock(clock), eachhook.WithObserver(observe.Observer{
		CallbackFinished: func(_ context.Context, run observe.CallbackRun) {
			if run.ID == "wait-second" {
				waited <- run.Waited
			}
		},
	}))
	req := func(id string) int {
		return serve(h, eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, clock()))
	}
	require.Equal(t, 200, req("wait-first"))
	<-blocking
	require.Equal(t, 200, req("wait-second"))
	mu.Lock()
	now = now.Add(7 * time.Second)
	mu.Unlock()
	close(release)
	select {
	case w := <-waited:
		require.Equal(t, 7*time.Second, w)
	case <-time.After(30 * time.Second):
		t.Fatal("the second delivery did not run")
	}
}
