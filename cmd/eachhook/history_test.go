package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

const testAPIKey = "eachlabs-test-key"

// The documented answers of GET /v1/webhooks/{execution_id} and
// GET /v1/webhooks.
const (
	webhookJSON = `{
  "execution_id": "abc123-def456-ghi789",
  "url": "https://api.example.com/webhook",
  "request": "{\"event\":\"prediction.completed\"}",
  "headers": {"Content-Type": "application/json"},
  "source": "api-gateway",
  "created_at": "2025-12-14T10:30:00Z",
  "attempts": [
    {"status": "FAILED", "status_code": 500, "response": "{\"error\":\"internal error\"}", "error_message": null, "created_at": "2025-12-14T10:30:05Z"},
    {"status": "FAILED", "status_code": null, "response": null, "error_message": "dial tcp: i/o timeout", "created_at": "2025-12-14T10:30:35Z"},
    {"status": "SUCCESS", "status_code": 200, "response": "{\"received\":true}", "error_message": null, "created_at": "2025-12-14T10:31:05Z"}
  ]
}`
	webhookListJSON = `{
  "webhooks": [
    {"execution_id": "abc123-def456-ghi789", "url": "https://api.example.com/webhook", "request": "{}", "headers": {"Content-Type": "application/json"}, "source": "api-gateway", "created_at": "2025-12-14T10:30:00Z"},
    {"execution_id": null, "url": "https://api.example.com/other", "request": "{}", "headers": {"Content-Type": ["application/json"]}, "source": "workflows", "created_at": "2025-12-14T10:32:00Z",
     "attempts": [{"status": "PENDING", "status_code": null, "created_at": "2025-12-14T10:32:01Z"}]}
  ],
  "limit": 2,
  "offset": 4,
  "total_count": 9
}`
)

// fakeAPI serves the documented shapes and error answers of the each::labs
// webhook endpoints, and records the queries it got.
type fakeAPI struct {
	mu      sync.Mutex
	queries []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+testAPIKey {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error": "Invalid or missing API key"}`))
		return
	}
	if r.URL.Path == "/v1/webhooks" {
		w.Write([]byte(webhookListJSON))
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/v1/webhooks/") {
	case "abc123-def456-ghi789":
		w.Write([]byte(webhookJSON))
	case "not an id":
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error": "invalid execution_id"}`))
	case "boom":
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error": "Internal server error"}`))
	case "gateway":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>bad gateway</html>"))
	case "slow":
		<-r.Context().Done() // until the client gives up
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error": "webhook not found"}`))
	}
}

func TestHistoryShowsAttempts(t *testing.T) {
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	defer srv.Close()

	// Flags after the id work too; the key comes from the environment.
	r := runCmd(t, runOpts{env: map[string]string{"EACHLABS_API_KEY": testAPIKey}},
		"history", "abc123-def456-ghi789", "-api-url", srv.URL)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	require.Equal(t, `execution  abc123-def456-ghi789
url        https://api.example.com/webhook
source     api-gateway
created    2025-12-14T10:30:00Z
form       -
no signature and no secret header: the predictions were created without webhook_secret; create them with one, or eachhook refuses them with 401

#  TIME                  STATUS   HTTP  ERROR
1  2025-12-14T10:30:05Z  FAILED   500   response {"error":"internal error"}
2  2025-12-14T10:30:35Z  FAILED   -     dial tcp: i/o timeout
3  2025-12-14T10:31:05Z  SUCCESS  200   
`, r.stdout)
	require.Equal(t, []string{"GET /v1/webhooks/abc123-def456-ghi789"}, api.queries)
}

func TestHistoryList(t *testing.T) {
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	r := runCmd(t, runOpts{}, "history", "-api-key", testAPIKey, "-api-url", srv.URL+"/", "-list", "-limit", "2", "-offset", "4")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, `EXECUTION             CREATED               FORM  URL                              ATTEMPTS  LAST STATUS  LAST HTTP
abc123-def456-ghi789  2025-12-14T10:30:00Z  -     https://api.example.com/webhook  -         -            -
-                     2025-12-14T10:32:00Z  -     https://api.example.com/other    1         PENDING      -
no signature and no secret header: the predictions were created without webhook_secret; create them with one, or eachhook refuses them with 401
webhooks 5-6 of 9; next page: -offset 6
attempts of one webhook: eachhook history EXECUTION
`, r.stdout)
	require.Equal(t, []string{"GET /v1/webhooks?limit=2&offset=4"}, api.queries)
}

func TestHistoryAPIErrors(t *testing.T) {
	srv := httptest.NewServer(&fakeAPI{})
	defer srv.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"400", []string{"-api-key", testAPIKey, "not an id"},
			`400 Bad Request (invalid execution_id): the API rejected the request: is "not an id" a valid execution id?`},
		{"401", []string{"-api-key", "wrong", "abc123-def456-ghi789"},
			`401 Unauthorized (Invalid or missing API key): the API key was refused: check -api-key or $EACHLABS_API_KEY`},
		{"401 list", []string{"-api-key", "wrong", "-list"},
			`401 Unauthorized (Invalid or missing API key): the API key was refused: check -api-key or $EACHLABS_API_KEY`},
		{"404", []string{"-api-key", testAPIKey, "nope"},
			`404 Not Found (webhook not found): no webhook for execution id "nope": check the id (it is the prediction id)`},
		{"500", []string{"-api-key", testAPIKey, "boom"},
			`500 Internal Server Error (Internal server error): each::labs server error: try again later`},
		{"502 html", []string{"-api-key", testAPIKey, "gateway"},
			`502 Bad Gateway (<html>bad gateway</html>): each::labs server error: try again later`},
		{"timeout", []string{"-api-key", testAPIKey, "-timeout", "50ms", "slow"},
			`no answer from ` + srv.URL + ` within 50ms: check -api-url and the network, or raise -timeout`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, runOpts{}, append([]string{"history", "-api-url", srv.URL}, tt.args...)...)
			require.Equal(t, 1, r.code)
			require.Empty(t, r.stdout)
			require.True(t, strings.HasPrefix(r.stderr, "eachhook history: "+tt.want), r.stderr)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	r := runCmd(t, runOpts{}, "history", "-api-url", closed, "-api-key", testAPIKey, "abc")
	require.Equal(t, 1, r.code)
	require.Regexp(t, `^eachhook history: cannot reach `+regexp.QuoteMeta(closed)+`: dial tcp .*connection refused\n$`, r.stderr)
}
