package signature_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

func TestExplain(t *testing.T) {
	body := []byte(`{"id": "x1", "status": "success"}`)
	compact := []byte(`{"id":"x1","status":"success"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	old := strconv.FormatInt(now.Add(-20*time.Minute).Unix(), 10)
	bodySig := signature.Sign(secret, "", body)
	tsSig := "sha256=" + signature.Sign(secret, ts, body)
	const mismatch = "signature does not match: the secret is wrong or the body was changed"
	cases := []struct {
		name    string
		body    []byte
		sig, ts string
		secrets []string
		want    string
	}{
		{"valid", body, bodySig, "", []string{secret}, "valid"},
		{"missing", body, "", "", []string{secret}, "no signature: the X-Webhook-Signature header is missing or empty"},
		{"malformed", body, "sha1=abc", "", []string{secret}, `malformed signature header: want 64 hex digits, optionally prefixed with "sha256="`},
		{"malformed timestamp", body, tsSig, "yesterday", []string{secret}, `malformed timestamp "yesterday": want a Unix time in whole seconds`},
		{"too old", body, "sha256=" + signature.Sign(secret, old, body), old, []string{secret}, "timestamp too old: signed 20m0s ago, tolerance 15m0s (a replay, or a delivery held up too long)"},
		{"no secret", body, bodySig, "", nil, "no secret to verify with"},
		{"wrong secret", body, signature.Sign("other", "", body), "", []string{secret}, mismatch},
		{"newline added", append(body, '\n'), bodySig, "", []string{secret}, mismatch + " (it matches the body without its trailing newline: a newline was added, as echo or an editor does)"},
		{"newline removed", body, signature.Sign(secret, "", append(body, '\n')), "", []string{secret}, mismatch + " (it matches the body with a trailing newline: the newline was removed)"},
		{"reformatted", body, signature.Sign(secret, "", compact), "", []string{secret}, mismatch + " (it matches the same JSON without whitespace: the body was reformatted; verify the raw bytes as received)"},
		{"timestamp sent for a body signature", body, bodySig, ts, []string{secret}, mismatch + " (it matches the body alone: the signer used the untimestamped scheme, so leave the timestamp out)"},
		{"timestamp left out", body, tsSig, "", []string{secret}, mismatch + ` (a "sha256=" signature usually signs "<timestamp>.<body>", and no X-Webhook-Timestamp was given)`},
		{"empty body", nil, bodySig, "", []string{secret}, mismatch + " (the body is empty: the signature covers the delivery's raw body)"},
		{"newline added, no secret given", append(body, '\n'), bodySig, "", nil, "no secret to verify with"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := signature.Verify(c.body, c.sig, c.ts, now, signature.DefaultTolerance, c.secrets...)
			got := signature.Explain(err, c.body, c.sig, c.ts, now, signature.DefaultTolerance, c.secrets...)
			require.Equal(t, c.want, got)
			require.NotContains(t, got, secret)
			if c.sig != "" && len(c.sig) > 8 {
				require.NotContains(t, got, strings.TrimPrefix(c.sig, "sha256=")[:16], "the signature stays out")
			}
		})
	}
}

func TestExplainWithoutSecretsStillNamesTheStructuralAccidents(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	// The Handler explains a lookup's refusal without the secrets: an
	// invalid signature with no secret to try still names an empty body.
	got := signature.Explain(signature.ErrInvalid, nil, signature.Sign(secret, "", nil), "", now, time.Minute)
	require.Equal(t, "signature does not match: the secret is wrong or the body was changed (the body is empty: the signature covers the delivery's raw body)", got)
}

func TestExplainKeepsTheWordsOfAWrappedError(t *testing.T) {
	err := fmt.Errorf("%w: only X-Webhook-Secret, which needs WithLegacySecretHeader", signature.ErrMissing)
	got := signature.Explain(err, nil, "", "", time.Now(), time.Minute)
	require.Equal(t, "no signature: the X-Webhook-Signature header is missing or empty (eachhook: missing signature: only X-Webhook-Secret, which needs WithLegacySecretHeader)", got)

	other := errors.New("something else")
	require.Equal(t, "something else", signature.Explain(other, nil, "", "", time.Now(), time.Minute))
}

func ExampleExplain() {
	body := []byte(`{"id":"abc123","status":"success"}`)
	sig := signature.Sign("whsec_demo", "", body)
	// The body as a shell's echo would send it, with a newline.
	got := append(body, '\n')
	err := signature.Verify(got, sig, "", time.Now(), signature.DefaultTolerance, "whsec_demo")
	fmt.Println(signature.Explain(err, got, sig, "", time.Now(), signature.DefaultTolerance, "whsec_demo"))
	// Output:
	// signature does not match: the secret is wrong or the body was changed (it matches the body without its trailing newline: a newline was added, as echo or an editor does)
}
