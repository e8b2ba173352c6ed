package durable

// This file owns the job of a delivery: its args as stored, and the worker
// that runs it through the Handler's Runner.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// deliveryArgs is the job of one delivery, stored as River's args:
//
//	{"id": <prediction id>, "status": <status>, "webhook": <raw body, base64>,
//	 "webhook_claim": <claim token>, "webhook_accepted_at": <RFC 3339 time>}
//
// Webhook is []byte so that encoding/json stores it base64-encoded: the
// exact bytes survive, which a json.RawMessage in a jsonb column would
// not. The id and the status come first whichever order a reader shows
// the keys in (as written, alphabetically, or Postgres's jsonb order,
// shortest first), so that River UI's job list, which shows the start
// of each job's args, shows which prediction each job is.
type deliveryArgs struct {
	ID      string `json:"id" river:"unique"`
	Status  string `json:"status"`
	Webhook []byte `json:"webhook"`
	// Claim is the token of the Handler's dedupe claim (eachhook.Delivery.Claim),
	// given back to the Runner so that it completes that claim.
	Claim string `json:"webhook_claim,omitempty"`
	// AcceptedAt is when the Handler accepted the delivery, by its clock
	// (eachhook.Delivery.AcceptedAt), from which it measures the wait.
	AcceptedAt time.Time `json:"webhook_accepted_at,omitzero"`
}

// Kind implements river.JobArgs.
func (deliveryArgs) Kind() string { return "eachhook_delivery" }

// UnmarshalJSON also reads the args of a job stored by an earlier version,
// {"id", "status", "body", "claim"}, which have no accept time.
func (a *deliveryArgs) UnmarshalJSON(b []byte) error {
	type current deliveryArgs // without this method
	var v struct {
		current
		Body  []byte `json:"body"`
		Claim string `json:"claim"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*a = deliveryArgs(v.current)
	if a.Webhook == nil {
		a.Webhook, a.Claim = v.Body, v.Claim
	}
	return nil
}

func newDeliveryArgs(d eachhook.Delivery) deliveryArgs {
	return deliveryArgs{ID: d.ID, Status: d.Status, Webhook: d.Body, Claim: d.Claim, AcceptedAt: d.AcceptedAt}
}

func (a deliveryArgs) delivery() eachhook.Delivery {
	return eachhook.Delivery{ID: a.ID, Status: a.Status, Body: a.Webhook, Claim: a.Claim, AcceptedAt: a.AcceptedAt}
}

// jobTx is River's client bound to one transaction of the Queue's
// database (postgres.go, sqlite.go).
type jobTx interface {
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	// lockState returns the state of job id ("" when there is none) and
	// keeps other transactions from changing it until this one ends.
	lockState(ctx context.Context, id int64) (rivertype.JobState, error)
}

// clearTimeout bounds the deletion of an id's dead letters after a success.
const clearTimeout = 10 * time.Second

// deliveryWorker runs a delivery's callbacks through the Handler that
// started the Queue.
type deliveryWorker struct {
	river.WorkerDefaults[deliveryArgs]
	r           atomic.Pointer[eachhook.Runner]
	jobs        riverJobs // the Queue's client, set by newQueue
	log         *slog.Logger
	maxAttempts int // Config.MaxAttempts: a job allowed more was replayed
	// lastErr holds the error of a job's last attempt (job id -> error)
	// until River has stored the job as discarded and the Queue reports it.
	lastErr sync.Map
}

// Timeout implements river.Worker: the job timeout is the Handler's
// callback timeout, one setting for both.
func (w *deliveryWorker) Timeout(*river.Job[deliveryArgs]) time.Duration {
	if r := w.r.Load(); r != nil {
		return (*r).CallbackTimeout()
	}
	return 0 // unreachable: the client starts only from Queue.Start
}

// Work implements river.Worker: one attempt of the callback. A returned
// error makes River retry, or discard the job after its last attempt. A
// success deletes the id's discarded jobs: the event is handled, so it is
// no longer a dead letter.
func (w *deliveryWorker) Work(ctx context.Context, job *river.Job[deliveryArgs]) error {
	r := w.r.Load()
	if r == nil { // unreachable: the client starts only from Queue.Start
		return errors.New("durable: queue not started by a Handler")
	}
	d := job.Args.delivery()
	if job.MaxAttempts > w.maxAttempts {
		// River raised its attempts: a replay, whose wait started when it
		// was replayed, which the job does not record.
		d.AcceptedAt = time.Time{}
	}
	err := (*r).Run(ctx, d, job.Attempt)
	switch {
	case err == nil:
		w.clearDeadLetters(ctx, job.JobRow)
	case job.Attempt >= job.MaxAttempts:
		w.lastErr.Store(job.ID, err)
	}
	return err
}

// clearDeadLetters deletes the discarded jobs of job's prediction id (its
// unique key). A failure is logged: the dead letter then stays listed,
// and its Replay deletes it without a run, a delivery of the id having
// completed.
func (w *deliveryWorker) clearDeadLetters(ctx context.Context, job *rivertype.JobRow) {
	if len(job.UniqueKey) == 0 {
		return // unreachable: every delivery job is unique by id
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), clearTimeout)
	defer cancel()
	_, err := w.jobs.JobDeleteMany(ctx, river.NewJobDeleteManyParams().
		Kinds(deliveryArgs{}.Kind()).
		States(rivertype.JobStateDiscarded).
		Where("unique_key = @unique_key", river.NamedArgs{"unique_key": job.UniqueKey}))
	if err != nil {
		w.log.Error("durable: a delivery succeeded but its dead letter could not be deleted", "job", job.ID, "err", err)
	}
}

// reportDiscarded calls [eachhook.Runner.GiveUp] for each job this client
// discarded after its last attempt. It waits for River's event, sent once
// the discarded state is committed: until then the job still counts as a
// duplicate, and releasing the Handler's claim earlier would let a
// redelivery be acknowledged as a duplicate of a job about to be
// discarded. It returns when River closes events.
func (w *deliveryWorker) reportDiscarded(r eachhook.Runner, events <-chan *river.Event) {
	for ev := range events {
		job := ev.Job
		if job == nil || job.State != rivertype.JobStateDiscarded || job.Kind != (deliveryArgs{}).Kind() {
			continue
		}
		var args deliveryArgs
		if err := json.Unmarshal(job.EncodedArgs, &args); err != nil {
			continue // not ours: every deliveryArgs decodes
		}
		var err error
		if v, ok := w.lastErr.LoadAndDelete(job.ID); ok {
			err = v.(error)
		} else if n := len(job.Errors); n > 0 {
			err = errors.New(job.Errors[n-1].Error)
		}
		r.GiveUp(context.Background(), args.delivery(), job.Attempt, err)
	}
}
