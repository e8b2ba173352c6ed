package eachhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

// FuzzServeHTTP checks that ServeHTTP never panics, answers only the
// documented codes, and never runs a callback for a request whose signature
// does not verify.
func FuzzServeHTTP(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(eachhooktest.SuccessBody("p1"), "", "", "application/json", true)
	f.Add(eachhooktest.FailedBody("p2"), "", "1800000000", "application/json; charset=utf-8", true)
	f.Add([]byte(`{"id":"x","status":"success"}`), "sha256=00", "", "", false)
	f.Add([]byte(`{"id":"","status":"failed"}`), "", "", "", true)
	f.Add([]byte(`{"id":"a","status":"success","output":[1,{"a":null}]}`), "", "1799999000", "", true)
	f.Add([]byte(`not json`), "", "", "text/plain", true)
	f.Fuzz(func(t *testing.T, body []byte, sig, ts, contentType string, sign bool) {
		if sign {
			sig = signature.Sign(secret, ts, body)
		}
		verifyErr := signature.Verify(body, sig, ts, now, signature.DefaultTolerance, secret)
		h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet),
			eachhook.WithClock(func() time.Time { return now }), eachhook.WithMaxBodyBytes(4096))
		if err != nil {
			t.Fatal(err)
		}
		var ran atomic.Int32
		h.OnSuccess(func(context.Context, *eachhook.Success) error { ran.Add(1); return nil })
		h.OnFailed(func(context.Context, *eachhook.Failure) error { ran.Add(1); return nil })
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set(signature.Header, sig)
		if ts != "" {
			r.Header.Set(signature.HeaderTimestamp, ts)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if err := h.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		switch w.Code {
		case 200, 400, 401, 413, 415:
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
		if ran.Load() > 0 && verifyErr != nil {
			t.Fatalf("callback ran for a request that does not verify (%v)", verifyErr)
		}
		if w.Code == 200 && verifyErr != nil {
			t.Fatalf("200 for a request that does not verify (%v)", verifyErr)
		}
		if ran.Load() > 1 {
			t.Fatalf("%d callbacks for one request", ran.Load())
		}
	})
}
