package eachhook_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

func TestDeliverRunsTheCallbackOnce(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	c := newCalls()
	c.register(h)

	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "pred-1", <-c.done)

	// The webhook that comes later is a duplicate, and so is a second Deliver.
	require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewSuccessRequest("/", secret, "pred-1")).Code)
	ok, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.False(t, ok)

	// A webhook first, then Deliver: still one callback.
	require.Equal(t, http.StatusOK, serve(h, eachhooktest.NewFailedRequest("/", secret, "pred-2")).Code)
	require.Equal(t, "pred-2", <-c.done)
	ok, err = h.Deliver(t.Context(), eachhooktest.FailedBody("pred-2"))
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, h.Shutdown(t.Context()))
	s, f := c.counts()
	require.Equal(t, 1, s)
	require.Equal(t, 1, f)
	u, err := c.successes[0].URL()
	require.NoError(t, err)
	require.Equal(t, eachhooktest.SeedOutput, u)
	require.Equal(t, eachhooktest.SeedLogs, c.failures[0].Logs)
}

func TestDeliverRefusals(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	_, err := h.Deliver(t.Context(), []byte(`{"status": "success"}`))
	require.ErrorIs(t, err, eachhook.ErrMalformedPayload)

	// No callback registered: dropped, as a webhook would be.
	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, h.Shutdown(t.Context()))
	_, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.ErrorIs(t, err, eachhook.ErrNotQueued)
}

// failingStore fails every Claim.
type failingStore struct{ eachhook.Store }

var errClaimFails = errors.New("claim fails")

func (failingStore) Claim(context.Context, string, time.Duration) (string, bool, error) {
	return "", false, errClaimFails
}

func TestDeliverStoreFailure(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithStore(failingStore{}))
	newCalls().register(h)
	_, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("pred-1"))
	require.ErrorIs(t, err, errClaimFails)
}

func TestDeliverQueueFullReleasesTheClaim(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithQueueSize(1))
	block := make(chan struct{})
	var ran sync.WaitGroup
	ran.Add(3)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "busy" {
			<-block
		}
		ran.Done()
		return nil
	})
	ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("busy"))
	require.NoError(t, err)
	require.True(t, ok)
	// Wait until the worker holds "busy", so that the queue's one slot is free.
	require.Eventually(t, func() bool {
		ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("queued"))
		return err == nil && ok
	}, 5*time.Second, time.Millisecond)
	_, err = h.Deliver(t.Context(), eachhooktest.SuccessBody("full"))
	require.ErrorIs(t, err, eachhook.ErrNotQueued)
	close(block)
	// The claim of "full" was released: it is accepted once there is room.
	require.Eventually(t, func() bool {
		ok, err := h.Deliver(t.Context(), eachhooktest.SuccessBody("full"))
		return err == nil && ok
	}, 5*time.Second, time.Millisecond)
	ran.Wait()
}
