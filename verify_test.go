package eachhook_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

func TestVerify(t *testing.T) {
	body := eachhooktest.SuccessBody("v1")
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	bodySig := eachhook.Sign(secret, "", body)
	tsSig := eachhook.Sign(secret, ts, body)
	v, err := eachhook.NewVerifier("rotated-out", secret)
	require.NoError(t, err)
	cases := []struct {
		name     string
		body     []byte
		sig, ts  string
		now      time.Time
		want     error
		wantNone bool
	}{
		{name: "bare hex", body: body, sig: bodySig, wantNone: true},
		{name: "sha256= prefix", body: body, sig: "sha256=" + bodySig, wantNone: true},
		{name: "upper-case hex", body: body, sig: strings.ToUpper(bodySig), wantNone: true},
		{name: "upper-case prefix", body: body, sig: "SHA256=" + bodySig, wantNone: true},
		{name: "surrounding spaces", body: body, sig: " " + bodySig + " ", wantNone: true},
		{name: "timestamped", body: body, sig: "sha256=" + tsSig, ts: ts, wantNone: true},
		{name: "timestamped at -tolerance", body: body, sig: tsSig, ts: ts, now: now.Add(15 * time.Minute), wantNone: true},
		{name: "missing", body: body, sig: "", want: eachhook.ErrMissingSignature},
		{name: "too short", body: body, sig: bodySig[:63], want: eachhook.ErrMalformedSignature},
		{name: "not hex", body: body, sig: "zz" + bodySig[2:], want: eachhook.ErrMalformedSignature},
		{name: "other prefix", body: body, sig: "sha1=" + bodySig, want: eachhook.ErrMalformedSignature},
		{name: "tampered body", body: append(bytes.Clone(body), ' '), sig: bodySig, want: eachhook.ErrInvalidSignature},
		{name: "wrong secret", body: body, sig: eachhook.Sign("nope", "", body), want: eachhook.ErrInvalidSignature},
		{name: "body sig with timestamp", body: body, sig: bodySig, ts: ts, want: eachhook.ErrInvalidSignature},
		{name: "timestamp sig without timestamp", body: body, sig: tsSig, want: eachhook.ErrInvalidSignature},
		{name: "other timestamp", body: body, sig: tsSig, ts: strconv.FormatInt(now.Unix()+1, 10), want: eachhook.ErrInvalidSignature},
		{name: "too old", body: body, sig: tsSig, ts: ts, now: now.Add(15*time.Minute + time.Second), want: eachhook.ErrTimestampOutOfRange},
		{name: "too new", body: body, sig: tsSig, ts: ts, now: now.Add(-15*time.Minute - time.Second), want: eachhook.ErrTimestampOutOfRange},
		{name: "timestamp in ms", body: body, sig: tsSig, ts: ts + "000", want: eachhook.ErrTimestampOutOfRange},
		{name: "timestamp not a number", body: body, sig: tsSig, ts: "yesterday", want: eachhook.ErrMalformedTimestamp},
		{name: "negative timestamp", body: body, sig: tsSig, ts: "-5", want: eachhook.ErrMalformedTimestamp},
		{name: "huge timestamp", body: body, sig: tsSig, ts: "9223372036854775807", want: eachhook.ErrTimestampOutOfRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.now
			if at.IsZero() {
				at = now
			}
			errV := v.Verify(tc.body, tc.sig, tc.ts, at, 15*time.Minute)
			errF := eachhook.VerifySignature(tc.body, tc.sig, tc.ts, at, 15*time.Minute, "rotated-out", secret)
			if tc.wantNone {
				require.NoError(t, errV)
				require.NoError(t, errF)
				return
			}
			require.ErrorIs(t, errV, tc.want)
			require.ErrorIs(t, errF, tc.want)
		})
	}
}

func TestVerifySignatureNoSecret(t *testing.T) {
	body := []byte(`{}`)
	err := eachhook.VerifySignature(body, eachhook.Sign("s", "", body), "", time.Now(), time.Minute)
	require.ErrorIs(t, err, eachhook.ErrNoSecret)
}

func TestNewVerifierRejectsEmpty(t *testing.T) {
	_, err := eachhook.NewVerifier()
	require.Error(t, err)
	_, err = eachhook.NewVerifier("a", "")
	require.Error(t, err)
}

// TestOpenSSLSignaturesVerify checks the scheme against an independent
// implementation: openssl computes the HMAC, eachhook verifies it.
func TestOpenSSLSignaturesVerify(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if ciRequired() {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed")
	}
	body := eachhooktest.SuccessBody("openssl-1")
	hmacHex := func(data []byte) string {
		cmd := exec.Command(openssl, "dgst", "-sha256", "-hmac", secret)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		require.NoError(t, err)
		// "SHA2-256(stdin)= <hex>" or "(stdin)= <hex>" depending on version.
		f := strings.Fields(string(out))
		return f[len(f)-1]
	}
	v, err := eachhook.NewVerifier(secret)
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, v.Verify(body, hmacHex(body), "", now, time.Minute))
	require.Equal(t, hmacHex(body), eachhook.Sign(secret, "", body))

	ts := strconv.FormatInt(now.Unix(), 10)
	signed := append([]byte(ts+"."), body...)
	require.NoError(t, v.Verify(body, "sha256="+hmacHex(signed), ts, now, time.Minute))
	err = v.Verify(append(body, '\n'), hmacHex(body), "", now, time.Minute)
	require.True(t, errors.Is(err, eachhook.ErrInvalidSignature))
}

// ciRequired reports whether a missing tool must fail the test (in CI).
func ciRequired() bool { return os.Getenv("CI") != "" }
