package eachloop

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

// ErrGaveUp is matched by the [*GiveUpError] the reconciler reports when a
// prediction has no outcome at the horizon.
var ErrGaveUp = errors.New("eachloop: no outcome within the horizon")

// GiveUpError reports a prediction the reconciler stopped polling at the
// horizon without an outcome. It is logged and passed to the Loop's error
// hook ([WithErrorHandler]), and matches [ErrGaveUp].
type GiveUpError struct {
	// ID is the prediction id.
	ID string
	// CreatedAt is when the prediction was created.
	CreatedAt time.Time
	// Horizon is the horizon that passed.
	Horizon time.Duration
	// Status is the status the last poll reported, such as "processing",
	// or "" when the last poll failed.
	Status string
	// Err is the last poll's or dispatch's error, nil when the last poll
	// answered with a status that is not terminal.
	Err error
}

func (e *GiveUpError) Error() string {
	s := fmt.Sprintf("eachloop: no outcome for prediction %s within %v of its creation", e.ID, e.Horizon)
	if e.Status != "" {
		s += fmt.Sprintf(" (last status %q)", e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns [ErrGaveUp] and the last error.
func (e *GiveUpError) Unwrap() []error { return []error{ErrGaveUp, e.Err} }

// entry is a pending expectation the reconciler polls.
type entry struct {
	Expectation
	due time.Time
}

// Run reconciles the expectations until ctx ends, dispatching outcomes to
// h, which should have been built with [Loop.Store] around its dedupe
// store (without it, an expectation whose webhook was accepted is marked
// done only by its first poll) and usually [Loop.SecretLookup]. Every scan
// interval it lists the expectations pending for longer than the grace
// period and polls each, then again after a wait that doubles (see
// [WithPollWait]) until the prediction finishes.
//
// When four or more predictions are due at once, one sweep of the
// organisation's executions list (GET /v1/executions, filtered by status
// success, error and cancelled, from the oldest due prediction's creation
// to now, every page of 100) settles many of them per request: a listed
// success or cancellation, or a failure listed with its error object, is
// dispatched from the list, and a due prediction no listing holds is
// taken to be still running and waits as after a poll. It falls back to
// GET /v1/prediction/{id} for each prediction the sweep cannot settle: a
// failure listed without its error (polled for its code and logs), every
// prediction when a listing failed or would take more requests than there
// are due predictions, and a prediction at its horizon. An outcome
// settled from the list carries its output and metrics (run_time and
// execution_cost) but no input or logs, which the list does not have. An
// API without the list (404) is polled one prediction at a time for the
// rest of the Run. Each outcome, polled or listed, is handled so:
//
//   - "success" is dispatched to OnSuccess and "error" to OnFailed with
//     the Handler's own dedupe and queue, after verification, so the dedupe store runs one callback
//     whether the webhook or the poll comes first;
//   - "cancelled", for which the sender sends no webhook, is dispatched to
//     OnFailed with error code [eachhook.CodeCancelled], or dropped with
//     [WithDropCancelled];
//   - an answer 429 or 5xx, or any other failure, is retried after the
//     wait, or after the answer's Retry-After when that is longer.
//
// The callback's Raw is a webhook body made of the API's answer: its
// "input", "output", "logs", "metrics" and "urls", the prediction's "id",
// "status" set to the webhook's ("success" or "failed"), the polled status
// in "polled_status" and,
// for a failure with an error code, "error": {"error_code",
// "error_message"} as in the webhook's exec_id form, so that
// [eachhook.Failure] carries the code in Code and the message in Logs
// (when the API sent no logs). An expectation whose outcome was
// accepted (by a webhook or a poll) is marked done and no longer polled.
// At the horizon ([WithHorizon]) the reconciler gives up: it marks the
// expectation done and reports a [*GiveUpError]: it logs it at Error
// level and passes it to the function of [WithErrorHandler], if any.
//
// Run returns ctx.Err() when ctx ends, after the polls in progress have
// returned, or [ErrRunning] at once if another Run of l is active. Stop Run
// before shutting h down; a poll's outcome that h refuses while shutting
// down stays pending and is polled again by the next Run. Several
// processes may each run a reconciler over one shared store of
// expectations: they poll the same predictions, and the shared dedupe
// store still runs one callback.
func (l *Loop) Run(ctx context.Context, h *eachhook.Handler) error {
	if h == nil {
		return errors.New("eachloop: nil handler")
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	l.sw = sweepState{}
	defer func() {
		l.mu.Lock()
		clear(l.sched)
		l.mu.Unlock()
	}()

	var nextScan time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := l.cfg.now()
		if !now.Before(nextScan) {
			l.scan(ctx, now)
			nextScan = now.Add(l.cfg.scanInterval)
		}
		l.pollDue(ctx, h, now)

		wake := nextScan
		l.mu.Lock()
		for _, e := range l.sched {
			if e.due.Before(wake) {
				wake = e.due
			}
		}
		l.mu.Unlock()
		if d := wake.Sub(l.cfg.now()); d > 0 {
			if err := l.cfg.sleep(ctx, d); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// scan adds the expectations pending past the grace period to the
// schedule, due at once, and drops those no longer pending (done by
// another process).
func (l *Loop) scan(ctx context.Context, now time.Time) {
	pending, err := l.exp.Pending(ctx, now.Add(-l.cfg.grace))
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error("eachloop: listing pending expectations failed", "err", err)
		}
		return
	}
	seen := make(map[string]bool, len(pending))
	var finished []string
	l.mu.Lock()
	for _, e := range pending {
		seen[e.ID] = true
		if _, running := l.claimed[e.ID]; running {
			continue // its callback runs in this process
		}
		if _, ok := l.finished[e.ID]; ok {
			// Its callback finished here, before the expectation was
			// recorded or while this scan listed it.
			finished = append(finished, e.ID)
			continue
		}
		if _, ok := l.sched[e.ID]; !ok {
			l.sched[e.ID] = &entry{Expectation: e, due: now}
		}
	}
	for id := range l.sched {
		if !seen[id] {
			delete(l.sched, id)
		}
	}
	// An id not pending, and claimed or finished longer ago than the
	// horizon, needs no memory here: this bounds both sets (a claim taken
	// here but run to its end by another replica's queue is completed
	// there, never here).
	for id, at := range l.claimed {
		if !seen[id] && now.Sub(at) > l.cfg.horizon {
			delete(l.claimed, id)
		}
	}
	for id, at := range l.finished {
		if !seen[id] && now.Sub(at) > l.cfg.horizon {
			delete(l.finished, id)
		}
	}
	l.mu.Unlock()
	for _, id := range finished {
		l.settle(ctx, id)
	}
}

// pollDue polls every scheduled expectation due at now, at most
// concurrency at a time, and returns when all polls have.
func (l *Loop) pollDue(ctx context.Context, h *eachhook.Handler, now time.Time) {
	l.mu.Lock()
	var due []*entry
	for _, e := range l.sched {
		if !e.due.After(now) {
			due = append(due, e)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(due, func(a, b *entry) int {
		return cmp.Or(a.due.Compare(b.due), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	if len(due) >= sweepMin && !l.sw.off {
		due = l.sweep(ctx, h, due, now)
	}
	sem := make(chan struct{}, l.cfg.concurrency)
	var wg sync.WaitGroup
	for _, e := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.poll(ctx, h, e)
		})
	}
	wg.Wait()
}

// poll polls e once and dispatches, reschedules or gives up on it.
func (l *Loop) poll(ctx context.Context, h *eachhook.Handler, e *entry) {
	p, err := l.client.GetPrediction(ctx, e.ID)
	if ctx.Err() != nil {
		return // Run is ending; the next Run polls e again
	}
	status := ""
	if err == nil {
		status = p.Status
		if p.Terminal() {
			var done bool
			done, err = l.dispatch(ctx, h, e.ID, p)
			if done {
				return
			}
			if err != nil {
				status = ""
			}
		}
	}
	if err != nil {
		l.log.Warn("eachloop: poll failed", "id", e.ID, "err", err)
	}
	l.reschedule(ctx, h, e, status, err)
}

// reschedule schedules the next poll of e, whose last poll reported
// status (not terminal) or failed with err, or gives up on it at the
// horizon.
func (l *Loop) reschedule(ctx context.Context, h *eachhook.Handler, e *entry, status string, err error) {
	now := l.cfg.now()
	deadline := e.CreatedAt.Add(l.cfg.horizon)
	if !now.Before(deadline) {
		l.settle(ctx, e.ID)
		gerr := &GiveUpError{ID: e.ID, CreatedAt: e.CreatedAt, Horizon: l.cfg.horizon, Status: status, Err: err}
		l.reportError(ctx, gerr)
		return
	}
	wait := min(max(now.Sub(e.CreatedAt.Add(l.cfg.grace)), l.cfg.minWait), l.cfg.maxWait)
	var ae *eachlabs.APIError
	if errors.As(err, &ae) && ae.RetryAfter > wait {
		wait = ae.RetryAfter
	}
	l.mu.Lock()
	// A webhook may have settled e meanwhile: then it stays unscheduled.
	if l.sched[e.ID] == e {
		e.due = now.Add(wait)
		if e.due.After(deadline) {
			e.due = deadline
		}
	}
	l.mu.Unlock()
}

// dispatch hands the terminal prediction p, polled as id, to h. It marks
// id done itself only for a cancelled prediction it drops: otherwise the
// tracking store does once the callback finished (see Loop.Store), and
// until then id stays scheduled, so that an outcome whose callback never
// finished (its process died) is delivered again once its claim's lease
// ran out. done reports that id needs no more polling.
func (l *Loop) dispatch(ctx context.Context, h *eachhook.Handler, id string, p *eachlabs.Prediction) (done bool, err error) {
	if p.Status == eachlabs.StatusCancelled && l.cfg.dropCancelled {
		l.log.Info("eachloop: dropped a cancelled prediction", "id", id)
		l.settle(ctx, id)
		return true, nil
	}
	body, err := webhookBody(id, p)
	if err != nil {
		return false, err
	}
	accepted, err := h.Deliver(ctx, body)
	if err != nil {
		return false, fmt.Errorf("eachloop: dispatching the polled outcome: %w", err)
	}
	if accepted {
		l.log.Info("eachloop: dispatched a polled outcome", "id", id, "status", p.Status)
	}
	// Accepted, or a duplicate of a delivery claimed in this process: the
	// tracking store took id off the schedule when it was claimed and
	// settles it when its callback finishes. A duplicate of a claim made
	// elsewhere (another replica, or a process that died before its
	// lease ran out) stays scheduled and is polled again after the usual
	// wait.
	l.mu.Lock()
	_, pending := l.sched[id]
	_, finished := l.finished[id]
	l.mu.Unlock()
	if pending && finished {
		l.settle(ctx, id) // its callback finished here before it was expected
		return true, nil
	}
	return !pending, nil
}

// webhookBody turns a terminal poll answer for prediction id into a
// webhook payload (see Loop.Run). Only the documented members are copied,
// so that an unexpected one (such as "workflow_id") cannot change how the
// Handler routes the body.
func webhookBody(id string, p *eachlabs.Prediction) ([]byte, error) {
	m := map[string]any{}
	var raw map[string]json.RawMessage
	if json.Unmarshal(p.Raw, &raw) == nil {
		for _, k := range []string{"input", "output", "logs", "metrics", "urls"} {
			if v, ok := raw[k]; ok {
				m[k] = v
			}
		}
	}
	m["id"] = id
	m["polled_status"] = p.Status
	setError := func(code, msg string) {
		m["error"] = map[string]string{"error_code": code, "error_message": msg}
		if p.Logs == "" && msg != "" {
			m["logs"] = msg
		}
	}
	switch p.Status {
	case eachlabs.StatusSuccess:
		m["status"] = eachhook.StatusSuccess
	case eachlabs.StatusError, eachlabs.StatusFailed:
		m["status"] = eachhook.StatusFailed
		if code, msg := p.Failure(); code != "" || msg != "" {
			setError(code, msg)
		}
	case eachlabs.StatusCancelled:
		m["status"] = eachhook.StatusFailed
		setError(eachhook.CodeCancelled, "the prediction was cancelled")
	default:
		return nil, fmt.Errorf("eachloop: status %q is not terminal", p.Status)
	}
	return json.Marshal(m)
}
