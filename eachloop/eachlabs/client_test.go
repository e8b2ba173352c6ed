package eachlabs_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClient returns a client of a test server that runs handler.
func newClient(t *testing.T, handler http.HandlerFunc, opts ...eachlabs.Option) *eachlabs.Client {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := eachlabs.NewClient("key-1", append([]eachlabs.Option{eachlabs.WithBaseURL(srv.URL), eachlabs.WithHTTPClient(hc)}, opts...)...)
	require.NoError(t, err)
	return c
}

func TestGetWebhookDecodesTheDocumentedAnswer(t *testing.T) {
	var gotAuth, gotPath, gotRawPath string
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath, gotRawPath = r.Header.Get("Authorization"), r.URL.Path, r.URL.RawPath
		w.Write([]byte(`{
  "execution_id": "abc123-def456-ghi789",
  "url": "https://api.example.com/webhook",
  "request": "{\"event\":\"prediction.completed\"}",
  "headers": {"Content-Type": "application/json", "X-Multi": ["a", "b"]},
  "source": "api-gateway",
  "created_at": "2025-12-14T10:30:00Z",
  "attempts": [
    {"status": "FAILED", "status_code": 500, "response": "{\"error\":\"internal error\"}", "error_message": null, "created_at": "2025-12-14T10:30:05Z"},
    {"status": "SUCCESS", "status_code": 200, "response": "{\"received\":true}", "error_message": null, "created_at": "2025-12-14T10:31:05Z"},
    {"status": "PENDING", "status_code": null, "response": null, "error_message": null, "created_at": "2025-12-14T10:32:05Z"}
  ]
}`))
	})
	w, err := c.GetWebhook(t.Context(), "abc123-def456-ghi789")
	require.NoError(t, err)
	require.Equal(t, "Bearer key-1", gotAuth)
	require.Equal(t, "/v1/webhooks/abc123-def456-ghi789", gotPath)
	require.Empty(t, gotRawPath)
	require.Equal(t, &eachlabs.Webhook{
		ExecutionID: "abc123-def456-ghi789",
		URL:         "https://api.example.com/webhook",
		Request:     `{"event":"prediction.completed"}`,
		Headers:     eachlabs.Headers{"Content-Type": "application/json", "X-Multi": "a, b"},
		Source:      "api-gateway",
		CreatedAt:   "2025-12-14T10:30:00Z",
		Attempts: []eachlabs.Attempt{
			{Status: eachlabs.AttemptFailed, StatusCode: 500, Response: `{"error":"internal error"}`, CreatedAt: "2025-12-14T10:30:05Z"},
			{Status: eachlabs.AttemptSuccess, StatusCode: 200, Response: `{"received":true}`, CreatedAt: "2025-12-14T10:31:05Z"},
			{Status: eachlabs.AttemptPending, CreatedAt: "2025-12-14T10:32:05Z"},
		},
	}, w)

	// An id is one path segment, whatever it contains.
	_, err = c.GetWebhook(t.Context(), "a/b c")
	require.NoError(t, err)
	require.Equal(t, "/v1/webhooks/a/b c", gotPath)
	require.Equal(t, "/v1/webhooks/a%2Fb%20c", gotRawPath)

	_, err = c.GetWebhook(t.Context(), "")
	require.Error(t, err)
}

func TestListWebhooksSendsLimitAndOffset(t *testing.T) {
	var gotQuery string
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/webhooks", r.URL.Path)
		gotQuery = r.URL.RawQuery
		w.Write([]byte(`{"webhooks": [{"execution_id": null, "url": "https://x", "request": "{}", "headers": {}, "source": "s", "created_at": "2025-12-14T10:30:00Z"}], "limit": 10, "offset": 20, "total_count": 21}`))
	})
	p, err := c.ListWebhooks(t.Context(), eachlabs.ListOptions{Limit: 10, Offset: 20})
	require.NoError(t, err)
	require.Equal(t, "limit=10&offset=20", gotQuery)
	require.Len(t, p.Webhooks, 1)
	require.Empty(t, p.Webhooks[0].ExecutionID)
	require.Equal(t, 10, p.Limit)
	require.Equal(t, 20, p.Offset)
	require.NotNil(t, p.TotalCount)
	require.Equal(t, 21, *p.TotalCount)

	_, err = c.ListWebhooks(t.Context(), eachlabs.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, gotQuery, "zero options leave the API's defaults")

	_, err = c.ListWebhooks(t.Context(), eachlabs.ListOptions{Limit: -1})
	require.Error(t, err)
}

