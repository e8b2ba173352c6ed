package eachhook

import (
	"context"
	"net/http"
	"time"
)

// Pinger is an optional interface of a [Store] that can tell whether it is
// reachable. The health endpoint ([Handler.Health]) calls Ping when the
// store has it; Ping returns nil when the store can serve Claim and
// Release. [MemoryStore] does not implement it: it is always reachable.
type Pinger interface {
	Ping(ctx context.Context) error
}

// HealthPingTimeout bounds the [Pinger.Ping] of one health check.
const HealthPingTimeout = 2 * time.Second

// Health reasons written by [Handler.Health] with a 503.
const (
	HealthShuttingDown     = "shutting down"
	HealthQueueFull        = "queue full"
	HealthStoreUnreachable = "store unreachable"
)

// Health returns a handler for a health endpoint, to mount beside the
// webhook endpoint (for example at GET /healthz) for a load balancer or an
// uptime monitor. It answers GET and HEAD (405 otherwise) with a one-line
// JSON object:
//
//	200 {"status":"ok"}                                    accepting deliveries
//	503 {"status":"unavailable","reason":"shutting down"}  Shutdown has begun
//	503 {"status":"unavailable","reason":"queue full"}     every worker busy, queue full
//	503 {"status":"unavailable","reason":"store unreachable"}
//
// The last is answered when the store implements [Pinger] and its Ping,
// bounded by [HealthPingTimeout], fails; the error is logged, not sent.
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
	// The reasons are constants without characters JSON would escape.
	w.Write([]byte(`{"status":"unavailable","reason":"` + reason + `"}` + "\n"))
}

// unhealthy returns why the Handler cannot accept deliveries now, or "".
func (h *Handler) unhealthy(ctx context.Context) string {
	if h.closing.Load() {
		return HealthShuttingDown
	}
	if p, ok := h.queue.(*pool); ok && len(p.queue) >= cap(p.queue) {
		return HealthQueueFull
	}
	if p, ok := h.store.(Pinger); ok {
		ctx, cancel := context.WithTimeout(ctx, HealthPingTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			h.log.Warn("eachhook: health check: store unreachable", "err", err)
			return HealthStoreUnreachable
		}
	}
	return ""
}
