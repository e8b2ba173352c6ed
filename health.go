package eachhook

// This file owns the health endpoint: whether the Handler can accept a
// delivery now.

import (
	"context"
	"net/http"
	"time"
)

// healthPingTimeout bounds the [Pinger.Ping] calls of one health check.
const healthPingTimeout = 2 * time.Second

// Reasons written by [Handler.Health] with a 503. They hold no character
// JSON would escape.
const (
	healthShuttingDown     = "shutting down"
	healthNotStarted       = "not started"
	healthQueueFull        = "queue full"
	healthStoreUnreachable = "store unreachable"
	healthQueueUnreachable = "queue unreachable"
)

// Health returns a handler for a health endpoint, to mount beside the
// webhook endpoint (for example at GET /healthz) for a load balancer or an
// uptime monitor. It answers GET and HEAD (405 otherwise) with a one-line
// JSON object:
//
//	200 {"status":"ok"}                                        accepting deliveries
//	503 {"status":"unavailable","reason":"shutting down"}      Shutdown has begun
//	503 {"status":"unavailable","reason":"not started"}        a WithQueue queue whose Start has not succeeded
//	503 {"status":"unavailable","reason":"queue full"}         every worker busy, in-memory queue full
//	503 {"status":"unavailable","reason":"store unreachable"}  the Store's Ping failed
//	503 {"status":"unavailable","reason":"queue unreachable"}  the Queue's Ping failed
//
// The store and the queue are pinged when they implement [Pinger], each
// bounded by 2 seconds; the error is logged, not sent.
func (h *Handler) Health() http.Handler {
	return http.HandlerFunc(h.serveHealth)
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	reason := h.unhealthy(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if reason == "" {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"status":"ok"}` + "\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"status":"unavailable","reason":"` + reason + `"}` + "\n"))
}

// unhealthy returns why the Handler cannot accept deliveries now, or "".
func (h *Handler) unhealthy(ctx context.Context) string {
	switch {
	case h.closing.Load():
		return healthShuttingDown
	case h.memQueue == nil && !h.started.Load():
		return healthNotStarted
	case h.memQueue != nil && h.memQueue.full():
		return healthQueueFull
	}
	if p, ok := h.store.(Pinger); ok {
		if err := ping(ctx, p); err != nil {
			h.log.Warn("eachhook: health check: store unreachable", "err", err)
			return healthStoreUnreachable
		}
	}
	if p, ok := h.queue.(Pinger); ok {
		if err := ping(ctx, p); err != nil {
			h.log.Warn("eachhook: health check: queue unreachable", "err", err)
			return healthQueueUnreachable
		}
	}
	return ""
}

func ping(ctx context.Context, p Pinger) error {
	ctx, cancel := context.WithTimeout(ctx, healthPingTimeout)
	defer cancel()
	return p.Ping(ctx)
}
