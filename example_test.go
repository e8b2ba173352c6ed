package eachhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

// A Handler mounted on a mux: a signed success delivery is acknowledged at
// once and its callback runs once; the duplicate runs nothing.
func Example() {
	h, err := eachhook.New(eachhook.WithSecret("whsec_example"))
	if err != nil {
		panic(err)
	}
	events := make(chan string, 10)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		url, err := s.URL()
		if err != nil {
			return err
		}
		events <- fmt.Sprintf("prediction %s: %s (%.1fs, $%.2f)", s.ID, url, s.Metrics.PredictTime, s.Metrics.Cost)
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/prediction", h)

	for range 2 { // the second is a redelivery
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, eachhooktest.NewSuccessRequest("/webhooks/prediction", "whsec_example", "abc123"))
		fmt.Println("answered", w.Code)
	}
	// Shutdown runs every accepted callback before it returns.
	if err := h.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	close(events)
	for e := range events {
		fmt.Println(e)
	}
	// Output:
	// answered 200
	// answered 200
	// prediction abc123: https://storage.example.com/predictions/abc123/image.jpg (12.5s, $0.05)
}

// Failed predictions go to OnFailed with their logs.
func ExampleHandler_OnFailed() {
	h, _ := eachhook.New(eachhook.WithSecret("whsec_example"))
	var msg string
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		msg = fmt.Sprintf("prediction %s failed: %s", f.ID, f.Logs)
		return nil
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewFailedRequest("/", "whsec_example", "abc123"))
	fmt.Println("answered", w.Code)
	_ = h.Shutdown(context.Background()) // runs the accepted callback first
	fmt.Println(msg)
	// Output:
	// answered 200
	// prediction abc123 failed: Error: Model timeout after 30s
}

// New fails closed: without a secret there is no Handler.
func ExampleNew_noSecret() {
	_, err := eachhook.New()
	fmt.Println(errors.Is(err, eachhook.ErrInvalidOption))
	// Output: true
}

// A Verifier checks a signature outside the Handler; each failure has its
// own sentinel error.
func ExampleVerifier_Verify() {
	v, _ := signature.NewVerifier("whsec_example")
	body := []byte(`{"id":"abc123","status":"success","output":"https://example.com/a.png"}`)
	now := time.Unix(1_800_000_000, 0)

	sig := signature.Sign("whsec_example", "", body)
	fmt.Println(v.Verify(body, sig, "", now, 15*time.Minute))

	tampered := []byte(`{"id":"abc123","status":"success","output":"https://evil.example/a.png"}`)
	fmt.Println(errors.Is(v.Verify(tampered, sig, "", now, 15*time.Minute), signature.ErrInvalid))

	ts := "1800000000"
	sig = "sha256=" + signature.Sign("whsec_example", ts, body)
	fmt.Println(v.Verify(body, sig, ts, now.Add(20*time.Minute), 15*time.Minute))
	// Output:
	// <nil>
	// true
	// eachhook: timestamp out of tolerance
}

// Per-prediction secrets: the lookup returns the secret each prediction was
// created with.
func ExampleWithSecretLookup() {
	secrets := map[string]string{"abc123": "per-prediction-secret"}
	h, _ := eachhook.New(eachhook.WithSecretLookup(func(ctx context.Context, id string) ([]string, error) {
		if s, ok := secrets[id]; ok {
			return []string{s}, nil
		}
		return nil, nil // unknown prediction: 401
	}))
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	for _, key := range []string{"per-prediction-secret", "someone-elses-secret"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", key, "abc123"))
		fmt.Println(w.Code)
	}
	_ = h.Shutdown(context.Background())
	// Output:
	// 200
	// 401
}
