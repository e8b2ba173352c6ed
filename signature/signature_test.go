package signature_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

const secret = "whsec_test_secret"

func TestVerify(t *testing.T) {
	body := eachhooktest.SuccessBody("v1")
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	bodySig := signature.Sign(secret, "", body)
	tsSig := signature.Sign(secret, ts, body)
	v, err := signature.NewVerifier("rotated-out", secret)
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
		{name: "missing", body: body, sig: "", want: signature.ErrMissing},
		{name: "too short", body: body, sig: bodySig[:63], want: signature.ErrMalformed},
		{name: "not hex", body: body, sig: "zz" + bodySig[2:], want: signature.ErrMalformed},
		{name: "other prefix", body: body, sig: "sha1=" + bodySig, want: signature.ErrMalformed},
		{name: "tampered body", body: append(bytes.Clone(body), ' '), sig: bodySig, want: signature.ErrInvalid},
		{name: "wrong secret", body: body, sig: signature.Sign("nope", "", body), want: signature.ErrInvalid},
		{name: "body sig with timestamp", body: body, sig: bodySig, ts: ts, want: signature.ErrInvalid},
		{name: "timestamp sig without timestamp", body: body, sig: tsSig, want: signature.ErrInvalid},
		{name: "other timestamp", body: body, sig: tsSig, ts: strconv.FormatInt(now.Unix()+1, 10), want: signature.ErrInvalid},
		{name: "too old", body: body, sig: tsSig, ts: ts, now: now.Add(15*time.Minute + time.Second), want: signature.ErrTimestampOutOfRange},
		{name: "too new", body: body, sig: tsSig, ts: ts, now: now.Add(-15*time.Minute - time.Second), want: signature.ErrTimestampOutOfRange},
		{name: "timestamp in ms", body: body, sig: tsSig, ts: ts + "000", want: signature.ErrTimestampOutOfRange},
		{name: "timestamp not a number", body: body, sig: tsSig, ts: "yesterday", want: signature.ErrMalformedTimestamp},
		{name: "negative timestamp", body: body, sig: tsSig, ts: "-5", want: signature.ErrMalformedTimestamp},
		{name: "huge timestamp", body: body, sig: tsSig, ts: "9223372036854775807", want: signature.ErrTimestampOutOfRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.now
			if at.IsZero() {
				at = now
			}
			errV := v.Verify(tc.body, tc.sig, tc.ts, at, 15*time.Minute)
			errF := signature.Verify(tc.body, tc.sig, tc.ts, at, 15*time.Minute, "rotated-out", secret)
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
	err := signature.Verify(body, signature.Sign("s", "", body), "", time.Now(), time.Minute)
	require.ErrorIs(t, err, signature.ErrNoSecret)
}

func TestNewVerifierRejectsEmpty(t *testing.T) {
	_, err := signature.NewVerifier()
	require.Error(t, err)
	_, err = signature.NewVerifier("a", "")
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
	v, err := signature.NewVerifier(secret)
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, v.Verify(body, hmacHex(body), "", now, time.Minute))
	require.Equal(t, hmacHex(body), signature.Sign(secret, "", body))

	ts := strconv.FormatInt(now.Unix(), 10)
	signed := append([]byte(ts+"."), body...)
	require.NoError(t, v.Verify(body, "sha256="+hmacHex(signed), ts, now, time.Minute))
	err = v.Verify(append(body, '\n'), hmacHex(body), "", now, time.Minute)
	require.True(t, errors.Is(err, signature.ErrInvalid))
}

// ciRequired reports whether a missing tool must fail the test (in CI).
func ciRequired() bool { return os.Getenv("CI") != "" }
