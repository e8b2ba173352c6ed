package eachloop

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

// sweepMin is how many predictions must be due at once for the
// reconciler to list executions instead of polling each: below it, the
// three listings would cost more than the polls.
const sweepMin = 4

// sweepSkew widens the listing's time window on both sides, for the
// difference between this clock and the API's.
const sweepSkew = 5 * time.Minute

// sweepPageSize is the page size of a listing: the API's maximum.
const sweepPageSize = 100

// sweepStatuses are the terminal statuses the reconciler lists. The
// executions list reports a failure as "error" (and may say "failed").
var sweepStatuses = []string{eachlabs.StatusSuccess, eachlabs.StatusError, eachlabs.StatusCancelled}

// sweepState is what a Run learnt about the executions list.
type sweepState struct {
	off  bool            // the API has no executions list: poll each prediction
	skip map[string]bool // statuses the API refused as a filter
}

// sweep settles as many of the due entries as it can from the
// organisation's executions list (GET /v1/executions, one listing per
// terminal status over a window from the oldest entry's creation to now,
// every page), and returns the entries that must be polled one by one
// with GET /v1/prediction/{id}:
//
//   - a success, a cancellation, or a failure whose listed output is an
//     error object is dispatched from its listing, without a poll;
//   - a failure listed without an error object is polled, for its error
//     code and logs;
//   - when every listing was read, an entry that none holds is still
//     running: it is rescheduled as a poll answering "processing" would
//     be, except at the horizon, where a poll decides;
//   - when a listing could not be read (an error, or more pages than there
//     are due entries, so that polling each would cost less), every entry
//     not settled is polled.
//
// The API answering 404 to the list turns sweeping off for the rest of
// the Run; a 400 for a status filter drops that status from later sweeps.
func (l *Loop) sweep(ctx context.Context, h *eachhook.Handler, due []*entry, now time.Time) []*entry {
	want := make(map[string]*entry, len(due))
	from := due[0].CreatedAt
	for _, e := range due {
		want[e.ID] = e
		if e.CreatedAt.Before(from) {
			from = e.CreatedAt
		}
	}
	opts := eachlabs.ExecutionListOptions{From: from.Add(-sweepSkew), To: now.Add(sweepSkew), Limit: sweepPageSize}
	budget := len(due)
	complete := true
	found := map[string]eachlabs.Execution{}
	for _, status := range sweepStatuses {
		if l.sw.skip[status] {
			continue
		}
		if budget <= 0 {
			complete = false
			break
		}
		opts.Status, opts.Offset = status, 0
		cut := false
		_, err := l.client.WalkExecutions(ctx, opts, func(p *eachlabs.ExecutionPage) bool {
			for _, x := range p.Executions {
				if _, ok := want[x.ID]; ok && x.Terminal() {
					found[x.ID] = x
				}
			}
			budget--
			switch {
			case len(found) == len(want):
				return false
			case budget <= 0:
				cut = true
				return false
			}
			return true
		})
		switch {
		case ctx.Err() != nil:
			return nil // Run is ending; the next Run polls them again
		case errors.Is(err, eachlabs.ErrNotFound):
			l.log.Warn("eachloop: the API has no executions list; polling each prediction", "err", err)
			l.sw.off = true
			return due
		case errors.Is(err, eachlabs.ErrBadRequest):
			l.log.Warn("eachloop: the executions list refused a status filter; it is no longer listed", "status", status, "err", err)
			if l.sw.skip == nil {
				l.sw.skip = map[string]bool{}
			}
			l.sw.skip[status] = true
			complete = false
		case err != nil:
			l.log.Warn("eachloop: listing executions failed; polling each prediction", "status", status, "err", err)
			complete = false
		case cut:
			complete = false
		}
		if len(found) == len(want) {
			break
		}
	}

	var rest []*entry
	settled := 0
	for _, e := range due {
		x, ok := found[e.ID]
		switch {
		case ok && settleable(&x):
			p := listedPrediction(&x)
			done, err := l.dispatch(ctx, h, e.ID, p)
			if err != nil {
				l.log.Warn("eachloop: dispatching a listed outcome failed", "id", e.ID, "err", err)
				l.reschedule(ctx, h, e, "", err)
				continue
			}
			if !done {
				// Claimed elsewhere and not finished yet: polled again
				// after the usual wait, as a poll's outcome would be.
				l.reschedule(ctx, h, e, p.Status, nil)
			}
			settled++
		case ok, !complete, !now.Before(e.CreatedAt.Add(l.cfg.horizon)):
			rest = append(rest, e)
		default:
			l.reschedule(ctx, h, e, eachlabs.StatusProcessing, nil)
		}
	}
	l.log.Debug("eachloop: swept the executions list", "due", len(due), "settled", settled, "to_poll", len(rest), "complete", complete)
	return rest
}

// settleable reports whether a listed execution carries enough to be
// dispatched without a poll.
func settleable(x *eachlabs.Execution) bool {
	switch x.Status {
	case eachlabs.StatusSuccess, eachlabs.StatusCancelled:
		return true
	}
	p := listedPrediction(x)
	code, msg := p.Failure()
	return code != "" || msg != ""
}

// listedPrediction turns a listed execution into the poll answer it
// stands for: its id, status ("failed" read as "error"), output and
// metrics (run_time as predict_time, execution_cost as cost). An output
// listed as a string holding a JSON array or object is read as that
// value. The listing has no input and no logs: a callback of an outcome
// settled this way sees neither.
func listedPrediction(x *eachlabs.Execution) *eachlabs.Prediction {
	status := x.Status
	if status == eachlabs.StatusFailed {
		status = eachlabs.StatusError
	}
	output := x.Output
	var s string
	if len(output) > 0 && output[0] == '"' && json.Unmarshal(output, &s) == nil && len(s) > 0 && (s[0] == '{' || s[0] == '[') && json.Valid([]byte(s)) {
		output = json.RawMessage(s)
	}
	m := map[string]any{
		"id": x.ID, "status": status,
		"metrics": map[string]float64{"predict_time": x.RunTime, "cost": x.ExecutionCost},
	}
	if len(output) > 0 {
		m["output"] = output
	}
	raw, _ := json.Marshal(m) // of plain values: cannot fail
	var p eachlabs.Prediction
	_ = p.UnmarshalJSON(raw)
	return &p
}
