package eachhook_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

func TestLegacySecretHeader(t *testing.T) {
	const other = "whsec_other_secret"
	body := eachhooktest.SuccessBody("legacy-1")
	now := time.Now()
	plain := func(value string) *http.Request {
		return eachhooktest.NewRequest("/", value, body, eachhooktest.LegacySecretScheme, now)
	}
	// sigAndPlain signs with sigSecret and sends plain in X-Webhook-Secret.
	sigAndPlain := func(sigSecret, plain string) *http.Request {
		r := eachhooktest.NewRequest("/", sigSecret, body, eachhooktest.TimestampScheme, now)
		r.Header.Set(signature.HeaderSecret, plain)
		return r
	}
	legacy := eachhook.WithLegacySecretHeader()
	cases := []struct {
		name string
		opts []eachhook.Option
		req  *http.Request
		want int
	}{
		{name: "default refuses the right secret", req: plain(secret), want: 401},
		{name: "default accepts the live sender by its signature alone", req: sigAndPlain(secret, secret), want: 200},
		{name: "right secret", opts: []eachhook.Option{legacy}, req: plain(secret), want: 200},
		{name: "wrong secret", opts: []eachhook.Option{legacy}, req: plain(other), want: 401},
		{name: "prefix of the secret", opts: []eachhook.Option{legacy}, req: plain(secret[:len(secret)-1]), want: 401},
		{name: "secret with a suffix", opts: []eachhook.Option{legacy}, req: plain(secret + "x"), want: 401},
		{name: "second of two secrets", opts: []eachhook.Option{legacy, eachhook.WithSecret(other)}, req: plain(other), want: 200},
		{name: "valid signature decides over a wrong plain secret", opts: []eachhook.Option{legacy}, req: sigAndPlain(secret, other), want: 200},
		{name: "wrong signature decides over the right plain secret", opts: []eachhook.Option{legacy}, req: sigAndPlain(other, secret), want: 401},
		{name: "malformed signature decides over the right plain secret", opts: []eachhook.Option{legacy}, req: func() *http.Request {
			r := plain(secret)
			r.Header.Set(signature.Header, "sha256=zz")
			return r
		}(), want: 401},
		{name: "blank signature counts as absent", opts: []eachhook.Option{legacy}, req: func() *http.Request {
			r := plain(secret)
			r.Header.Set(signature.Header, "  ")
			return r
		}(), want: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts := append([]eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(logger)}, tc.opts...)
			h := newHandler(t, opts...)
			c := newCalls()
			c.register(h)
			w := serve(h, tc.req)
			require.Equal(t, tc.want, w.Code)
			drain(t, h)
			s, _ := c.counts()
			if tc.want == 200 {
				require.Equal(t, 1, s)
			} else {
				require.Equal(t, 0, s)
			}
			mu.Lock()
			defer mu.Unlock()
			// Neither the configured secrets nor the header's value are
			// ever logged, whatever the outcome.
			for _, v := range []string{secret, other, secret[:len(secret)-1]} {
				require.NotContains(t, logs.String(), v)
			}
			if tc.name == "default refuses the right secret" {
				require.Contains(t, logs.String(), "WithLegacySecretHeader", "the log tells how to accept it")
			}
		})
	}
}

func TestLegacySecretHeaderWithLookup(t *testing.T) {
	var looked []string
	var mu sync.Mutex
	lookup := func(ctx context.Context, id string) ([]string, error) {
		mu.Lock()
		looked = append(looked, id)
		mu.Unlock()
		switch id {
		case "p1":
			return []string{"secret-p1"}, nil
		case "workflow:x1":
			return []string{"secret-x1"}, nil
		case "explode":
			return nil, context.DeadlineExceeded
		}
		return nil, nil
	}
	h := newHandler(t, eachhook.WithSecretLookup(lookup), eachhook.WithLegacySecretHeader())
	c := &recorder{}
	c.register(h)
	plain := func(value string, body []byte) int {
		return serve(h, eachhooktest.NewRequest("/", value, body, eachhooktest.LegacySecretScheme, time.Now())).Code
	}
	require.Equal(t, 200, plain("secret-p1", eachhooktest.FailedBody("p1")))
	require.Equal(t, 200, plain("secret-x1", eachhooktest.WorkflowFailedBody("x1", "wf")))
	require.Equal(t, 401, plain("secret-x1", eachhooktest.FailedBody("p1")), "another delivery's secret")
	require.Equal(t, 401, plain("secret-p1", eachhooktest.FailedBody("unknown")), "no secret for the id")
	require.Equal(t, 401, plain("secret-p1", []byte(`{"status":"failed"}`)), "no id to look up")
	require.Equal(t, 503, plain("secret-p1", eachhooktest.FailedBody("explode")), "lookup failure")
	drain(t, h)
	require.Equal(t, [4]int{0, 1, 0, 1}, c.counts())
	require.Equal(t, []string{"p1", "workflow:x1", "p1", "unknown", "explode"}, looked)
}

func TestLegacySecretHeaderOptionConflicts(t *testing.T) {
	h, err := eachhook.New(eachhook.WithInsecureSkipVerification(), eachhook.WithLegacySecretHeader())
	require.ErrorIs(t, err, eachhook.ErrInvalidOption)
	require.Nil(t, h)
	h, err = eachhook.New(eachhook.WithLegacySecretHeader())
	require.ErrorIs(t, err, eachhook.ErrInvalidOption, "still needs a secret")
	require.Nil(t, h)
}

func TestLegacySchemeHeaders(t *testing.T) {
	hdr := eachhooktest.Headers(secret, []byte(`{}`), eachhooktest.LegacySecretScheme, time.Now())
	require.Equal(t, secret, hdr.Get(signature.HeaderSecret))
	require.Empty(t, hdr.Get(signature.Header))
	require.Empty(t, hdr.Get(signature.HeaderTimestamp))
	hdr = eachhooktest.Headers(secret, []byte(`{}`), eachhooktest.TimestampAndSecretScheme, time.Now())
	require.Equal(t, secret, hdr.Get(signature.HeaderSecret))
	require.True(t, strings.HasPrefix(hdr.Get(signature.Header), "sha256="))
	require.NotEmpty(t, hdr.Get(signature.HeaderTimestamp))
}
