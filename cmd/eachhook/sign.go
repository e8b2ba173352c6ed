package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

const signUsage = `usage: eachhook sign -secret S [-timestamp T] < body

Prints the headers the each::labs sender sets on a delivery of the body read
from standard input (or -file), signed with the prediction's webhook_secret.
The body is signed byte for byte: "echo" adds a newline the sender would not
send, so use printf or a file; a body that ends in a newline is signed with
it, and said so on standard error. Without -timestamp the signature is the hex
HMAC-SHA256 of the body; with it, "sha256=" and the HMAC of
"<timestamp>.<body>", and X-Webhook-Timestamp is set.

The secret may come from $EACHHOOK_SECRET instead of -secret.`

const signExamples = `examples:
  eachhook sign -secret whsec_123 < payload.json
  printf '%s' '{"id":"abc123","status":"success"}' | eachhook sign -secret whsec_123 -timestamp now
  eachhook sign -secret whsec_123 -timestamp 1767225600 -file payload.json`

func (a *app) sign(args []string) int {
	fs := a.flagSet("sign", signUsage, signExamples)
	secret := fs.String("secret", "", "the prediction's webhook_secret (default $EACHHOOK_SECRET)")
	ts := fs.String("timestamp", "", "sign with this Unix time in seconds (timestamp scheme); \"now\" for the current time")
	file := fs.String("file", "-", "read the body from this file instead of standard input")
	if code, ok := a.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q (the body is read from standard input)", fs.Arg(0))
	}
	if *secret == "" {
		*secret = a.getenv("EACHHOOK_SECRET")
	}
	if *secret == "" {
		return a.usageError(fs, "-secret is required (or set $EACHHOOK_SECRET)")
	}
	scheme, at := eachhooktest.BodyScheme, time.Time{}
	switch *ts {
	case "":
	case "now":
		scheme, at = eachhooktest.TimestampScheme, a.now()
	default:
		sec, err := strconv.ParseInt(*ts, 10, 64)
		if err != nil || sec < 0 {
			return a.usageError(fs, "-timestamp must be a Unix time in whole seconds or \"now\", not %q", *ts)
		}
		scheme, at = eachhooktest.TimestampScheme, time.Unix(sec, 0)
	}
	body, err := a.readInput(*file)
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook sign: %v\n", err)
		return 1
	}
	if bytes.HasSuffix(body, []byte("\n")) {
		fmt.Fprintln(a.stderr, "eachhook sign: the body ends in a newline, which is signed with it; if the sender's body does not (echo and many editors add one), this signature will not match")
	}
	h := eachhooktest.Headers(*secret, body, scheme, at)
	for _, k := range []string{"Content-Type", signature.HeaderTimestamp, signature.Header} {
		if v := h.Get(k); v != "" {
			fmt.Fprintf(a.stdout, "%s: %s\n", k, v)
		}
	}
	return 0
}

const verifyUsage = `usage: eachhook verify -secret S -signature SIG [-timestamp T] < body

Verifies a delivery's signature the way package eachhook does, over the body
read from standard input (or -file), byte for byte. Prints "valid", or
exactly why not: a malformed signature or timestamp header, a timestamp too
old or too new, or a signature that does not match (the secret is wrong or
the body was changed; when a trailing newline, reformatted JSON or the other
signing scheme explains it, it says so).

Exit status: 0 if valid, 1 if not, 2 for bad flags.
The secret may come from $EACHHOOK_SECRET instead of -secret.`

const verifyExamples = `examples:
  eachhook verify -secret whsec_123 -signature 5d41402abc4b2a76b9719d911017c592... < payload.json
  eachhook verify -secret whsec_123 -signature sha256=5d41... -timestamp 1767225600 -file payload.json
  eachhook verify -secret whsec_123 -signature "$(openssl dgst -sha256 -hmac whsec_123 -r < payload.json | cut -d' ' -f1)" < payload.json`

func (a *app) verify(args []string) int {
	fs := a.flagSet("verify", verifyUsage, verifyExamples)
	secret := fs.String("secret", "", "the prediction's webhook_secret (default $EACHHOOK_SECRET)")
	sig := fs.String("signature", "", "the "+signature.Header+" header value (required)")
	ts := fs.String("timestamp", "", "the "+signature.HeaderTimestamp+" header value, if the delivery had one")
	tolerance := fs.Duration("tolerance", signature.DefaultTolerance, "how far the timestamp may lie from now, either way")
	file := fs.String("file", "-", "read the body from this file instead of standard input")
	if code, ok := a.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q (the body is read from standard input)", fs.Arg(0))
	}
	if *secret == "" {
		*secret = a.getenv("EACHHOOK_SECRET")
	}
	if *secret == "" {
		return a.usageError(fs, "-secret is required (or set $EACHHOOK_SECRET)")
	}
	if *sig == "" {
		return a.usageError(fs, "-signature is required")
	}
	if *tolerance <= 0 {
		return a.usageError(fs, "-tolerance must be > 0")
	}
	body, err := a.readInput(*file)
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook verify: %v\n", err)
		return 1
	}
	now := a.now()
	err = signature.Verify(body, *sig, *ts, now, *tolerance, *secret)
	if err != nil {
		fmt.Fprintf(a.stdout, "invalid: %s%s\n", signature.Explain(err, body, *sig, *ts, now, *tolerance, *secret), verifyHint(err, body, *sig, *ts))
		return 1
	}
	if *ts == "" {
		fmt.Fprintf(a.stdout, "valid: HMAC-SHA256 of the %d-byte body\n", len(body))
	} else {
		fmt.Fprintf(a.stdout, "valid: HMAC-SHA256 of timestamp %s and the %d-byte body\n", *ts, len(body))
	}
	return 0
}

// verifyHint adds to an explanation what to change on the command line.
func verifyHint(err error, body []byte, sig, ts string) string {
	if !errors.Is(err, signature.ErrInvalid) {
		return ""
	}
	switch {
	case len(body) == 0:
		return "; nothing was read from standard input (or -file): pass the delivery's raw body, for example < payload.json"
	case ts == "" && strings.HasPrefix(strings.TrimSpace(sig), "sha256="):
		return "; pass that header's value with -timestamp"
	}
	return ""
}
