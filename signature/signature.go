// Package signature signs and verifies each::labs webhook deliveries: the
// hex HMAC-SHA256 of the raw body keyed with the webhook secret, in the
// X-Webhook-Signature header, optionally "sha256="-prefixed, and the
// timestamped form that signs "<timestamp>.<body>". It is what the
// eachhook Handler verifies with, for code that checks a delivery outside
// the Handler (a command, a test, another framework). Standard library
// only.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names the each::labs sender uses.
const (
	// Header carries the hex HMAC-SHA256 signature, optionally prefixed
	// with "sha256=".
	Header = "X-Webhook-Signature"
	// HeaderTimestamp carries the Unix time in seconds that newer senders
	// sign together with the body.
	HeaderTimestamp = "X-Webhook-Timestamp"
	// HeaderSecret carries the secret itself in plain text, the form the
	// each::labs documentation currently describes. The eachhook Handler
	// never logs it and accepts it only with WithLegacySecretHeader.
	HeaderSecret = "X-Webhook-Secret"
	// HeaderRedelivery is "true" on a manual redelivery.
	HeaderRedelivery = "X-Webhook-Redelivery"
)

// DefaultTolerance is how far a signed timestamp may lie from the current
// time, in either direction, unless told otherwise: the sender reuses one
// timestamp for every attempt of a delivery, the last about 12.5 minutes
// after the first.
const DefaultTolerance = 15 * time.Minute

// Verification errors. Every error returned by [Verifier.Verify] and
// [Verify] matches exactly one of them with [errors.Is].
var (
	// ErrMissing means the request carries no signature header.
	ErrMissing = errors.New("eachhook: missing signature")
	// ErrMalformed means the signature header is not 64 hex digits,
	// optionally prefixed with "sha256=".
	ErrMalformed = errors.New("eachhook: malformed signature")
	// ErrMalformedTimestamp means the timestamp header is not a Unix time
	// in whole seconds.
	ErrMalformedTimestamp = errors.New("eachhook: malformed timestamp")
	// ErrTimestampOutOfRange means the signed timestamp lies further from
	// the current time than the tolerance, in either direction.
	ErrTimestampOutOfRange = errors.New("eachhook: timestamp out of tolerance")
	// ErrInvalid means the signature is well formed but matches none of
	// the secrets: the secret is wrong or the body was changed.
	ErrInvalid = errors.New("eachhook: signature does not match")
	// ErrNoSecret means no secret is known for the delivery, so it cannot
	// be verified.
	ErrNoSecret = errors.New("eachhook: no secret for this delivery")
)

const sigPrefix = "sha256="

// Sign returns the lowercase hex HMAC-SHA256 signature the sender puts in
// [Header]. With timestamp == "" the signed bytes are the body (the
// original scheme); otherwise they are timestamp + "." + body, and the sender
// writes the result as "sha256=" + Sign(...).
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	var sum [sha256.Size]byte
	return hex.EncodeToString(macOf(mac, timestamp, body, &sum))
}

// macOf computes the signature of (timestamp, body) into sum. mac must be
// freshly created or reset.
func macOf(mac hash.Hash, timestamp string, body []byte, sum *[sha256.Size]byte) []byte {
	if timestamp != "" {
		// Stage "<timestamp>." in sum, which Sum overwrites afterwards,
		// so that the common case allocates nothing more.
		if len(timestamp) < len(sum) {
			n := copy(sum[:], timestamp)
			sum[n] = '.'
			mac.Write(sum[:n+1])
		} else {
			mac.Write([]byte(timestamp + "."))
		}
	}
	mac.Write(body)
	return mac.Sum(sum[:0])
}

// parseSignature decodes a signature header value into its 32 bytes.
func parseSignature(header string) ([sha256.Size]byte, error) {
	var sig [sha256.Size]byte
	v := strings.TrimSpace(header)
	if v == "" {
		return sig, ErrMissing
	}
	if len(v) > len(sigPrefix) && strings.EqualFold(v[:len(sigPrefix)], sigPrefix) {
		v = v[len(sigPrefix):]
	}
	if len(v) != hex.EncodedLen(sha256.Size) {
		return sig, ErrMalformed
	}
	if _, err := hex.Decode(sig[:], []byte(v)); err != nil {
		return sig, ErrMalformed
	}
	return sig, nil
}

// checkTimestamp validates a timestamp header value against now.
// An empty value means the untimestamped scheme and is always valid.
func checkTimestamp(ts string, now time.Time, tolerance time.Duration) error {
	if ts == "" {
		return nil
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 {
		return ErrMalformedTimestamp
	}
	// Compare in seconds so that no duration arithmetic can overflow.
	diff := now.Unix() - sec
	if diff < 0 {
		diff = -diff
	}
	if diff > int64(tolerance/time.Second) {
		return ErrTimestampOutOfRange
	}
	return nil
}

// Verifier checks signatures against a fixed set of secrets. It keeps one
// keyed HMAC per secret and reuses it, so a check costs one pass of SHA-256
// over the signed bytes. A Verifier is safe for concurrent use.
type Verifier struct {
	keys []*sync.Pool // one pool of *keyedMAC per secret
}

// keyedMAC is a keyed HMAC with a buffer for its sum, pooled together so
// that a verification allocates nothing.
type keyedMAC struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// NewVerifier returns a Verifier that accepts a signature made with any of
// secrets, which lets a secret be rotated without downtime. It returns an
// error if secrets is empty or any secret is "".
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("signature: NewVerifier needs at least one secret")
	}
	v := &Verifier{keys: make([]*sync.Pool, len(secrets))}
	for i, s := range secrets {
		if s == "" {
			return nil, errors.New("signature: empty secret")
		}
		key := []byte(s)
		v.keys[i] = &sync.Pool{New: func() any { return &keyedMAC{mac: hmac.New(sha256.New, key)} }}
	}
	return v, nil
}

// Verify reports whether signature (the value of [Header]) is valid
// for body and timestamp (the value of [HeaderTimestamp], "" when absent).
// A timestamp must lie within tolerance of now in both directions. The error
// is nil or matches one of the package's verification errors.
func (v *Verifier) Verify(body []byte, signature, timestamp string, now time.Time, tolerance time.Duration) error {
	want, err := parseSignature(signature)
	if err != nil {
		return err
	}
	if err := checkTimestamp(timestamp, now, tolerance); err != nil {
		return err
	}
	for _, p := range v.keys {
		k := p.Get().(*keyedMAC)
		k.mac.Reset()
		ok := hmac.Equal(macOf(k.mac, timestamp, body, &k.sum), want[:])
		p.Put(k)
		if ok {
			return nil
		}
	}
	return ErrInvalid
}

// Verify is like [Verifier.Verify] for secrets that are known only per
// delivery, such as per-prediction secrets. It keys a new HMAC for every
// secret on every call; prefer a [Verifier] for fixed secrets. The header
// and the timestamp are checked first: with no secrets it returns
// [ErrNoSecret] for a well-formed, timely signature.
func Verify(body []byte, signature, timestamp string, now time.Time, tolerance time.Duration, secrets ...string) error {
	want, err := parseSignature(signature)
	if err != nil {
		return err
	}
	if err := checkTimestamp(timestamp, now, tolerance); err != nil {
		return err
	}
	if len(secrets) == 0 {
		return ErrNoSecret
	}
	var sum [sha256.Size]byte
	for _, s := range secrets {
		if s == "" {
			continue
		}
		got := macOf(hmac.New(sha256.New, []byte(s)), timestamp, body, &sum)
		if hmac.Equal(got, want[:]) {
			return nil
		}
	}
	return ErrInvalid
}
