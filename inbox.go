package eachhook

// This file owns the reconciler's door into the Handler (see package
// internal/inbox): outcomes learned by polling enter at the admission step,
// after authentication, and errors reach the error hook.

import (
	"context"
	"fmt"

	"github.com/eachhook/eachhook/internal/inbox"
	"github.com/eachhook/eachhook/observe"
)

func init() {
	inbox.Register(func(v any) inbox.Inbox {
		if h, ok := v.(*Handler); ok && h != nil {
			return handlerInbox{h}
		}
		return nil
	})
}

type handlerInbox struct{ h *Handler }

// Deliver implements [inbox.Inbox]. Of the observer's functions, only
// those about callbacks and the queue are called for it.
func (in handlerInbox) Deliver(ctx context.Context, body []byte) (bool, error) {
	h := in.h
	env, err := decodeEnvelope(body)
	if err != nil {
		return false, err
	}
	if h.closing.Load() {
		return false, fmt.Errorf("%w: %w", inbox.ErrNotQueued, ErrShutdown)
	}
	if !h.started.Load() {
		if _, err := h.startLazily(); err != nil {
			return false, fmt.Errorf("%w: %w", inbox.ErrNotQueued, err)
		}
	}
	o := h.admit(ctx, env, body)
	switch {
	case o.result == accepted:
		return true, nil
	case o.result != refused:
		return false, nil
	case o.queueErr != nil:
		return false, fmt.Errorf("%w: %w", inbox.ErrNotQueued, o.queueErr)
	case o.reason == observe.ReasonStore:
		return false, o.err
	}
	return false, fmt.Errorf("%w: %s", inbox.ErrNotQueued, o.reason)
}

// ReportError implements [inbox.Inbox].
func (in handlerInbox) ReportError(ctx context.Context, err error) {
	if err == nil {
		return
	}
	in.h.log.Error("eachhook: reported error", "err", err)
	in.h.callErrorHandler(ctx, err)
}
