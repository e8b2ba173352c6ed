package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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

// TestReceiver runs the example as the README does: a signed success, its
// duplicate, a forgery and the health endpoint, then a graceful stop.
func TestReceiver(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, "whsec_demo", log) }()

	base := "http://" + ln.Addr().String()
	post := func(secret string) int {
		req, err := eachhooktest.NewClientRequest(base+"/webhooks/prediction", secret, eachhooktest.SuccessBody("abc123"), eachhooktest.BodyScheme, time.Now())
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, post("whsec_demo"))
	require.Equal(t, 200, post("whsec_demo"))
	require.Equal(t, 401, post("forged"))

	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	var health map[string]string
	require.NoError(t, json.Unmarshal(body, &health))
	require.Equal(t, "ok", health["status"])

	cancel() // as SIGINT does
	require.NoError(t, <-done)
	out := logs.String()
	require.Contains(t, out, `msg="prediction succeeded" id=abc123 output=[`+eachhooktest.SeedOutput+`] predict_time=12.5 cost=0.05`)
	require.Equal(t, 1, strings.Count(out, "prediction succeeded"))
	require.Contains(t, out, `level=WARN msg="eachhook: refused unverified delivery (401)"`)
}

// A delivery accepted just before the signal still runs: the server stops
// first, then the Handler runs what it accepted, with a context of its own.
func TestStopRunsAcceptedDeliveries(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, "whsec_demo", log) }()
	url := "http://" + ln.Addr().String() + "/webhooks/prediction"
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5"} {
		req, err := eachhooktest.NewClientRequest(url, "whsec_demo", eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, time.Now())
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, 5, strings.Count(logs.String(), "prediction succeeded"))
}

func TestReceiverRefusesToStartWithoutSecret(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = run(context.Background(), ln, "", slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "EACHHOOK_SECRET")
}

// The README quotes the receiver, run, within its first 60 lines: the
// quote must be the file's.
func TestREADMEQuotesTheReceiver(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	i := strings.Index(string(src), "func run(")
	require.Positive(t, i)
	quote := "```go\n" + string(src[i:]) + "```\n"
	j := strings.Index(string(readme), quote)
	require.GreaterOrEqual(t, j, 0, "README.md must quote run from examples/nethttp/main.go exactly, in a ```go block")
	end := strings.Count(string(readme[:j+len(quote)]), "\n")
	require.LessOrEqual(t, end, 60, "the quote must end within the README's first 60 lines")
}
