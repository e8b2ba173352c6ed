package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// secret signed the recorded events in testdata.
const secret = "whsec_lambda_test"

func event(t *testing.T, name string) events.APIGatewayProxyRequest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var ev events.APIGatewayProxyRequest
	require.NoError(t, json.Unmarshal(data, &ev))
	return ev
}

func TestRecordedGatewayEvents(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h, err := newHandler(secret, log)
	require.NoError(t, err)
	g := gateway{h}
	ctx := context.Background()
	require.NoError(t, h.Start(ctx))

	cases := []struct {
		event string
		want  int
		hdr   map[string]string
	}{
		{"success-base64.json", 200, nil}, // base64 body decoded before verifying
		{"success-base64.json", 200, nil}, // the sender's retry: a duplicate
		{"failed.json", 200, nil},         // single-value headers, sha256= prefix
		{"forged.json", 401, nil},
		{"get.json", 405, map[string]string{"Allow": "POST"}},
	}
	for _, c := range cases {
		resp, err := g.handle(ctx, event(t, c.event))
		require.NoError(t, err)
		require.Equal(t, c.want, resp.StatusCode, c.event)
		if c.hdr != nil {
			require.Equal(t, c.hdr, resp.Headers)
		}
	}
	shutdown, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(shutdown))
}

func TestCallbacksRunOncePerPrediction(t *testing.T) {
	rec := eachhooktest.NewRecorder()
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	rec.Register(h)
	g := gateway{h}
	ctx := context.Background()
	for _, name := range []string{"success-base64.json", "forged.json", "success-base64.json", "failed.json", "failed.json"} {
		_, err := g.handle(ctx, event(t, name))
		require.NoError(t, err)
	}
	shutdown, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(shutdown))
	var runs []string
	for _, r := range rec.Runs() {
		if r.Failure != nil {
			r.ID += ": " + r.Failure.Logs
		}
		runs = append(runs, r.Kind+" "+r.ID)
	}
	require.ElementsMatch(t, []string{"success pred-lambda-1", "failed pred-lambda-2: Error: Model timeout after 30s"}, runs)
}

func TestBadBase64Is400(t *testing.T) {
	h, err := newHandler(secret, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ev := event(t, "success-base64.json")
	ev.Body = "%%% not base64"
	resp, err := gateway{h}.handle(context.Background(), ev)
	require.NoError(t, err)
	require.Equal(t, 400, resp.StatusCode)
	require.NoError(t, h.Shutdown(context.Background()))
}

func TestNoSecretIsAnError(t *testing.T) {
	_, err := newHandler("", slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, eachhook.ErrInvalidOption)
}
