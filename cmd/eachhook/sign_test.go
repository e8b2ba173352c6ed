package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

const seedID = "abc123-def456-ghi789"

// opensslHMAC signs the file at path with openssl, independently of the
// code under test, and returns the hex digest.
func opensslHMAC(t *testing.T, secret, path string) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("openssl not installed")
		}
		t.Fatalf("openssl is required in CI: %v", err)
	}
	out, err := exec.Command(bin, "dgst", "-sha256", "-hmac", secret, "-r", path).Output()
	require.NoError(t, err)
	hexSum, _, _ := strings.Cut(string(out), " ")
	require.Regexp(t, `^[0-9a-f]{64}$`, hexSum)
	return hexSum
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func TestVerifyAcceptsSeedPayloadSignedByOpenSSL(t *testing.T) {
	const secret = "whsec_seed"
	for name, body := range map[string][]byte{
		"success": eachhooktest.SuccessBody(seedID),
		"failed":  eachhooktest.FailedBody(seedID),
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "payload.json", body)
			sig := opensslHMAC(t, secret, path)

			// The body scheme, bare and prefixed, from stdin and from -file.
			r := runCmd(t, runOpts{stdin: string(body)}, "verify", "-secret", secret, "-signature", sig)
			require.Equal(t, 0, r.code, r.stdout+r.stderr)
			require.Equal(t, "valid: HMAC-SHA256 of the "+strconv.Itoa(len(body))+"-byte body\n", r.stdout)
			r = runCmd(t, runOpts{}, "verify", "-secret", secret, "-signature", "sha256="+sig, "-file", path)
			require.Equal(t, 0, r.code, r.stdout+r.stderr)

			// sign prints the same signature as openssl.
			r = runCmd(t, runOpts{stdin: string(body)}, "sign", "-secret", secret)
			require.Equal(t, 0, r.code)
			require.Equal(t, "Content-Type: application/json\nX-Webhook-Signature: "+sig+"\n", r.stdout)
			require.Empty(t, r.stderr, "no note for a body without a trailing newline")

			// The timestamp scheme: openssl signs "<ts>.<body>".
			now := time.Now()
			ts := strconv.FormatInt(now.Unix(), 10)
			tsSig := opensslHMAC(t, secret, writeFile(t, "signed.txt", append([]byte(ts+"."), body...)))
			r = runCmd(t, runOpts{stdin: string(body)}, "verify", "-secret", secret, "-signature", "sha256="+tsSig, "-timestamp", ts)
			require.Equal(t, 0, r.code, r.stdout+r.stderr)
			require.Equal(t, "valid: HMAC-SHA256 of timestamp "+ts+" and the "+strconv.Itoa(len(body))+"-byte body\n", r.stdout)
			r = runCmd(t, runOpts{stdin: string(body), now: func() time.Time { return now }}, "sign", "-secret", secret, "-timestamp", "now")
			require.Equal(t, 0, r.code)
			require.Equal(t, "Content-Type: application/json\nX-Webhook-Timestamp: "+ts+"\nX-Webhook-Signature: sha256="+tsSig+"\n", r.stdout)

			// A wrong secret.
			r = runCmd(t, runOpts{stdin: string(body)}, "verify", "-secret", "whsec_other", "-signature", sig)
			require.Equal(t, 1, r.code)
			require.Equal(t, "invalid: signature does not match: the secret is wrong or the body was changed\n", r.stdout)
		})
	}
}