func TestBaseURLPathIsAPrefix(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		w.Write([]byte(`{"webhooks": []}`))
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := eachlabs.NewClient("k", eachlabs.WithBaseURL(srv.URL+"/proxy/"), eachlabs.WithHTTPClient(hc))
	require.NoError(t, err)
	require.Equal(t, srv.URL+"/proxy", c.BaseURL())
	_, err = c.ListWebhooks(t.Context(), eachlabs.ListOptions{})
	require.NoError(t, err)
	require.Equal(t, "/proxy/v1/webhooks", gotPath)
}

func TestErrorsMatchTheirSentinel(t *testing.T) {
	tests := []struct {
		code    int
		body    string
		want    error
		message string
	}{
		{400, `{"error": "invalid execution_id"}`, eachlabs.ErrBadRequest, "invalid execution_id"},
		{401, `{"error": "Invalid or missing API key"}`, eachlabs.ErrUnauthorized, "Invalid or missing API key"},
		{402, `{"status": "error", "error": "Insufficient balance", "details": "top up"}`, eachlabs.ErrPaymentRequired, "Insufficient balance"},
		{403, `{"error": "Workflow is locked and cannot be modified"}`, eachlabs.ErrForbidden, "Workflow is locked and cannot be modified"},
		{404, `{"error": "webhook not found"}`, eachlabs.ErrNotFound, "webhook not found"},
		{429, `{"error": "Rate limit exceeded. Please retry after 60 seconds."}`, eachlabs.ErrRateLimited, "Rate limit exceeded. Please retry after 60 seconds."},
		{500, `{"error": "Internal server error"}`, eachlabs.ErrServer, "Internal server error"},
		{503, `upstream unavailable`, eachlabs.ErrServer, "upstream unavailable"},
		{502, `{"message": "bad gateway"}`, eachlabs.ErrServer, "bad gateway"},
		{418, `{"error": {"code": 7}}`, nil, `{"code": 7}`},
	}
	sentinels := []error{eachlabs.ErrBadRequest, eachlabs.ErrUnauthorized, eachlabs.ErrPaymentRequired, eachlabs.ErrForbidden,
		eachlabs.ErrNotFound, eachlabs.ErrRateLimited, eachlabs.ErrConcurrencyLimit, eachlabs.ErrServer, eachlabs.ErrTimeout}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.code)
				w.Write([]byte(tt.body))
			})
			_, err := c.GetWebhook(t.Context(), "x")
			require.Error(t, err)
			var apiErr *eachlabs.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tt.code, apiErr.StatusCode)
			require.Equal(t, tt.message, apiErr.Message)
			require.Equal(t, "GET", apiErr.Method)
			require.Equal(t, "/v1/webhooks/x", apiErr.Path)
			for _, s := range sentinels {
				require.Equal(t, s == tt.want, errors.Is(err, s), "errors.Is(%v, %v)", err, s)
			}
		})
	}
	err := &eachlabs.APIError{Method: "GET", Path: "/v1/webhooks/x", StatusCode: 404, Message: "webhook not found"}
	require.Equal(t, "eachlabs: GET /v1/webhooks/x: 404 Not Found: webhook not found", err.Error())
}

func TestTimeout(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}, eachlabs.WithTimeout(20*time.Millisecond))
	_, err := c.GetWebhook(t.Context(), "slow")
	require.ErrorIs(t, err, eachlabs.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, eachlabs.ErrServer)

	// The caller's deadline counts as a timeout too; its cancellation does not.
	c = newClient(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = c.ListWebhooks(ctx, eachlabs.ListOptions{})
	require.ErrorIs(t, err, eachlabs.ErrTimeout)

	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	_, err = c.ListWebhooks(ctx, eachlabs.ListOptions{})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, eachlabs.ErrTimeout)
}

func TestMalformedAnswer(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`<html>`)) })
	_, err := c.GetWebhook(t.Context(), "x")
	require.ErrorContains(t, err, "eachlabs: GET /v1/webhooks/x: decoding the answer")
}

func TestNewClientValidates(t *testing.T) {
	_, err := eachlabs.NewClient("")
	require.Error(t, err)
	for _, opt := range []eachlabs.Option{
		eachlabs.WithBaseURL("api.eachlabs.ai"),
		eachlabs.WithBaseURL("ftp://api.eachlabs.ai"),
		eachlabs.WithBaseURL("http://%zz"),
		eachlabs.WithHTTPClient(nil),
		eachlabs.WithTimeout(0),
	} {
		_, err := eachlabs.NewClient("k", opt)
		require.Error(t, err)
	}
	c, err := eachlabs.NewClient("k")
	require.NoError(t, err)
	require.Equal(t, eachlabs.DefaultBaseURL, c.BaseURL())
}
