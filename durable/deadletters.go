package durable

// This file owns the Queue's dead letters (its discarded jobs), which the
// Handler lists, replays and discards through the Queue's DeadLetters,
// Replay and Discard, and the Queue's Ping.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// riverJobs is what the dead letters and Ping need of a river.Client
// (part of riverClient); every river.Client has it, whatever its driver.
type riverJobs interface {
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobDeleteMany(ctx context.Context, params *river.JobDeleteManyParams) (*river.JobDeleteManyResult, error)
}

// listPage is how many jobs one JobList call returns.
const listPage = 1000

// liveStates are the states in which a job of an id still stands for its
// delivery (River's default unique states): a job in one of them makes a
// discarded job of the same id obsolete.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStateCompleted,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}

func (q *Queue) jobs() riverJobs { return q.client }

// Ping implements [eachhook.Pinger]: one query of River's job table, so
// that [eachhook.Handler.Health] answers 503 "queue unreachable" while the
// database cannot be reached (or after Shutdown closed a SQLite file). On
// Postgres it returns [ErrLockLost] while the Queue has lost its liveness
// lock and claims no jobs.
func (q *Queue) Ping(ctx context.Context) error {
	if q.liveness != nil && q.liveness.lost.Load() {
		return ErrLockLost
	}
	if _, err := q.jobs().JobList(ctx, river.NewJobListParams().First(1)); err != nil {
		return fmt.Errorf("durable: ping: %w", err)
	}
	return nil
}

// discardedJob is a discarded job of this Queue with its decoded args.
type discardedJob struct {
	row  *rivertype.JobRow
	args deliveryArgs
}

// discarded returns this Queue's discarded delivery jobs (of its
// QueueName), of id only unless id is "", oldest first.
func (q *Queue) discarded(ctx context.Context, id string) ([]discardedJob, error) {
	params := river.NewJobListParams().
		Kinds(deliveryArgs{}.Kind()).
		Queues(q.opts.Queue).
		States(rivertype.JobStateDiscarded).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).
		First(listPage)
	var out []discardedJob
	for {
		res, err := q.jobs().JobList(ctx, params)
		if err != nil {
			return nil, err
		}
		for _, row := range res.Jobs {
			var args deliveryArgs
			if err := json.Unmarshal(row.EncodedArgs, &args); err != nil {
				continue // not a delivery of this package
			}
			if id == "" || args.ID == id {
				out = append(out, discardedJob{row: row, args: args})
			}
		}
		if len(res.Jobs) < listPage {
			break
		}
		params = params.After(res.LastCursor)
	}
	slices.SortStableFunc(out, func(a, b discardedJob) int {
		return cmp.Or(finalizedAt(a.row).Compare(finalizedAt(b.row)), cmp.Compare(a.row.ID, b.row.ID))
	})
	return out, nil
}

func finalizedAt(row *rivertype.JobRow) (t time.Time) {
	if row.FinalizedAt != nil {
		return *row.FinalizedAt
	}
	return row.CreatedAt
}

func (j discardedJob) deadLetter() eachhook.DeadLetter {
	dl := eachhook.DeadLetter{
		ID:       j.args.ID,
		Status:   j.args.Status,
		Reason:   "callback_failed",
		Body:     j.args.Webhook,
		Attempts: j.row.Attempt,
		At:       finalizedAt(j.row),
	}
	if n := len(j.row.Errors); n > 0 {
		dl.Err = j.row.Errors[n-1].Error
	}
	return dl
}

// DeadLetters returns the Queue's dead letters: its discarded delivery
// jobs (of its QueueName, on the database every replica shares), one per
// prediction id (the latest discarded, when an id was discarded more than
// once), oldest first, each with Reason "callback_failed", Attempts the
// job's attempt count and Err its last error. A job whose last attempt
// was cut short by a crash and that River's rescuer discarded is listed
// too. [eachhook.Handler.DeadLetters] calls it; call that instead.
func (q *Queue) DeadLetters(ctx context.Context) ([]eachhook.DeadLetter, error) {
	jobs, err := q.discarded(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("durable: dead letters: %w", err)
	}
	latest := make(map[string]int, len(jobs)) // id -> index in jobs
	for i, j := range jobs {
		latest[j.args.ID] = i
	}
	list := make([]eachhook.DeadLetter, 0, len(latest))
	for i, j := range jobs {
		if latest[j.args.ID] == i {
			list = append(list, j.deadLetter())
		}
	}
	slices.SortStableFunc(list, func(a, b eachhook.DeadLetter) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
	})
	return list, nil
}

