package durable

import (
	"context"

	"github.com/riverqueue/river"
)

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

// InsertJob inserts a job of args through q's River client with q's
// insert options, for the external tests (a job of an earlier version).
func InsertJob(ctx context.Context, q *Queue, args river.JobArgs) error {
	_, err := q.client.InsertMany(ctx, []river.InsertManyParams{{Args: args, InsertOpts: &q.opts}})
	return err
}

// StoredArgs returns the args JSON of q's delivery jobs, oldest first,
// for the external tests.
func StoredArgs(ctx context.Context, q *Queue) ([]string, error) {
	res, err := q.client.JobList(ctx, river.NewJobListParams().Kinds(deliveryArgs{}.Kind()).OrderBy(river.JobListOrderByID, river.SortOrderAsc))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(res.Jobs))
	for i, j := range res.Jobs {
		out[i] = string(j.EncodedArgs)
	}
	return out, nil
}

// ClientID is the River client id of q, which names its liveness lock on
// Postgres, for the external tests.
func ClientID(q *Queue) string { return q.client.ID() }

// LockSessionSettings opens a session as q's liveness lock does and
// returns its server-side keepalive settings, for the external tests.
func LockSessionSettings(ctx context.Context, q *Queue) (map[string]string, error) {
	l := &liveness{pool: q.liveness.pool, id: q.liveness.id + "_settings", heldSQL: q.liveness.heldSQL} // a lock of its own
	conn, err := l.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	out := map[string]string{}
	for _, name := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"} {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}
