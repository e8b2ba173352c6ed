package eachhook

// This file owns verification: every signing form (the signature headers
// of package signature and the plain X-Webhook-Secret header), the secret
// lookup, and the explanation of a refusal in the log.

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
)

// Refusals of the plain secret header. They match the signature errors so
// that they are counted with them: no signature at all, or a wrong
// credential.
var (
	errSecretHeaderRefused  = fmt.Errorf("%w: only X-Webhook-Secret, which needs WithLegacySecretHeader", signature.ErrMissing)
	errSecretHeaderMismatch = fmt.Errorf("%w: X-Webhook-Secret matches no secret", signature.ErrInvalid)
	// errRepeatedHeader refuses a request with more than one
	// X-Webhook-Signature, X-Webhook-Timestamp or X-Webhook-Secret header:
	// the sender sends one of each, and reading only the first would make
	// the answer depend on the headers' order.
	errRepeatedHeader = fmt.Errorf("%w: repeated authentication header", signature.ErrMalformed)
)

// repeatedAuthHeader reports whether r carries one of the authentication
// headers more than once.
func repeatedAuthHeader(r *http.Request) bool {
	for _, name := range [...]string{signature.Header, signature.HeaderTimestamp, signature.HeaderSecret} {
		if len(r.Header.Values(name)) > 1 {
			return true
		}
	}
	return false
}

// authenticate verifies the request. On error, the refusal's reason is
// reasonOf(err); an unverified id never leaves this function.
func (h *Handler) authenticate(r *http.Request, body []byte) error {
	switch {
	case h.cfg.insecure:
		return nil
	case repeatedAuthHeader(r):
		return errRepeatedHeader
	case strings.TrimSpace(r.Header.Get(signature.Header)) == "" && r.Header.Get(signature.HeaderSecret) != "":
		return h.checkSecretHeader(r, body)
	}
	return h.checkSignature(r, body)
}

// errLookup marks a failure of the SecretLookup (a 503, not a 401).
var errLookup = errors.New("eachhook: secret lookup failed")

// reasonOf tells the refusal reason of an authentication error.
func reasonOf(err error) observe.Reason {
	switch {
	case errors.Is(err, errLookup):
		return observe.ReasonLookup
	case errors.Is(err, signature.ErrMalformedTimestamp), errors.Is(err, signature.ErrTimestampOutOfRange):
		return observe.ReasonTimestamp
	}
	return observe.ReasonSignature
}

// checkSignature verifies X-Webhook-Signature (and X-Webhook-Timestamp)
// with the fixed secrets, then with the lookup's. When the lookup was
// needed it also returns the envelope it decoded, so that the body is
// decoded once. A body whose id cannot be read has no secret.
func (h *Handler) checkSignature(r *http.Request, body []byte) (err error) {
	sig, ts := r.Header.Get(signature.Header), r.Header.Get(signature.HeaderTimestamp)
	now := h.cfg.now()
	if h.verifier != nil {
		err = h.verifier.Verify(body, sig, ts, now, h.cfg.tolerance)
	} else {
		// No fixed secret: check the header's form and the timestamp
		// before reading the unverified body or calling the lookup.
		err = signature.Verify(body, sig, ts, now, h.cfg.tolerance)
	}
	if h.cfg.lookup == nil || !(errors.Is(err, signature.ErrInvalid) || errors.Is(err, signature.ErrNoSecret)) {
		return err
	}
	secrets, err := h.lookupSecrets(r, body)
	if err != nil {
		return err
	}
	return signature.Verify(body, sig, ts, now, h.cfg.tolerance, secrets...)
}

// checkSecretHeader authenticates a request that carries X-Webhook-Secret
// and no signature. Its results are those of checkSignature.
func (h *Handler) checkSecretHeader(r *http.Request, body []byte) error {
	if !h.cfg.legacy {
		return errSecretHeaderRefused
	}
	got := sha256.Sum256([]byte(r.Header.Get(signature.HeaderSecret)))
	if secretMatches(&got, h.cfg.secrets) {
		return nil
	}
	if h.cfg.lookup == nil {
		return errSecretHeaderMismatch
	}
	secrets, err := h.lookupSecrets(r, body)
	switch {
	case err != nil:
		return err
	case len(secrets) == 0:
		return signature.ErrNoSecret
	case !secretMatches(&got, secrets):
		return errSecretHeaderMismatch
	}
	return nil
}

// lookupSecrets decodes the unverified body for its id and asks the
// SecretLookup for that id's secrets. A body whose id cannot be read has
// no secret.
func (h *Handler) lookupSecrets(r *http.Request, body []byte) ([]string, error) {
	env, err := decodeEnvelope(body)
	if err != nil {
		return nil, signature.ErrNoSecret
	}
	secrets, err := h.cfg.lookup(r.Context(), env.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLookup, err)
	}
	return secrets, nil
}

// secretMatches reports whether got, the SHA-256 of a header value, is the
// digest of one of secrets. Comparing digests of equal length in constant
// time reveals neither a secret's content nor its length; every secret is
// compared, so the time does not tell which one matched.
func secretMatches(got *[sha256.Size]byte, secrets []string) bool {
	match := false
	for _, s := range secrets {
		if s == "" {
			continue
		}
		want := sha256.Sum256([]byte(s))
		match = hmac.Equal(got[:], want[:]) || match
	}
	return match
}

// explain says why an unverified delivery was refused, in the words of
// [signature.Explain]. With fixed secrets and a body of at most
// explainMaxBody bytes it also names the accident (a trailing newline,
// reformatted JSON, the other scheme) that explains a mismatch; the
// secrets a lookup returned are not kept, so for those it names only what
// needs no secret.
func (h *Handler) explain(r *http.Request, o outcome) string {
	var secrets []string
	if len(o.body) <= explainMaxBody {
		secrets = h.cfg.secrets
	}
	return signature.Explain(o.err, o.body, r.Header.Get(signature.Header), r.Header.Get(signature.HeaderTimestamp),
		h.cfg.now(), h.cfg.tolerance, secrets...)
}

// explainMaxBody bounds the body explain retries with the secrets: each
// refused request then costs at most four more HMACs of 64 KiB per secret.
const explainMaxBody = 64 << 10
