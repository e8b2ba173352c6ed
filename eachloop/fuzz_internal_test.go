package eachloop

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

// FuzzWebhookBody checks that any answer of GET /v1/prediction/{id} with a
// terminal status becomes a body the Handler routes: Deliver never refuses
// it as malformed.
func FuzzWebhookBody(f *testing.F) {
	for _, seed := range []string{
		`{"id": "p", "status": "success", "output": "https://x/y.png", "metrics": {"predict_time": 1}}`,
		`{"id": "p", "status": "error", "output": {"error_code": "E", "error_message": "m"}, "logs": null}`,
		`{"status": "cancelled", "output": null, "logs": ["a"]}`,
		`{"id": 5, "status": "success", "workflow_id": "w", "execution_id": "e"}`,
		`{"status": "error", "output": [{"error": {"error_code": "X"}}], "logs": 7}`,
	} {
		f.Add(seed)
	}
	h, err := eachhook.New(eachhook.WithInsecureSkipVerification(), eachhook.WithLogger(slog.New(slog.DiscardHandler)),
		eachhook.WithQueueSize(1<<16))
	if err != nil {
		f.Fatal(err)
	}
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	h.OnFailed(func(context.Context, *eachhook.Failure) error { return nil })
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h.Shutdown(ctx)
	})
	f.Fuzz(func(t *testing.T, answer string) {
		var p eachlabs.Prediction
		if json.Unmarshal([]byte(answer), &p) != nil || !p.Terminal() {
			return
		}
		body, err := webhookBody("pred-fuzz", &p)
		if err != nil {
			t.Fatalf("webhookBody(%s): %v", answer, err)
		}
		if _, err := h.Deliver(context.Background(), body); errors.Is(err, eachhook.ErrMalformedPayload) {
			t.Fatalf("Deliver refused the body of %s: %v\n%s", answer, err, body)
		}
	})
}