// Replay makes the latest discarded job of id available again with
// River's JobRetry, which gives it one more attempt (River raises its
// MaxAttempts by one): it runs on whichever replica's worker takes it,
// and if that attempt fails it is discarded again, which reports it to
// the error handler again. The dead letter leaves [Queue.DeadLetters] as
// soon as the job is available again. Older discarded jobs of id are
// deleted. When a delivery of id was stored since (a job of id that is
// pending, running, retrying or completed within the retention), that
// job stands for the event: Replay deletes the discarded jobs of id instead and returns
// nil, without a second run. It returns [eachhook.ErrNoDeadLetter] when
// id has no discarded job: never discarded, discarded, or its dead
// letter gone because a run of id succeeded. The retry happens in a
// transaction that first locks the job and checks that it is still
// discarded, so of concurrent Replays of one dead letter, in one process
// or on replicas sharing the database, one makes it available and the
// others return [eachhook.ErrNoDeadLetter]: it runs once.
// [eachhook.Handler.Replay] calls it; call that instead.
func (q *Queue) Replay(ctx context.Context, id string) error {
	jobs, err := q.discarded(ctx, id)
	if err != nil {
		return fmt.Errorf("durable: replay %s: %w", id, err)
	}
	if len(jobs) == 0 {
		return eachhook.ErrNoDeadLetter
	}
	last := jobs[len(jobs)-1]
	live, err := q.hasLive(ctx, last.row)
	if err != nil {
		return fmt.Errorf("durable: replay %s: %w", id, err)
	}
	if live {
		return q.deleteDiscarded(ctx, id, jobs)
	}
	err = q.inTx(ctx, func(tx jobTx) error {
		state, err := tx.lockState(ctx, last.row.ID)
		if err != nil {
			return err
		}
		if state != rivertype.JobStateDiscarded {
			return eachhook.ErrNoDeadLetter // replayed or deleted meanwhile
		}
		_, err = tx.JobRetry(ctx, last.row.ID)
		return err
	})
	switch {
	case errors.Is(err, eachhook.ErrNoDeadLetter):
		return err
	case err != nil:
		// A delivery of id may have been stored between the check and the
		// retry: River's unique index then refuses the retry.
		if live, lerr := q.hasLive(ctx, last.row); lerr == nil && live {
			return q.deleteDiscarded(ctx, id, jobs)
		}
		return fmt.Errorf("durable: replay %s: %w", id, err)
	}
	if len(jobs) > 1 {
		if err := q.deleteDiscarded(ctx, id, jobs[:len(jobs)-1]); err != nil && !errors.Is(err, eachhook.ErrNoDeadLetter) {
			return err
		}
	}
	return nil
}

// hasLive reports whether a job other than row with row's unique key (so
// of the same prediction id) is in a live state.
func (q *Queue) hasLive(ctx context.Context, row *rivertype.JobRow) (bool, error) {
	if len(row.UniqueKey) == 0 {
		return false, nil
	}
	res, err := q.jobs().JobList(ctx, river.NewJobListParams().
		Kinds(deliveryArgs{}.Kind()).
		States(liveStates...).
		Where("unique_key = @unique_key", river.NamedArgs{"unique_key": row.UniqueKey}).
		First(1))
	if err != nil {
		return false, err
	}
	return len(res.Jobs) > 0, nil
}

// deleteDiscarded deletes jobs, if they are still discarded.
func (q *Queue) deleteDiscarded(ctx context.Context, id string, jobs []discardedJob) error {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.row.ID
	}
	res, err := q.jobs().JobDeleteMany(ctx, river.NewJobDeleteManyParams().IDs(ids...).States(rivertype.JobStateDiscarded))
	if err != nil {
		return fmt.Errorf("durable: delete dead letter %s: %w", id, err)
	}
	if len(res.Jobs) == 0 {
		return eachhook.ErrNoDeadLetter
	}
	return nil
}

// Discard deletes every discarded job of id (only while it is still
// discarded: a job another replica replayed meanwhile is left alone). It
// returns [eachhook.ErrNoDeadLetter] when id has none.
// [eachhook.Handler.Discard] calls it; call that instead.
func (q *Queue) Discard(ctx context.Context, id string) error {
	jobs, err := q.discarded(ctx, id)
	if err != nil {
		return fmt.Errorf("durable: discard %s: %w", id, err)
	}
	if len(jobs) == 0 {
		return eachhook.ErrNoDeadLetter
	}
	return q.deleteDiscarded(ctx, id, jobs)
}

var (
	_ eachhook.Pinger          = (*Queue)(nil)
	_ eachhook.DeadLetterQueue = (*Queue)(nil)
)
