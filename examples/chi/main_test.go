package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReceiverLogsSignedDelivery runs the example as the README does and
// sends it a signed success and a forged delivery.
func TestReceiverLogsSignedDelivery(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, "whsec_demo", log) }()

	url := "http://" + ln.Addr().String() + "/webhooks/prediction"
	post := func(secret string) int {
		req, err := eachhooktest.NewClientRequest(url, secret, eachhooktest.SuccessBody("abc123"), eachhooktest.BodyScheme, time.Now())
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, post("whsec_demo"))
	require.Equal(t, 200, post("whsec_demo"))
	require.Equal(t, 401, post("forged"))

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.JSONEq(t, `{"status":"ok"}`, string(body))

	cancel()
	require.NoError(t, <-done)
	out := logs.String()
	require.Contains(t, out, `msg="prediction succeeded" id=abc123 output=[`+eachhooktest.SeedOutput+`] predict_time=12.5 cost=0.05`)
	require.Equal(t, 1, strings.Count(out, "prediction succeeded"))
	require.Contains(t, out, `msg="duplicate delivery acknowledged, no callback" id=abc123 status=success`)
	require.Contains(t, out, `level=WARN msg="eachhook: refused unverified delivery (401)"`)
}

func TestReceiverRefusesToStartWithoutSecret(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = run(context.Background(), ln, "", slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "EACHHOOK_SECRET")
}
