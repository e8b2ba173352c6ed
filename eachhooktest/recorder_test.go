package eachhooktest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "whsec_recorder"

func newHandler(t *testing.T, opts ...eachhook.Option) *eachhook.Handler {
	t.Helper()
	h, err := eachhook.New(append([]eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Shutdown(ctx))
	})
	return h
}

func serve(h http.Handler, r *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestRecorderWaitsForEveryKind(t *testing.T) {
	h := newHandler(t)
	rec := eachhooktest.NewRecorder()
	rec.Register(h)
	now := time.Now()
	for _, body := range [][]byte{
		eachhooktest.SuccessBody("s1"),
		eachhooktest.FailedBody("f1"),
		eachhooktest.WorkflowCompletedBody("e1", "wf"),
		eachhooktest.WorkflowFailedBody("e2", "wf"),
	} {
		require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewRequest("/", secret, body, eachhooktest.BodyScheme, now)))
	}
	require.NoError(t, rec.Wait(t.Context(), 4))
	kinds := map[string]string{}
	for _, run := range rec.Runs() {
		require.NoError(t, run.Err)
		kinds[run.ID] = run.Kind
	}
	require.Equal(t, map[string]string{
		"s1": eachhooktest.KindSuccess, "f1": eachhooktest.KindFailed,
		"e1": eachhooktest.KindWorkflowCompleted, "e2": eachhooktest.KindWorkflowFailed,
	}, kinds)
	require.ElementsMatch(t, []string{"s1", "f1", "e1", "e2"}, rec.IDs())
	require.Equal(t, map[string]int{
		eachhooktest.KindSuccess: 1, eachhooktest.KindFailed: 1,
		eachhooktest.KindWorkflowCompleted: 1, eachhooktest.KindWorkflowFailed: 1,
	}, rec.Counts())
}

func TestRecorderCountsRetriesAndPanics(t *testing.T) {
	h := newHandler(t, eachhook.WithWorkers(1), eachhook.WithRetry(3, time.Millisecond))
	rec := eachhooktest.NewRecorder()
	attempt := 0
	boom := errors.New("boom")
	h.OnSuccess(rec.Success(func(ctx context.Context, s *eachhook.Success) error {
		attempt++
		switch attempt {
		case 1:
			return boom
		case 2:
			panic("kaboom")
		}
		return nil
	}))
	require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewSuccessRequest("/", secret, "r1")))
	require.NoError(t, rec.Wait(t.Context(), 3))
	runs := rec.Runs()
	require.Len(t, runs, 3)
	require.ErrorIs(t, runs[0].Err, boom)
	require.ErrorContains(t, runs[1].Err, "kaboom")
	require.NoError(t, runs[2].Err)
	require.Equal(t, []string{"r1"}, rec.IDs())
	require.Equal(t, "r1", runs[2].Success.ID)
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 3}, rec.Counts())
}

func TestRecorderWaitEndsWithTheContext(t *testing.T) {
	rec := eachhooktest.NewRecorder()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	err := rec.Wait(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "0 of 1 callback runs")
	require.NoError(t, rec.Wait(t.Context(), 0))
	require.Empty(t, rec.Counts())
}

// A test waits for its callbacks with a Recorder, not by calling Shutdown:
// the same test then holds for the durable queue, whose Shutdown keeps the
// deliveries it has not started.
func ExampleRecorder() {
	h, err := eachhook.New(eachhook.WithSecret("whsec_demo"), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	rec := eachhooktest.NewRecorder()
	h.OnSuccess(rec.Success(func(ctx context.Context, s *eachhook.Success) error {
		return nil // your callback
	}))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/webhooks/prediction", "whsec_demo", "abc123"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rec.Wait(ctx, 1); err != nil {
		panic(err)
	}
	fmt.Println(w.Code, rec.IDs())
	fmt.Println(h.Shutdown(ctx))
	// Output:
	// 200 [abc123]
	// <nil>
}
