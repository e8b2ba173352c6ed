// Package inbox is the seam through which the reconciler of package
// eachloop reaches an eachhook.Handler: it hands the Handler outcomes it
// learned by polling the each::labs API, so that they go through the same
// dedupe store and queue as a verified webhook, and it reports its own
// errors through the Handler's error hook. Users never call it: it keeps
// these operations off the Handler's public face.
//
// Package eachhook registers the accessor in its init, as gRPC's internal
// package does for its cross-package hooks.
package inbox

import (
	"context"
	"errors"
)

// Inbox is what the reconciler needs of a Handler.
type Inbox interface {
	// Deliver runs body, a JSON object in one of the webhook's forms,
	// through the Handler's dedupe store and queue as a verified webhook
	// is (no signature is checked). It returns (true, nil) when the
	// outcome was accepted and its callback will run, (false, nil) when
	// there is nothing to run (a duplicate, a non-terminal status, or a
	// status kept as a dead letter at once), and an error when nothing was accepted: one matching
	// eachhook.ErrMalformedPayload for a body that cannot be routed,
	// [ErrNotQueued] when the queue refused it or the Handler is not
	// serving, or the Store's error.
	Deliver(ctx context.Context, body []byte) (accepted bool, err error)
	// ReportError logs err and passes it to the WithErrorHandler
	// function, if any, on the calling goroutine.
	ReportError(ctx context.Context, err error)
}

// ErrNotQueued is matched by the error of [Inbox.Deliver] when the Handler
// could not take the outcome now (it shuts down, its queue is not started,
// or the queue refused it). Nothing was accepted; try again later.
var ErrNotQueued = errors.New("eachhook: delivery not queued")

// CodeCancelled is the [eachhook.Failure] code of a cancelled
// prediction, whether the Handler received it with status "cancelled" or
// the reconciler polled it; package eachloop exports it.
const CodeCancelled = "CANCELLED"

var of func(h any) Inbox

// Register sets the accessor [Of] uses. Package eachhook calls it once,
// from its init.
func Register(f func(h any) Inbox) { of = f }

// Of returns the Inbox of h, which must be an *eachhook.Handler (nil
// otherwise).
func Of(h any) Inbox {
	if of == nil {
		return nil
	}
	return of(h)
}
