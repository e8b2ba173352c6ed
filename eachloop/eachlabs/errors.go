package eachlabs

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors that the API's answers match with [errors.Is].
var (
	// ErrBadRequest is matched by a 400 answer: a parameter is invalid,
	// such as a malformed execution id.
	ErrBadRequest = errors.New("eachlabs: bad request")
	// ErrUnauthorized is matched by a 401 answer: the API key is missing,
	// invalid or expired.
	ErrUnauthorized = errors.New("eachlabs: unauthorized")
	// ErrForbidden is matched by a 403 answer: the key may not do this.
	ErrForbidden = errors.New("eachlabs: forbidden")
	// ErrNotFound is matched by a 404 answer: the resource does not exist.
	ErrNotFound = errors.New("eachlabs: not found")
	// ErrPaymentRequired is matched by a 402 answer: the account's
	// balance does not cover the request. Retrying does not help until
	// the balance is topped up.
	ErrPaymentRequired = errors.New("eachlabs: payment required")
	// ErrRateLimited is matched by a 429 answer.
	ErrRateLimited = errors.New("eachlabs: rate limited")
	// ErrConcurrencyLimit is matched, besides [ErrRateLimited], by a 429
	// answer to [Client.CreatePrediction]: the account already has as many
	// predictions in flight as its cap allows (10 with a balance of $10 or
	// less, 2 for metered models). The rejected request created nothing.
	// Backing off alone does not clear it: create again once one of the
	// predictions in flight has finished, or raise the cap.
	ErrConcurrencyLimit = errors.New("eachlabs: concurrency limit reached")
	// ErrServer is matched by any 5xx answer; retrying later may succeed.
	ErrServer = errors.New("eachlabs: server error")
	// ErrTimeout is matched by a request that got no complete answer
	// within the client's timeout (see [WithTimeout]) or its context's
	// deadline.
	ErrTimeout = errors.New("eachlabs: timeout")
)

// APIError is an answer from the API with a status code other than 2xx.
type APIError struct {
	// Method and Path identify the request, such as "GET" and
	// "/v1/webhooks/abc".
	Method, Path string
	// StatusCode is the HTTP status code of the answer.
	StatusCode int
	// Message is the API's error message (the "error" field of the
	// documented error body) or, for another body, its text.
	Message string
	// RetryAfter is how long the answer's Retry-After header asks to wait
	// before the next request (given in seconds or as an HTTP date); 0
	// when the header is absent or unreadable. Rate limits (429) and
	// server errors (5xx) may carry it.
	RetryAfter time.Duration
}

// Error returns a one-line description such as
// "eachlabs: GET /v1/webhooks/x: 404 Not Found: webhook not found".
func (e *APIError) Error() string {
	s := fmt.Sprintf("eachlabs: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is the sentinel error for e's status code, so
// that errors.Is(err, ErrNotFound) holds for a 404, and also
// [ErrConcurrencyLimit] for a 429 answer to POST /v1/prediction.
func (e *APIError) Is(target error) bool {
	if target == nil {
		return false
	}
	if target == ErrConcurrencyLimit {
		return e.StatusCode == http.StatusTooManyRequests && e.Method == http.MethodPost && e.Path == createPath
	}
	return target == e.sentinel()
}

func (e *APIError) sentinel() error {
	switch {
	case e.StatusCode == http.StatusBadRequest:
		return ErrBadRequest
	case e.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.StatusCode == http.StatusPaymentRequired:
		return ErrPaymentRequired
	case e.StatusCode == http.StatusForbidden:
		return ErrForbidden
	case e.StatusCode == http.StatusNotFound:
		return ErrNotFound
	case e.StatusCode == http.StatusTooManyRequests:
		return ErrRateLimited
	case e.StatusCode >= 500 && e.StatusCode <= 599:
		return ErrServer
	}
	return nil
}

// retryAfter reads a Retry-After header: a number of seconds, or an HTTP
// date counted from the answer's Date header (the local clock when there
// is none), so that a skewed local clock does not distort it.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	now := time.Now()
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	d := at.Sub(now)
	switch {
	case d <= 0:
		return 0
	case d > maxRetryAfter:
		return maxRetryAfter
	}
	return d
}

// maxRetryAfter caps a Retry-After, so that a broken header cannot stall a
// caller for days.
const maxRetryAfter = 24 * time.Hour
