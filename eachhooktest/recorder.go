package eachhooktest

import (
	"context"
	"fmt"
	"sync"

	"github.com/eachhook/eachhook"
)

// Callback kinds of a [Run].
const (
	KindSuccess           = "success"            // OnSuccess
	KindFailed            = "failed"             // OnFailed
	KindWorkflowCompleted = "workflow_completed" // OnWorkflowCompleted
	KindWorkflowFailed    = "workflow_failed"    // OnWorkflowFailed
)

// Run is one callback run a [Recorder] saw end.
type Run struct {
	// Kind is the callback: KindSuccess, KindFailed, KindWorkflowCompleted
	// or KindWorkflowFailed.
	Kind string
	// ID is the delivery's id: the prediction id, or the workflow
	// execution's id.
	ID string
	// Attempt is the run's attempt number, 1 for the first
	// ([eachhook.AttemptFromContext]).
	Attempt int
	// Err is what the callback returned (an error means the Handler
	// retries it), or an error describing its panic.
	Err error
	// Exactly one of Success, Failure and Workflow is set, by Kind.
	Success  *eachhook.Success
	Failure  *eachhook.Failure
	Workflow *eachhook.WorkflowRun
}

// Recorder records the callback runs of a Handler so that a test can wait
// for them: [Recorder.Wait] returns once a number of runs have ended. It
// works the same whatever the Handler's queue: with the in-memory queue
// and with a durable one (whose Shutdown keeps the deliveries it did not
// start instead of running them, so waiting by calling Shutdown checks
// nothing there). Wrap your callbacks with [Recorder.Success],
// [Recorder.Failed] and [Recorder.Workflow], or let [Recorder.Register]
// register callbacks that only record. The zero Recorder is not ready:
// use [NewRecorder]. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	runs    []Run
	changed chan struct{} // closed and replaced at each run
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{changed: make(chan struct{})}
}

// Success returns an OnSuccess callback that runs fn (nil: does nothing
// and returns nil) and records the run when it ends.
func (r *Recorder) Success(fn func(context.Context, *eachhook.Success) error) func(context.Context, *eachhook.Success) error {
	return func(ctx context.Context, s *eachhook.Success) (err error) {
		defer r.record(Run{Kind: KindSuccess, ID: s.ID, Attempt: eachhook.AttemptFromContext(ctx), Success: s}, &err)
		if fn == nil {
			return nil
		}
		return fn(ctx, s)
	}
}

// Failed returns an OnFailed callback that runs fn (nil: does nothing and
// returns nil) and records the run when it ends.
func (r *Recorder) Failed(fn func(context.Context, *eachhook.Failure) error) func(context.Context, *eachhook.Failure) error {
	return func(ctx context.Context, f *eachhook.Failure) (err error) {
		defer r.record(Run{Kind: KindFailed, ID: f.ID, Attempt: eachhook.AttemptFromContext(ctx), Failure: f}, &err)
		if fn == nil {
			return nil
		}
		return fn(ctx, f)
	}
}

// Workflow returns an OnWorkflowCompleted or OnWorkflowFailed callback
// that runs fn (nil: does nothing and returns nil) and records the run
// when it ends, with the kind its status names.
func (r *Recorder) Workflow(fn func(context.Context, *eachhook.WorkflowRun) error) func(context.Context, *eachhook.WorkflowRun) error {
	return func(ctx context.Context, w *eachhook.WorkflowRun) (err error) {
		kind := KindWorkflowCompleted
		if w.Status == eachhook.StatusFailed {
			kind = KindWorkflowFailed
		}
		defer r.record(Run{Kind: kind, ID: w.ExecutionID, Attempt: eachhook.AttemptFromContext(ctx), Workflow: w}, &err)
		if fn == nil {
			return nil
		}
		return fn(ctx, w)
	}
}

// Register registers on h callbacks for every kind of delivery that only
// record. Call it before serving, like any registration.
func (r *Recorder) Register(h *eachhook.Handler) {
	h.OnSuccess(r.Success(nil))
	h.OnFailed(r.Failed(nil))
	h.OnWorkflowCompleted(r.Workflow(nil))
	h.OnWorkflowFailed(r.Workflow(nil))
}

// record appends run with the callback's result; a panic is recorded as
// an error and goes on up to the Handler, which recovers it.
func (r *Recorder) record(run Run, err *error) {
	p := recover()
	run.Err = *err
	if p != nil {
		run.Err = fmt.Errorf("eachhooktest: callback panicked: %v", p)
	}
	r.mu.Lock()
	r.runs = append(r.runs, run)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if p != nil {
		panic(p)
	}
}

// Wait returns nil once at least n runs have ended (retries count as runs
// of their own), or ctx.Err() if ctx ends first.
func (r *Recorder) Wait(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, changed := len(r.runs), r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("eachhooktest: %d of %d callback runs: %w", got, n, ctx.Err())
		}
	}
}

// Runs returns the runs that have ended, in the order they ended.
func (r *Recorder) Runs() []Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Run(nil), r.runs...)
}

// Counts returns how many runs of each kind have ended, retries and
// failed runs included, keyed by Kind; a kind with no run is absent, so a
// test can compare the whole map with the counts it expects.
func (r *Recorder) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts := map[string]int{}
	for _, run := range r.runs {
		counts[run.Kind]++
	}
	return counts
}

// IDs returns the ids of the runs that have ended and returned nil, in
// the order they ended.
func (r *Recorder) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, run := range r.runs {
		if run.Err == nil {
			ids = append(ids, run.ID)
		}
	}
	return ids
}
