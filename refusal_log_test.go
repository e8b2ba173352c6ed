package eachhook_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// The refusals a user meets while setting up are logged at Warn, with the
// explanation of package signature, and without the secret, the signature
// or the unverified body.
func TestRefusalsAreExplainedInTheLog(t *testing.T) {
	body := eachhooktest.SuccessBody("log-secret-id")
	sig := signature.Sign(secret, "", body)
	withNewline := append(bytes.Clone(body), '\n')
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name     string
		opts     []eachhook.Option
		req      func() *http.Request
		code     int
		wantLine []string
	}{
		{
			name: "trailing newline",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				r := eachhooktest.NewRequest("/", secret, withNewline, eachhooktest.BodyScheme, time.Now())
				r.Header.Set(signature.Header, sig) // signed before the newline was added
				return r
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "refused unverified delivery (401)", "it matches the body without its trailing newline"},
		},
		{
			name: "wrong secret",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", "whsec_other", body, eachhooktest.BodyScheme, time.Now())
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", `reason="signature does not match: the secret is wrong or the body was changed"`},
		},
		{
			name: "timestamp too old",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", secret, body, eachhooktest.TimestampScheme, now.Add(-time.Hour))
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "timestamp too old: signed 1h0m0s ago, tolerance 15m0s"},
		},
		{
			name: "lookup, empty body",
			opts: []eachhook.Option{eachhook.WithSecretLookup(func(context.Context, string) ([]string, error) { return []string{secret}, nil })},
			req: func() *http.Request {
				return eachhooktest.NewRequest("/", secret, nil, eachhooktest.BodyScheme, time.Now())
			},
			code:     http.StatusUnauthorized,
			wantLine: []string{"level=WARN", "refused unverified delivery (401)"},
		},
		{
			name: "415 names the Content-Type",
			opts: []eachhook.Option{eachhook.WithSecret(secret)},
			req: func() *http.Request {
				r := eachhooktest.NewRequest("/", secret, body, eachhooktest.BodyScheme, time.Now())
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl -d without -H
				return r
			},
			code:     http.StatusUnsupportedMediaType,
			wantLine: []string{"level=WARN", "refused delivery (415)", "content_type=application/x-www-form-urlencoded"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs logBuffer
			h := newHandler(t, append(c.opts, eachhook.WithClock(func() time.Time { return now }), eachhook.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
			require.Equal(t, c.code, serve(h, c.req()).Code)
			out := logs.String()
			require.Equal(t, 1, strings.Count(out, "\n"), out)
			for _, w := range c.wantLine {
				require.Contains(t, out, w)
			}
			require.NotContains(t, out, secret)
			require.NotContains(t, out, "whsec_other")
			require.NotContains(t, out, sig[:16])
			require.NotContains(t, out, "log-secret-id", "the unverified body stays out")
		})
	}
}
