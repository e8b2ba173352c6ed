package eachlabs_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/stretchr/testify/require"
)

func TestCreatePredictionSendsTheDocumentedBody(t *testing.T) {
	var gotMethod, gotPath, gotAuth, gotType string
	var gotBody map[string]any
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		gotMethod, gotPath, gotAuth, gotType = r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &gotBody))
		w.Write([]byte(`{"status": "success", "message": "Prediction created successfully", "predictionID": "pred-1"}`))
	})
	created, err := c.CreatePrediction(t.Context(), eachlabs.PredictionRequest{
		Model:         "flux-1-1-pro",
		Input:         map[string]any{"prompt": "a lighthouse"},
		WebhookURL:    "https://example.com/webhooks/prediction",
		WebhookSecret: "s3cret",
	})
	require.NoError(t, err)
	require.Equal(t, &eachlabs.Created{Status: "success", Message: "Prediction created successfully", PredictionID: "pred-1"}, created)
	require.Equal(t, "POST", gotMethod)
	require.Equal(t, "/v1/prediction", gotPath)
	require.Equal(t, "Bearer key-1", gotAuth)
	require.Equal(t, "application/json", gotType)
	require.Equal(t, map[string]any{
		"model":          "flux-1-1-pro",
		"input":          map[string]any{"prompt": "a lighthouse"},
		"webhook_url":    "https://example.com/webhooks/prediction",
		"webhook_secret": "s3cret",
	}, gotBody)
}

func TestCreatePredictionWithoutAnIDIsAnError(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status": "error", "message": "model not found"}`))
	})
	_, err := c.CreatePrediction(t.Context(), eachlabs.PredictionRequest{Model: "nope", Input: map[string]any{}})
	require.ErrorIs(t, err, eachlabs.ErrNotCreated)
	require.ErrorContains(t, err, "model not found")

	_, err = c.CreatePrediction(t.Context(), eachlabs.PredictionRequest{})
	require.ErrorContains(t, err, "empty model")
}

func TestGetPredictionDecodesTheDocumentedAnswer(t *testing.T) {
	var gotPath string
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		w.Write([]byte(`{"id": "pred-1", "input": {"prompt": "a lighthouse"}, "status": "error",
			"output": {"error_code": "PROVIDER_RATE_LIMIT", "error_message": "provider is busy"},
			"logs": null, "metrics": {"predict_time": 1.5, "cost": 0.01, "tier": "standard", "billed_seconds": 2, "output_gb": "n/a"},
			"urls": {"cancel": "https://api.eachlabs.ai/v1/prediction/pred-1/cancel", "get": "https://api.eachlabs.ai/v1/prediction/pred-1"}}`))
	})
	p, err := c.GetPrediction(t.Context(), "pred-1")
	require.NoError(t, err)
	require.Equal(t, "/v1/prediction/pred-1", gotPath)
	require.Equal(t, "pred-1", p.ID)
	require.Equal(t, eachlabs.StatusError, p.Status)
	require.True(t, p.Terminal())
	require.JSONEq(t, `{"prompt": "a lighthouse"}`, string(p.Input))
	require.Empty(t, p.Logs)
	// output_gb of another type is left zero instead of failing the answer.
	require.Equal(t, eachlabs.PredictionMetrics{PredictTime: 1.5, Cost: 0.01, Tier: "standard", BilledSeconds: 2}, p.Metrics)
	require.Equal(t, "https://api.eachlabs.ai/v1/prediction/pred-1/cancel", p.URLs.Cancel)
	code, msg := p.Failure()
	require.Equal(t, "PROVIDER_RATE_LIMIT", code)
	require.Equal(t, "provider is busy", msg)
	require.Contains(t, string(p.Raw), `"urls"`)
}

func TestGetPredictionStatuses(t *testing.T) {
	for _, tc := range []struct {
		status   string
		terminal bool
	}{
		{eachlabs.StatusCreated, false},
		{eachlabs.StatusStarting, false},
		{eachlabs.StatusProcessing, false},
		{eachlabs.StatusSuccess, true},
		{eachlabs.StatusError, true},
		{eachlabs.StatusCancelled, true},
	} {
		t.Run(tc.status, func(t *testing.T) {
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"status": "` + tc.status + `", "output": "https://x/y.png", "logs": ["a"]}`))
			})
			p, err := c.GetPrediction(t.Context(), "p/1")
			require.NoError(t, err)
			require.Equal(t, "p/1", p.ID, "id taken from the request when the answer has none")
			require.Equal(t, tc.terminal, p.Terminal())
			require.Equal(t, `["a"]`, p.Logs)
			code, msg := p.Failure()
			require.Empty(t, code+msg)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	date := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		status   int
		header   http.Header
		sentinel error
		want     time.Duration
	}{
		{"seconds", 429, http.Header{"Retry-After": {"120"}}, eachlabs.ErrRateLimited, 2 * time.Minute},
		{"date", 503, http.Header{"Retry-After": {date.Add(90 * time.Second).Format(http.TimeFormat)}, "Date": {date.Format(http.TimeFormat)}}, eachlabs.ErrServer, 90 * time.Second},
		{"past date", 503, http.Header{"Retry-After": {date.Format(http.TimeFormat)}, "Date": {date.Add(time.Minute).Format(http.TimeFormat)}}, eachlabs.ErrServer, 0},
		{"absent", 500, http.Header{}, eachlabs.ErrServer, 0},
		{"garbage", 429, http.Header{"Retry-After": {"soon"}}, eachlabs.ErrRateLimited, 0},
		{"huge", 429, http.Header{"Retry-After": {"99999999999"}}, eachlabs.ErrRateLimited, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(`{"error": "later"}`))
			})
			_, err := c.GetPrediction(t.Context(), "pred-1")
			require.ErrorIs(t, err, tc.sentinel)
			var ae *eachlabs.APIError
			require.True(t, errors.As(err, &ae))
			require.Equal(t, tc.want, ae.RetryAfter)
		})
	}
}

func TestGetPredictionNotFound(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"error": "Prediction not found"}`))
	})
	_, err := c.GetPrediction(t.Context(), "nope")
	require.ErrorIs(t, err, eachlabs.ErrNotFound)
	require.EqualError(t, err, "eachlabs: GET /v1/prediction/nope: 404 Not Found: Prediction not found")
}
