package eachlabs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

func ExampleClient_GetWebhook() {
	// A stand-in for https://api.eachlabs.ai.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/webhooks/abc123-def456-ghi789" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error": "webhook not found"}`)
			return
		}
		fmt.Fprint(w, `{"execution_id": "abc123-def456-ghi789", "url": "https://api.example.com/webhook",
			"attempts": [{"status": "FAILED", "status_code": 500, "created_at": "2025-12-14T10:30:05Z"},
			             {"status": "SUCCESS", "status_code": 200, "created_at": "2025-12-14T10:31:05Z"}]}`)
	}))
	defer api.Close()

	client, err := eachlabs.NewClient("YOUR_API_KEY", eachlabs.WithBaseURL(api.URL))
	if err != nil {
		panic(err)
	}
	w, err := client.GetWebhook(context.Background(), "abc123-def456-ghi789")
	if err != nil {
		panic(err)
	}
	for _, a := range w.Attempts {
		fmt.Println(a.CreatedAt, a.Status, a.StatusCode)
	}

	_, err = client.GetWebhook(context.Background(), "unknown")
	fmt.Println(errors.Is(err, eachlabs.ErrNotFound), err)
	// Output:
	// 2025-12-14T10:30:05Z FAILED 500
	// 2025-12-14T10:31:05Z SUCCESS 200
	// true eachlabs: GET /v1/webhooks/unknown: 404 Not Found: webhook not found
}
