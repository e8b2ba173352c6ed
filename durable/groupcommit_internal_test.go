package durable

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

// fakeInserts is the insert of a groupCommit under test: each call is a
// batch, held until the test releases it, and answers duplicates for the
// ids in stored.
type fakeInserts struct {
	mu      sync.Mutex
	batches [][]string // ids of each call, in order
	stored  map[string]bool
	fail    error
	started chan int      // receives the batch number when a call starts
	release chan struct{} // each call waits for one value
}

func newFakeInserts() *fakeInserts {
	return &fakeInserts{stored: map[string]bool{}, started: make(chan int, 100), release: make(chan struct{}, 100)}
}

func (f *fakeInserts) insert(_ context.Context, _ []context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	f.mu.Lock()
	ids := make([]string, len(params))
	seen := map[string]bool{}
	for i, p := range params {
		ids[i] = p.Args.(deliveryArgs).ID
		if seen[ids[i]] {
			f.mu.Unlock()
			return nil, errors.New("unique key appears more than once in batch")
		}
		seen[ids[i]] = true
	}
	f.batches = append(f.batches, ids)
	n := len(f.batches)
	f.mu.Unlock()
	f.started <- n
	<-f.release
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	res := make([]*rivertype.JobInsertResult, len(ids))
	for i, id := range ids {
		res[i] = &rivertype.JobInsertResult{Job: &rivertype.JobRow{}, UniqueSkippedAsDuplicate: f.stored[id]}
		f.stored[id] = true
	}
	return res, nil
}

type enqueueResult struct {
	id     string
	queued bool
	err    error
}

// enqueueAsync starts g.enqueue of id and returns where its result goes.
func enqueueAsync(ctx context.Context, g *groupCommit, id string) <-chan enqueueResult {
	ch := make(chan enqueueResult, 1)
	go func() {
		q, err := g.enqueue(ctx, deliveryArgs{ID: id})
		ch <- enqueueResult{id, q, err}
	}()
	return ch
}

// pendingCalls is how many calls wait for the next batch.
func (g *groupCommit) pendingCalls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

func requireNoResult(t *testing.T, chs ...<-chan enqueueResult) {
	t.Helper()
	for _, ch := range chs {
		select {
		case r := <-ch:
			t.Fatalf("%s answered before its batch was decided: %+v", r.id, r)
		default:
		}
	}
}

func TestGroupCommitBatchesWhatArrivesDuringAnInsert(t *testing.T) {
	f := newFakeInserts()
	g := &groupCommit{insert: f.insert, opts: &river.InsertOpts{}}
	ctx := context.Background()

	a := enqueueAsync(ctx, g, "a")
	require.Equal(t, 1, <-f.started)
	b := enqueueAsync(ctx, g, "b")
	c := enqueueAsync(ctx, g, "c")
	c2 := enqueueAsync(ctx, g, "c") // a copy of c in the same batch
	a2 := enqueueAsync(ctx, g, "a") // a copy of a, whose insert is in flight
	require.Eventually(t, func() bool { return g.pendingCalls() == 4 }, 5*time.Second, time.Millisecond)
	requireNoResult(t, a, b, c, c2, a2)

	f.release <- struct{}{}
	require.Equal(t, enqueueResult{"a", true, nil}, <-a)
	require.Equal(t, 2, <-f.started)
	requireNoResult(t, b, c, c2, a2)
	f.release <- struct{}{}
	got := map[string][]bool{}
	for _, ch := range []<-chan enqueueResult{b, c, c2, a2} {
		r := <-ch
		require.NoError(t, r.err)
		got[r.id] = append(got[r.id], r.queued)
	}
	require.ElementsMatch(t, []bool{true}, got["b"])
	require.ElementsMatch(t, []bool{true, false}, got["c"], "one job for two copies in one batch")
	require.Equal(t, []bool{false}, got["a"], "a copy of a committed id is a duplicate")
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.batches, 2)
	require.Equal(t, []string{"a"}, f.batches[0], "a lone call is inserted at once, alone")
	require.ElementsMatch(t, []string{"b", "c", "a"}, f.batches[1])
}

func TestGroupCommitFailedBatchAnswersEveryCall(t *testing.T) {
	f := newFakeInserts()
	f.fail = errors.New("disk full")
	g := &groupCommit{insert: f.insert, opts: &river.InsertOpts{}}
	ctx := context.Background()

	first := enqueueAsync(ctx, g, "x")
	<-f.started
	var batch []<-chan enqueueResult
	for _, id := range []string{"p", "q", "q", "r"} {
		batch = append(batch, enqueueAsync(ctx, g, id))
	}
	require.Eventually(t, func() bool { return g.pendingCalls() == 4 }, 5*time.Second, time.Millisecond)
	f.release <- struct{}{}
	<-f.started
	f.release <- struct{}{}
	for _, ch := range append(batch, first) {
		r := <-ch
		require.ErrorIs(t, r.err, f.fail, r.id)
		require.False(t, r.queued, r.id)
	}
}

func TestGroupCommitCallReturnsWhenItsContextEnds(t *testing.T) {
	f := newFakeInserts()
	g := &groupCommit{insert: f.insert, opts: &river.InsertOpts{}}
	ctx, cancel := context.WithCancel(context.Background())
	a := enqueueAsync(ctx, g, "a")
	<-f.started
	b := enqueueAsync(ctx, g, "b")
	require.Eventually(t, func() bool { return g.pendingCalls() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, (<-a).err, context.Canceled, "its insert still in flight")
	require.ErrorIs(t, (<-b).err, context.Canceled)
	f.release <- struct{}{}
	// b's request is gone: its batch is not inserted at all.
	require.NoError(t, g.close(context.Background()))
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, [][]string{{"a"}}, f.batches)
	_, err := g.enqueue(context.Background(), deliveryArgs{ID: "c"})
	require.ErrorIs(t, err, errShutdown)
}
