package eachhook_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
)

// Receive answers what ServeHTTP answers for the same method, headers and
// body, with the same callbacks and observer calls, in the same order.
func TestReceiveAnswersAsServeHTTP(t *testing.T) {
	type delivery struct {
		name   string
		method string
		header http.Header
		body   []byte
		want   int
	}
	good := eachhooktest.SuccessBody("recv-1")
	forged := eachhooktest.Headers("another secret", good, eachhooktest.BodyScheme, time.Now())
	deliveries := []delivery{
		{"first", http.MethodPost, eachhooktest.Headers(secret, good, eachhooktest.BodyScheme, time.Now()), good, 200},
		{"duplicate", http.MethodPost, eachhooktest.Headers(secret, good, eachhooktest.TimestampScheme, time.Now()), good, 200},
		{"forged", http.MethodPost, forged, eachhooktest.SuccessBody("recv-2"), 401},
		{"not POST", http.MethodGet, nil, nil, 405},
		{"media type", http.MethodPost, http.Header{"Content-Type": {"text/plain"}}, good, 415},
		{"too large", http.MethodPost, eachhooktest.Headers(secret, bytes.Repeat([]byte(" "), 2048), eachhooktest.BodyScheme, time.Now()), bytes.Repeat([]byte(" "), 2048), 413},
		{"malformed", http.MethodPost, eachhooktest.Headers(secret, []byte(`{"status":"success"}`), eachhooktest.BodyScheme, time.Now()), []byte(`{"status":"success"}`), 400},
		{"processing", http.MethodPost, eachhooktest.Headers(secret, []byte(`{"id":"recv-3","status":"processing"}`), eachhooktest.BodyScheme, time.Now()), []byte(`{"id":"recv-3","status":"processing"}`), 200},
	}

	type seen struct {
		codes   []int
		events  []string
		success int
	}
	run := func(t *testing.T, send func(h *eachhook.Handler, d delivery) int) seen {
		var s seen
		obs := observe.Observer{
			Refused:   func(_ context.Context, r observe.Refusal) { s.events = append(s.events, "refused "+string(r.Reason)) },
			Duplicate: func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "duplicate "+d.ID) },
			Ignored:   func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "ignored "+d.ID) },
			Accepted:  func(_ context.Context, d observe.DeliveryInfo) { s.events = append(s.events, "accepted "+d.ID) },
		}
		h := newHandler(t, eachhook.WithSecret(secret), eachhook.WithMaxBodyBytes(1024), eachhook.WithObserver(obs))
		done := make(chan struct{}, 10)
		h.OnSuccess(func(context.Context, *eachhook.Success) error { done <- struct{}{}; return nil })
		for _, d := range deliveries {
			s.codes = append(s.codes, send(h, d))
		}
		drain(t, h)
		s.success = len(done)
		return s
	}
	viaHTTP := run(t, func(h *eachhook.Handler, d delivery) int {
		r, err := http.NewRequest(d.method, "/webhooks/prediction", bytes.NewReader(d.body))
		require.NoError(t, err)
		if d.header != nil {
			r.Header = d.header.Clone()
		}
		return serve(h, r).Code
	})
	viaReceive := run(t, func(h *eachhook.Handler, d delivery) int {
		return h.Receive(context.Background(), d.method, d.header, d.body)
	})

	var want []int
	for _, d := range deliveries {
		want = append(want, d.want)
	}
	require.Equal(t, want, viaHTTP.codes)
	require.Equal(t, want, viaReceive.codes)
	require.Equal(t, viaHTTP.events, viaReceive.events)
	require.Equal(t, 1, viaHTTP.success)
	require.Equal(t, 1, viaReceive.success)
	require.Equal(t, []string{"accepted recv-1", "duplicate recv-1", "refused signature", "refused method",
		"refused media_type", "refused too_large", "refused malformed", "ignored recv-3"}, viaReceive.events)
}

// Receive reads the body it is given and nothing else: a nil header is an
// unsigned request.
func TestReceiveNilHeader(t *testing.T) {
	h := newHandler(t, eachhook.WithSecret(secret))
	require.Equal(t, 401, h.Receive(context.Background(), http.MethodPost, nil, eachhooktest.SuccessBody("x")))
}
