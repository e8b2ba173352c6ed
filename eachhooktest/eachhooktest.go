// Package eachhooktest builds signed each::labs webhook requests and
// payloads for tests of code that uses package eachhook. It signs with
// [eachhook.Sign], the same code the Handler verifies against.
package eachhooktest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/eachhook/eachhook"
)

// Scheme is a way the sender signs a delivery.
type Scheme int

const (
	// BodyScheme signs the raw body and sends the bare hex digest in
	// X-Webhook-Signature (the original each::labs scheme).
	BodyScheme Scheme = iota
	// TimestampScheme signs "<unix seconds>.<body>" and sends
	// "sha256=<hex>" with X-Webhook-Timestamp (the newer scheme).
	TimestampScheme
)

// SeedOutput is the output URL of the payload SuccessBody builds.
const SeedOutput = "https://storage.example.com/predictions/abc123/image.jpg"

// SeedLogs is the logs of the payload FailedBody builds.
const SeedLogs = "Error: Model timeout after 30s"

// SuccessBody returns the documented success payload for prediction id.
func SuccessBody(id string) []byte {
	return mustJSON(map[string]any{
		"id":     id,
		"status": "success",
		"output": SeedOutput,
		"input":  map[string]any{"prompt": "A beautiful sunset over the ocean", "aspect_ratio": "16:9"},
		"metrics": map[string]any{
			"predict_time": 12.5,
			"cost":         0.05,
		},
	})
}

// FailedBody returns the documented failure payload for prediction id.
func FailedBody(id string) []byte {
	return mustJSON(map[string]any{
		"id":     id,
		"status": "failed",
		"output": nil,
		"input":  map[string]any{"prompt": "A beautiful sunset over the ocean", "aspect_ratio": "16:9"},
		"logs":   SeedLogs,
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Headers returns the headers the sender sets on a delivery of body signed
// with secret under scheme; now is the signing time (TimestampScheme only).
func Headers(secret string, body []byte, scheme Scheme, now time.Time) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	switch scheme {
	case TimestampScheme:
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set(eachhook.HeaderTimestamp, ts)
		h.Set(eachhook.HeaderSignature, "sha256="+eachhook.Sign(secret, ts, body))
	default:
		h.Set(eachhook.HeaderSignature, eachhook.Sign(secret, "", body))
	}
	return h
}

// NewRequest returns a server-side POST request to target (a path or URL)
// carrying body signed with secret under scheme, ready for
// Handler.ServeHTTP with an httptest.ResponseRecorder.
func NewRequest(target, secret string, body []byte, scheme Scheme, now time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	for k, v := range Headers(secret, body, scheme, now) {
		r.Header[k] = v
	}
	return r
}

// NewSuccessRequest returns a request carrying SuccessBody(id) signed with
// secret under BodyScheme.
func NewSuccessRequest(target, secret, id string) *http.Request {
	return NewRequest(target, secret, SuccessBody(id), BodyScheme, time.Now())
}

// NewFailedRequest returns a request carrying FailedBody(id) signed with
// secret under BodyScheme.
func NewFailedRequest(target, secret, id string) *http.Request {
	return NewRequest(target, secret, FailedBody(id), BodyScheme, time.Now())
}

// NewClientRequest is like NewRequest but returns a client request, for
// sending to a running server with an http.Client.
func NewClientRequest(url, secret string, body []byte, scheme Scheme, now time.Time) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range Headers(secret, body, scheme, now) {
		r.Header[k] = v
	}
	return r, nil
}
