package durable

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// maxBatch bounds the jobs of one group commit, so that a burst does not
// build one huge transaction that every request in it waits for.
const maxBatch = 256

// insertTimeout bounds one group commit. The requests of a batch share
// its insert, so it cannot run on any one request's context; a request
// whose own context ends first stops waiting (and is answered 503) while
// the others keep theirs.
const insertTimeout = 30 * time.Second

// groupCommit inserts the jobs of concurrent [Queue.EnqueueOnce] calls
// together: a call that finds no insert in flight inserts its job at
// once, in a transaction of its own; the calls that arrive while a
// transaction is in flight are inserted together, in one transaction with
// River's batch insert, as soon as it has finished. No call waits for a
// timer: a lone request costs one transaction, as before, and under load
// a commit (an fsync on SQLite) is shared by every request that arrived
// during the previous one.
type groupCommit struct {
	// insert inserts params[i] with ctxs[i], under ctx: [Queue.insertBatch].
	insert func(ctx context.Context, ctxs []context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	opts   *river.InsertOpts

	mu      sync.Mutex
	pending []*insertCall // calls waiting for the next batch
	busy    bool          // a batch is being committed; pending is non-empty only while busy
	idle    chan struct{} // closed when busy turns false; nil while not busy
	closed  bool          // refuse new calls (after Shutdown)
}

// insertCall is one EnqueueOnce waiting for its batch.
type insertCall struct {
	ctx    context.Context
	args   deliveryArgs
	done   chan struct{} // closed once queued and err are set
	queued bool
	err    error
}

// enqueue inserts args's job, or finds it stored, and returns once the
// transaction holding it committed (queued true when it inserted the
// job), once that transaction failed (err), or when ctx ends.
func (g *groupCommit) enqueue(ctx context.Context, args deliveryArgs) (bool, error) {
	c := &insertCall{ctx: ctx, args: args, done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false, errShutdown
	}
	g.pending = append(g.pending, c)
	lead := !g.busy
	if lead {
		g.busy = true
		g.idle = make(chan struct{})
	}
	g.mu.Unlock()
	if lead {
		// The batches run on a goroutine of their own, so that a call
		// whose context ends returns at once whichever call started them.
		go func() {
			for g.commitNext() {
			}
		}()
	}
	select {
	case <-c.done:
		return c.queued, c.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// commitNext commits the pending calls (up to maxBatch) in one
// transaction and reports whether more are pending; if none are, the
// group is idle again. Only the goroutine that holds busy calls it.
func (g *groupCommit) commitNext() bool {
	g.mu.Lock()
	n := min(len(g.pending), maxBatch)
	batch := g.pending[:n:n]
	g.pending = append([]*insertCall(nil), g.pending[n:]...)
	g.mu.Unlock()
	g.commit(batch)
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) > 0 {
		return true
	}
	g.busy = false
	close(g.idle)
	g.idle = nil
	return false
}

// commit inserts one job per id of batch in one transaction and answers
// every call of batch. Copies of one id make one job: the first copy
// reports whether River inserted it, the others report a duplicate, and
// all are answered once the transaction is decided. A failed transaction
// stores none of the batch's jobs and answers its error to every call.
// Each job is inserted with the values of its own call's context (its
// request's trace, for River's middleware) and the batch's deadline.
func (g *groupCommit) commit(batch []*insertCall) {
	firstOf := make(map[string]int, len(batch)) // id -> index in params
	params := make([]river.InsertManyParams, 0, len(batch))
	owner := make([]*insertCall, 0, len(batch)) // owner[i] inserted params[i]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			// Its request is gone and answered 503: store nothing for it.
			c.err = err
			close(c.done)
			continue
		}
		if _, dup := firstOf[c.args.ID]; dup {
			continue
		}
		firstOf[c.args.ID] = len(params)
		params = append(params, river.InsertManyParams{Args: c.args, InsertOpts: g.opts})
		owner = append(owner, c)
	}
	if len(params) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
	deadline, _ := ctx.Deadline()
	ctxs := make([]context.Context, len(owner))
	for i, c := range owner {
		var cancelJob context.CancelFunc
		ctxs[i], cancelJob = context.WithDeadline(context.WithoutCancel(c.ctx), deadline)
		defer cancelJob()
	}
	res, err := g.insert(ctx, ctxs, params)
	cancel()
	if err == nil && len(res) != len(params) {
		err = fmt.Errorf("river returned %d results for %d jobs", len(res), len(params))
	}
	if err != nil {
		err = fmt.Errorf("durable: insert: %w", err)
	}
	for _, c := range batch {
		select {
		case <-c.done:
			continue // answered above
		default:
		}
		i := firstOf[c.args.ID]
		switch {
		case err != nil:
			c.err = err
		case owner[i] == c:
			c.queued = !res[i].UniqueSkippedAsDuplicate
		}
		close(c.done)
	}
}

// close refuses further calls and waits until the batches in flight are
// committed, or ctx ends.
func (g *groupCommit) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	idle := g.idle
	g.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// insertBatch inserts params[i] with ctxs[i] in one transaction, so that
// River's insert middleware (otelriver's span, the trace it puts in the
// job's metadata) sees each job with its own request's context. On SQLite
// the last job is inserted after that transaction, in one of its own:
// River wakes its producer only after an insert outside a transaction of
// the caller's, and there is no LISTEN/NOTIFY to do it. Without plugins
// nothing sees the contexts, and the batch is one River InsertMany (one
// statement, where one per job took about twice the time).
func (q *Queue) insertBatch(ctx context.Context, ctxs []context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	if !q.plugins {
		return q.client.InsertMany(ctx, params)
	}
	res := make([]*rivertype.JobInsertResult, 0, len(params))
	n := len(params) // inserted in the transaction
	if q.wakeAfterTx {
		n--
	}
	if n > 0 {
		err := q.inTx(ctx, func(tx jobTx) error {
			for i := range n {
				r, err := tx.InsertMany(ctxs[i], params[i:i+1])
				if err != nil {
					return err
				}
				res = append(res, r...)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if n < len(params) {
		r, err := q.client.InsertMany(ctxs[n], params[n:])
		if err != nil {
			return nil, err
		}
		res = append(res, r...)
	}
	return res, nil
}
