package durable

// PendingInserts is how many EnqueueOnce calls of q wait for the next
// group commit, for the external tests.
func PendingInserts(q *Queue) int { return q.inserts.pendingCalls() }
