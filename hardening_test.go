package eachhook_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// Regression tests for hostile input and extreme settings.

func TestStaleTimestampRefusedBeforeSecretLookup(t *testing.T) {
	var looked atomic.Int32
	h := newHandler(t, eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) {
		looked.Add(1)
		return nil, errors.New("db down")
	}))
	stale := time.Now().Add(-2 * time.Hour)
	r := eachhooktest.NewRequest("/", "per-x", eachhooktest.SuccessBody("x"), eachhooktest.TimestampScheme, stale)
	require.Equal(t, 401, serve(h, r).Code)
	require.Zero(t, looked.Load())
}

func TestUnknownLengthBodyWithHugeLimit(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(math.MaxInt64))
	c := newCalls()
	c.register(h)
	r := signed(eachhooktest.SuccessBody("big"))
	r.ContentLength = -1
	require.Equal(t, 200, serve(h, r).Code)
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 1, s)
}

func TestContentLengthDoesNotReserveMemory(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
		r.ContentLength = 10 << 20 // declared, never sent
		require.Equal(t, 400, serve(h, r).Code)
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(10<<20), "10 requests declaring 10 MiB each")
}

func TestHugeDedupeTTLStillDeduplicates(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithDedupeTTL(time.Duration(math.MaxInt64)))
	c := newCalls()
	c.register(h)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "same")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "same")).Code)
	drain(t, h)
	s, _ := c.counts()
	require.Equal(t, 1, s)
}

func TestHugeRetryCountWorks(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithRetry(math.MaxInt, time.Millisecond))
	var attempts []int
	var mu sync.Mutex
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, eachhook.AttemptFromContext(ctx))
		if len(attempts) < 10 {
			return errors.New("not yet")
		}
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "persistent")).Code)
	drain(t, h)
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, attempts)
}

func TestNilCallbackUnregisters(t *testing.T) {
	var reported atomic.Int32
	h := newHandler(t, eachhook.WithSecret(secret),
		eachhook.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	h.OnSuccess(nil)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "nilcb")).Code)
	drain(t, h)
	// An unregistered callback runs nothing: the delivery is kept as a
	// dead letter that no attempt ran for, reported once.
	require.Equal(t, int32(1), reported.Load())
	dls, err := h.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, "no_callback", dls[0].Reason)
	require.Zero(t, dls[0].Attempts)
}

func TestErrorHandlerPanicDoesNotKillWorker(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithWorkers(1), eachhook.WithRetry(1, 0),
		eachhook.WithErrorHandler(func(context.Context, error) { panic("bug in the hook") }))
	var ok atomic.Int32
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "fails" {
			return errors.New("downstream")
		}
		ok.Add(1)
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "fails")).Code)
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "after")).Code)
	drain(t, h)
	require.Equal(t, int32(1), ok.Load())
}

func TestURLOnNullOutput(t *testing.T) {
	s := &eachhook.Success{Output: []byte("null")}
	_, err := s.URL()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
	_, err = s.URLs()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
	_, err = (&eachhook.Success{}).URL()
	require.ErrorIs(t, err, eachhook.ErrOutputShape)
}

func TestUnverifiedIDNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	h, err := eachhook.New(eachhook.WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))),
		eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) { return nil, errors.New("db down") }))
	require.NoError(t, err)
	defer h.Shutdown(context.Background())
	forged := `{"id":"ATTACKER-CONTROLLED","status":"success"}`
	r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(strings.NewReader(forged)))
	r.Header.Set(signature.Header, strings.Repeat("0", 64))
	require.Equal(t, 503, serve(h, r).Code)
	mu.Lock()
	defer mu.Unlock()
	require.NotContains(t, logs.String(), "ATTACKER-CONTROLLED")
}
