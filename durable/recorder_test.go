package durable_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// The test a user writes against the in-memory queue, waiting with an
// eachhooktest.Recorder, holds unchanged for the durable queue, whose
// Shutdown would not have run the deliveries it had not started.
func TestRecorderWaitsForDurableCallbacks(t *testing.T) {
	ctx := context.Background()
	q, err := durable.OpenSQLite(ctx, filepath.Join(t.TempDir(), "webhooks.db"), durable.Config{Logger: quiet})
	require.NoError(t, err)
	rec := eachhooktest.NewRecorder()
	h := newHandler(t, q, rec.Register)
	for i := range 5 {
		require.Equal(t, http.StatusOK, serve(h, signed(eachhooktest.SuccessBody("rec-"+strconv.Itoa(i)))))
	}
	require.Equal(t, http.StatusOK, serve(h, signed(eachhooktest.SuccessBody("rec-0"))), "a duplicate")

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, rec.Wait(wctx, 5))
	require.ElementsMatch(t, []string{"rec-0", "rec-1", "rec-2", "rec-3", "rec-4"}, rec.IDs())
	require.NoError(t, h.Shutdown(wctx))
	require.Len(t, rec.Runs(), 5, "no run for the duplicate")
	for _, run := range rec.Runs() {
		require.Equal(t, eachhooktest.KindSuccess, run.Kind)
		require.Equal(t, eachhooktest.SeedOutput, mustURL(t, run.Success))
	}
}

func mustURL(t *testing.T, s *eachhook.Success) string {
	t.Helper()
	u, err := s.URL()
	require.NoError(t, err)
	return u
}
