package signature

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Explain says in words a user can act on why [Verify] (or
// [Verifier.Verify]) refused a delivery with err, given the same body,
// signature header, timestamp header, time and tolerance. It is what the
// eachhook Handler logs for a 401 and what the eachhook command prints.
//
// For a signature that does not match it also names the usual accident
// that explains it, when one does: a body that is empty, a sha256=
// signature without its timestamp, or, when secrets are given, a trailing
// newline added or removed, reformatted JSON, or the untimestamped scheme
// signed where a timestamp was sent. Trying those costs up to four more
// HMACs per secret. Without secrets only the first two are named.
//
// For a nil err it returns "valid". The result never contains a secret,
// the signature or the body. An error
// that wraps one of this package's errors with more words keeps them; any
// other error is returned as err.Error().
func Explain(err error, body []byte, signature, timestamp string, now time.Time, tolerance time.Duration, secrets ...string) string {
	msg := explain(err, body, signature, timestamp, now, tolerance, secrets)
	for _, sentinel := range sentinels {
		if errors.Is(err, sentinel) && err.Error() != sentinel.Error() {
			return msg + " (" + err.Error() + ")"
		}
	}
	return msg
}

// sentinels are the errors Explain knows.
var sentinels = []error{ErrMissing, ErrMalformed, ErrMalformedTimestamp, ErrTimestampOutOfRange, ErrNoSecret, ErrInvalid}

func explain(err error, body []byte, sig, ts string, now time.Time, tolerance time.Duration, secrets []string) string {
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, ErrMissing):
		return "no signature: the " + Header + " header is missing or empty"
	case errors.Is(err, ErrMalformed):
		return "malformed signature header: want 64 hex digits, optionally prefixed with \"sha256=\""
	case errors.Is(err, ErrMalformedTimestamp):
		return fmt.Sprintf("malformed timestamp %q: want a Unix time in whole seconds", shorten(ts, 40))
	case errors.Is(err, ErrTimestampOutOfRange):
		sec, _ := strconv.ParseInt(ts, 10, 64)
		d := now.Sub(time.Unix(sec, 0)).Round(time.Second)
		if d >= 0 {
			return fmt.Sprintf("timestamp too old: signed %v ago, tolerance %v (a replay, or a delivery held up too long)", d, tolerance)
		}
		return fmt.Sprintf("timestamp too new: signed %v in the future, tolerance %v (check the clocks)", -d, tolerance)
	case errors.Is(err, ErrNoSecret):
		return "no secret to verify with"
	case errors.Is(err, ErrInvalid):
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
	if len(secrets) > 0 {
		matches := func(b []byte, ts string) bool {
			return Verify(b, sig, ts, now, tolerance, secrets...) == nil
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
	}
	switch {
	case len(body) == 0:
		return "the body is empty: the signature covers the delivery's raw body"
	case ts == "" && strings.HasPrefix(strings.TrimSpace(sig), sigPrefix):
		return "a \"sha256=\" signature usually signs \"<timestamp>.<body>\", and no " + HeaderTimestamp + " was given"
	}
	return ""
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
