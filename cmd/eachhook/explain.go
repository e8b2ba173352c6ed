package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eachhook/eachhook/signature"
)

// explain says in words a user can act on why a delivery failed
// verification with err, one of package eachhook's verification errors.
// When the signature does not match, it tries the usual accidents (a
// trailing newline, reformatted JSON, the other signing scheme) and names
// the one that explains the mismatch.
func explain(err error, body []byte, sig, ts string, now time.Time, tolerance time.Duration, secrets []string) string {
	switch {
	case errors.Is(err, signature.ErrMissing):
		return "no signature: the " + signature.Header + " header is missing or empty"
	case errors.Is(err, signature.ErrMalformed):
		return "malformed signature header: want 64 hex digits, optionally prefixed with \"sha256=\""
	case errors.Is(err, signature.ErrMalformedTimestamp):
		return fmt.Sprintf("malformed timestamp %q: want a Unix time in whole seconds", ts)
	case errors.Is(err, signature.ErrTimestampOutOfRange):
		sec, _ := strconv.ParseInt(ts, 10, 64)
		d := now.Sub(time.Unix(sec, 0)).Round(time.Second)
		if d >= 0 {
			return fmt.Sprintf("timestamp too old: signed %v ago, tolerance %v (a replay, or a delivery held up too long)", d, tolerance)
		}
		return fmt.Sprintf("timestamp too new: signed %v in the future, tolerance %v (check the clocks)", -d, tolerance)
	case errors.Is(err, signature.ErrNoSecret):
		return "no secret to verify with"
	case errors.Is(err, signature.ErrInvalid):
		msg := "signature does not match: the secret is wrong or the body was changed"
		if hint := mismatchHint(body, sig, ts, now, tolerance, secrets); hint != "" {
			msg += " (" + hint + ")"
		}
		return msg
	}
	return err.Error()
}

// mismatchHint looks for a change to the body or scheme under which the
// signature would match, and describes it; "" if none does.
func mismatchHint(body []byte, sig, ts string, now time.Time, tolerance time.Duration, secrets []string) string {
	matches := func(b []byte, ts string) bool {
		return signature.Verify(b, sig, ts, now, tolerance, secrets...) == nil
	}
	if ts != "" && matches(body, "") {
		return "it matches the body alone: the signer used the untimestamped scheme, so leave the timestamp out"
	}
	if trimmed := bytes.TrimRight(body, "\r\n"); len(trimmed) < len(body) && matches(trimmed, ts) {
		return "it matches the body without its trailing newline: a newline was added, as echo or an editor does"
	}
	if matches(append(bytes.Clone(body), '\n'), ts) {
		return "it matches the body with a trailing newline: the newline was removed"
	}
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil && !bytes.Equal(compact.Bytes(), body) && matches(compact.Bytes(), ts) {
		return "it matches the same JSON without whitespace: the body was reformatted; verify the raw bytes as received"
	}
	return ""
}
