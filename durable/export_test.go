package durable

// PendingInserts is how many EnqueueOnce calls of q wait for the next
// group commit, for the external tests.
func PendingInserts(q *Queue) int { return q.inserts.pendingCalls() }

// InsertInFlight reports whether a group commit of q is under way with no
// call waiting for the next one, for the external tests.
func InsertInFlight(q *Queue) bool {
	g := &q.inserts
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.busy && len(g.pending) == 0
}

// ClientID is the River client id of q, which names its liveness lock on
// Postgres, for the external tests.
func ClientID(q *Queue) string { return q.client.ID() }
