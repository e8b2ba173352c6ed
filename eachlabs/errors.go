package eachlabs

import (
	"errors"
	"fmt"
	"net/http"
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
	// ErrRateLimited is matched by a 429 answer.
	ErrRateLimited = errors.New("eachlabs: rate limited")
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
// that errors.Is(err, ErrNotFound) holds for a 404.
func (e *APIError) Is(target error) bool {
	return target != nil && target == e.sentinel()
}

func (e *APIError) sentinel() error {
	switch {
	case e.StatusCode == http.StatusBadRequest:
		return ErrBadRequest
	case e.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
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
