package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMetricsMove delivers to the running example over 127.0.0.1 and reads
// the counters back from /metrics.
func TestMetricsMove(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, exampleSecret, slog.New(slog.DiscardHandler)) }()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	send := func(secret, id string) int {
		req, err := eachhooktest.NewClientRequest(base+"/webhooks/prediction", secret, eachhooktest.SuccessBody(id), eachhooktest.TimestampScheme, time.Now())
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	code, body := get("/healthz")
	require.Equal(t, 200, code)
	require.Equal(t, `{"status":"ok"}`+"\n", body)
	require.Equal(t, 200, send(exampleSecret, "p1"))
	require.Equal(t, 200, send(exampleSecret, "p1"))
	require.Equal(t, 401, send("wrong", "p2"))

	value := func(metrics, name string, labels ...string) string {
		re := `(?m)^` + regexp.QuoteMeta(name) + `\{[^}]*`
		for _, l := range labels {
			re += regexp.QuoteMeta(l) + `[^}]*`
		}
		m := regexp.MustCompile(re + `\} (\S+)$`).FindStringSubmatch(metrics)
		if m == nil {
			return ""
		}
		return m[1]
	}
	var metrics string
	require.Eventually(t, func() bool { // the callback runs after the 200
		_, metrics = get("/metrics")
		return value(metrics, "eachhook_callback_duration_seconds_count", `eachhook_callback_outcome="ok"`) == "1"
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "1", value(metrics, "eachhook_deliveries_received_total", `eachhook_delivery_outcome="accepted"`, `eachhook_prediction_status="success"`), metrics)
	require.Equal(t, "1", value(metrics, "eachhook_deliveries_received_total", `eachhook_delivery_outcome="duplicate"`), metrics)
	require.Equal(t, "1", value(metrics, "eachhook_deliveries_received_total", `eachhook_delivery_outcome="refused"`, `eachhook_refusal_reason="signature"`), metrics)
	require.Equal(t, "1", value(metrics, "eachhook_queue_wait_seconds_count", `eachhook_prediction_status="success"`), metrics)
	require.Equal(t, "0", value(metrics, "eachhook_queue_depth"), metrics)
	require.Equal(t, "1024", value(metrics, "eachhook_queue_capacity"), metrics)

	cancel()
	require.NoError(t, <-done)
}
