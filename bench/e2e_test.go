package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLoadDuplicatesRunOneCallbackPerID runs the load generator briefly
// against the example receiver with 10% duplicate deliveries: every
// delivery is acknowledged and every distinct id runs exactly one callback.
func TestLoadDuplicatesRunOneCallbackPerID(t *testing.T) {
	rcv, err := NewReceiver(ReceiverConfig{Secret: benchSecret, TrackIDs: true})
	require.NoError(t, err)
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	ds := Deliveries(3000, 300, benchSecret, 0.1, time.Now())
	res, err := Load(context.Background(), LoadConfig{URL: srv.URL + Path, Deliveries: ds, Concurrency: 8, Duration: 20 * time.Second})
	require.NoError(t, err)
	require.True(t, res.Exhausted)
	require.Equal(t, map[int]int{http.StatusOK: len(ds)}, res.Status)
	require.Zero(t, res.Errors)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := rcv.Shutdown(ctx)
	require.NoError(t, err)
	distinct := make(map[string]bool)
	for _, d := range ds {
		distinct[d.ID] = true
	}
	require.Less(t, len(distinct), len(ds), "some deliveries must be duplicates")
	require.Equal(t, len(distinct), res.AckedIDs)
	require.Equal(t, int64(len(distinct)), st.Callbacks)
	require.Equal(t, len(distinct), st.Distinct)
	require.Equal(t, 1, st.MaxPerID)
}

// TestLoadBare checks the load generator's counts against the bare server.
func TestLoadBare(t *testing.T) {
	srv := httptest.NewServer(Bare())
	defer srv.Close()
	ds := Deliveries(500, 300, benchSecret, 0, time.Now())
	res, err := Load(context.Background(), LoadConfig{URL: srv.URL + Path, Deliveries: ds, Concurrency: 4, Duration: 20 * time.Second})
	require.NoError(t, err)
	require.Equal(t, len(ds), res.Sent)
	require.Equal(t, map[int]int{http.StatusOK: len(ds)}, res.Status)
	require.Equal(t, len(ds), res.AckedIDs)
	require.Positive(t, res.RPS)
	require.LessOrEqual(t, res.P50, res.P99)
}