func TestVerifySaysWhyNot(t *testing.T) {
	const secret = "whsec_v"
	body := eachhooktest.SuccessBody(seedID)
	now := time.Unix(1_767_225_600, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	bodySig := signature.Sign(secret, "", body)
	tsSig := "sha256=" + signature.Sign(secret, ts, body)
	old := strconv.FormatInt(now.Add(-20*time.Minute).Unix(), 10)
	future := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	indented := []byte("{\n  \"id\": \"" + seedID + "\"\n}")

	tests := []struct {
		name     string
		body     []byte
		args     []string
		wantErr  error
		wantLine string
	}{
		{"wrong secret", body, []string{"-secret", "whsec_wrong", "-signature", bodySig}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed"},
		{"body changed", []byte(strings.Replace(string(body), "0.05", "0.01", 1)), []string{"-signature", bodySig}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed"},
		{"trailing newline added", append(body, '\n'), []string{"-signature", bodySig}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed (it matches the body without its trailing newline: a newline was added, as echo or an editor does)"},
		{"reformatted", indented, []string{"-signature", signature.Sign(secret, "", []byte(`{"id":"`+seedID+`"}`))}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed (it matches the same JSON without whitespace: the body was reformatted; verify the raw bytes as received)"},
		{"timestamp given for a body signature", body, []string{"-signature", bodySig, "-timestamp", ts}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed (it matches the body alone: the signer used the untimestamped scheme, so leave the timestamp out)"},
		{"timestamp left out", body, []string{"-signature", tsSig}, signature.ErrInvalid,
			`signature does not match: the secret is wrong or the body was changed (a "sha256=" signature usually signs "<timestamp>.<body>", and no X-Webhook-Timestamp was given); pass that header's value with -timestamp`},
		{"empty body", nil, []string{"-signature", bodySig}, signature.ErrInvalid,
			"signature does not match: the secret is wrong or the body was changed (the body is empty: the signature covers the delivery's raw body); nothing was read from standard input (or -file): pass the delivery's raw body, for example < payload.json"},
		{"too old", body, []string{"-signature", "sha256=" + signature.Sign(secret, old, body), "-timestamp", old}, signature.ErrTimestampOutOfRange,
			"timestamp too old: signed 20m0s ago, tolerance 15m0s (a replay, or a delivery held up too long)"},
		{"too new", body, []string{"-signature", "sha256=" + signature.Sign(secret, future, body), "-timestamp", future}, signature.ErrTimestampOutOfRange,
			"timestamp too new: signed 1h0m0s in the future, tolerance 15m0s (check the clocks)"},
		{"tolerance widened", body, []string{"-signature", "sha256=" + signature.Sign(secret, old, body), "-timestamp", old, "-tolerance", "30m"}, nil, ""},
		{"malformed timestamp", body, []string{"-signature", tsSig, "-timestamp", "2026-01-01"}, signature.ErrMalformedTimestamp,
			`malformed timestamp "2026-01-01": want a Unix time in whole seconds`},
		{"malformed signature", body, []string{"-signature", "sha1=abc"}, signature.ErrMalformed,
			`malformed signature header: want 64 hex digits, optionally prefixed with "sha256="`},
		{"truncated signature", body, []string{"-signature", bodySig[:63]}, signature.ErrMalformed,
			`malformed signature header: want 64 hex digits, optionally prefixed with "sha256="`},
		{"valid timestamped", body, []string{"-signature", tsSig, "-timestamp", ts}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"verify"}, tt.args...)
			r := runCmd(t, runOpts{stdin: string(tt.body), now: func() time.Time { return now },
				env: map[string]string{"EACHHOOK_SECRET": secret}}, args...)

			// The command agrees with the library.
			fs := map[string]string{"-secret": secret, "-timestamp": ""}
			for i := 0; i+1 < len(tt.args); i += 2 {
				fs[tt.args[i]] = tt.args[i+1]
			}
			tol := signature.DefaultTolerance
			if v, ok := fs["-tolerance"]; ok {
				var err error
				tol, err = time.ParseDuration(v)
				require.NoError(t, err)
			}
			libErr := signature.Verify(tt.body, fs["-signature"], fs["-timestamp"], now, tol, fs["-secret"])
			if tt.wantErr == nil {
				require.NoError(t, libErr)
				require.Equal(t, 0, r.code, r.stdout)
				require.True(t, strings.HasPrefix(r.stdout, "valid: "), r.stdout)
				return
			}
			require.ErrorIs(t, libErr, tt.wantErr)
			require.Equal(t, 1, r.code)
			require.Equal(t, "invalid: "+tt.wantLine+"\n", r.stdout)
			require.Empty(t, r.stderr)
		})
	}
}

func TestSignThenVerifyRoundTrip(t *testing.T) {
	body := `{"id":"rt","status":"failed","output":null}`
	r := runCmd(t, runOpts{stdin: body}, "sign", "-secret", "k", "-timestamp", "1767225600")
	require.Equal(t, 0, r.code)
	var sig, ts string
	for line := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case signature.Header:
			sig = v
		case signature.HeaderTimestamp:
			ts = v
		}
	}
	require.Equal(t, "1767225600", ts)
	at := func() time.Time { return time.Unix(1767225600+60, 0) }
	r = runCmd(t, runOpts{stdin: body, now: at}, "verify", "-secret", "k", "-signature", sig, "-timestamp", ts)
	require.Equal(t, 0, r.code, r.stdout)

	r = runCmd(t, runOpts{}, "sign", "-secret", "k", "-file", filepath.Join(t.TempDir(), "missing.json"))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "missing.json")
}

func TestSignSaysWhenTheBodyEndsInANewline(t *testing.T) {
	body := append(eachhooktest.SuccessBody(seedID), '\n')
	r := runCmd(t, runOpts{stdin: string(body)}, "sign", "-secret", "whsec_n")
	require.Equal(t, 0, r.code)
	require.Equal(t, "Content-Type: application/json\nX-Webhook-Signature: "+signature.Sign("whsec_n", "", body)+"\n", r.stdout, "the newline is signed")
	require.Equal(t, "eachhook sign: the body ends in a newline, which is signed with it; if the sender's body does not (echo and many editors add one), this signature will not match\n", r.stderr)
}
