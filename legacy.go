package eachhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/http"
)

// WithLegacySecretHeader accepts deliveries that carry no signature but
// the secret itself in the legacy [HeaderSecret] (X-Webhook-Secret)
// header. The value is compared in constant time with each [WithSecret]
// secret and, when none matches and a [SecretLookup] is set, with the
// secrets it returns for the delivery's id.
//
// This form is weaker than a signature: the secret travels in every
// request, where anything that records headers can see it, and nothing
// protects the body from being changed. Enable it only while the account
// still sends it. A request that carries [HeaderSignature] is always
// decided by its signature, and X-Webhook-Secret is then ignored (newer
// senders send both). The header's value is never logged.
//
// Default: off, and a delivery authenticated only by X-Webhook-Secret is
// answered 401. It cannot be combined with [WithInsecureSkipVerification].
func WithLegacySecretHeader() Option {
	return func(c *config) error {
		c.legacy = true
		return nil
	}
}

// Refusals of the legacy header. They match the signature errors so that
// they are counted with them: no signature at all, or a wrong credential.
var (
	errSecretHeaderRefused  = fmt.Errorf("%w: only X-Webhook-Secret, which needs WithLegacySecretHeader", ErrMissingSignature)
	errSecretHeaderMismatch = fmt.Errorf("%w: X-Webhook-Secret matches no secret", ErrInvalidSignature)
)

// authenticateSecretHeader authenticates a request that carries
// X-Webhook-Secret and no signature. Its results are those of
// authenticate.
func (h *Handler) authenticateSecretHeader(r *http.Request, body []byte) (env envelope, envErr, err error) {
	if !h.cfg.legacy {
		return env, nil, errSecretHeaderRefused
	}
	got := sha256.Sum256([]byte(r.Header.Get(HeaderSecret)))
	if secretMatches(&got, h.cfg.secrets) {
		return env, nil, nil
	}
	if h.cfg.lookup == nil {
		return env, nil, errSecretHeaderMismatch
	}
	env, envErr = decodeEnvelope(body)
	if envErr != nil {
		return env, envErr, ErrNoSecret
	}
	secrets, lerr := h.cfg.lookup(r.Context(), env.ID)
	if lerr != nil {
		return env, nil, fmt.Errorf("%w: %v", errLookup, lerr)
	}
	if len(secrets) == 0 {
		return env, nil, ErrNoSecret
	}
	if !secretMatches(&got, secrets) {
		return env, nil, errSecretHeaderMismatch
	}
	return env, nil, nil
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
