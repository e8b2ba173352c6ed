// Package eachhook receives each::labs prediction and workflow execution
// webhooks: it verifies each request's signature, answers the sender at
// once, and runs the callback registered for the outcome once per
// prediction id (or workflow execution id), on a worker goroutine: at most
// once across a crash with the default in-memory queue and store, at least
// once with a durable queue, or with a shared store and the reconciler of
// package eachloop (see Delivery guarantees). An acknowledged delivery
// whose callback fails on every attempt, or whose status has no callback,
// becomes a dead letter: never dropped silently.
//
//	h, err := eachhook.New(eachhook.WithSecret(os.Getenv("EACHHOOK_SECRET")))
//	if err != nil { ... }
//	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
//		url, err := s.URL()
//		...
//	})
//	h.OnFailed(...)
//	mux.Handle("POST /webhooks/prediction", h)
//	mux.Handle("GET /healthz", h.Health())
//	... serve; at exit, with a fresh context (the signal's is cancelled),
//	after the http.Server's own Shutdown:
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	h.Shutdown(ctx)
//
// examples/nethttp in the repository is the whole program.
//
// The package imports only the standard library. Package eachhooktest
// signs requests for your own tests.
//
// # Configuration
//
// [New] takes every setting as an [Option] and validates them together.
// Callbacks are registered with [Handler.OnSuccess], [Handler.OnFailed],
// [Handler.OnWorkflowCompleted] and [Handler.OnWorkflowFailed] before
// serving starts: serving starts with [Handler.Start] or the first
// request, and a registration after that panics, as errgroup.SetLimit
// does, because the queue already decides with the callbacks it has.
// [Handler.Start] starts the queue outside any request; it is optional
// with the default in-memory queue (the first request starts it) and
// required with a queue set by [WithQueue].
//
// # Verifying
//
// The sender signs a delivery with HMAC-SHA256 keyed by the prediction's
// webhook_secret and sends the lowercase hex digest in X-Webhook-Signature,
// optionally prefixed with "sha256=". Without X-Webhook-Timestamp the signed
// bytes are the raw body; with it they are "<timestamp>.<raw body>" and the
// timestamp must lie within the tolerance ([WithTolerance], default 15
// minutes) of the current time in both directions. That timestamped form
// (C, "sha256=" with X-Webhook-Timestamp) is not publicly documented: no
// version of the each::labs documentation shows it; it is accepted because
// accepting it costs nothing. The form the documentation describes today
// (B) signs nothing and sends the secret itself in X-Webhook-Secret: enable
// it with [WithLegacySecretHeader]. "eachhook history" tells which form an
// account receives. The Handler verifies the
// raw bytes as received, compares in constant time, and accepts any of the
// secrets given with [WithSecret] (for rotation) or returned by a
// [SecretLookup] (for per-prediction secrets). [New] refuses to build a
// Handler without a secret unless [WithInsecureSkipVerification] says
// otherwise. Package [github.com/eachhook/eachhook/signature] signs and
// verifies outside the Handler, with the same code; every failure matches
// one of its sentinel errors, such as signature.ErrInvalid or
// signature.ErrTimestampOutOfRange.
//
// # Responses
//
// Checks run in this order; a request gets the answer of the first that
// fails:
//
//	not POST                                   405, Allow: POST
//	Shutdown has begun                         503, Retry-After
//	a WithQueue queue not started (Start)      503, Retry-After, logged
//	Content-Type present and not JSON          415
//	body larger than WithMaxBodyBytes          413
//	signature missing, malformed or wrong,
//	  timestamp out of tolerance, or an
//	  authentication header repeated           401
//	secret lookup failed                       503, Retry-After
//	not a JSON object, or its kind and id
//	  cannot be told (see below)               400
//	non-terminal status (created, starting,
//	  processing, queued, running)             200, no callback
//	unknown status, or terminal status with
//	  no callback registered for it            200, kept as a dead letter
//	dedupe store failed                        503, Retry-After
//	id already accepted (duplicate)            200, no callback
//	status unknown, or terminal with no
//	  callback registered                      200, dead letter, no callback
//	queue full or its insert failed
//	  (see [Queue])                            503, Retry-After, claim released
//	first delivery of an id                    200, then one callback
//
// # What the sender sends
//
// The each::labs documentation changed several times, and the live sender
// may use any of its forms, so one Handler accepts all of them:
//
//	spec page    {id, status: success|failed, output, input, metrics, logs}
//	             OnSuccess / OnFailed; ID from "id"
//	exec_id form {exec_id, flow_id, status: succeeded|failed, output, error}
//	             OnSuccess / OnFailed; ID from "exec_id"; on failure
//	             Failure.Code and Failure.Logs from the first output[i].error
//	             ({error_code, error_message} or a string), else "error"
//	workflow     {execution_id, workflow_id, status: completed|failed,
//	             started_at, inputs, step_outputs, output, error, error_cause}
//	             OnWorkflowCompleted / OnWorkflowFailed with a [WorkflowRun]
//
// Statuses are routed so: "success" and "succeeded" to OnSuccess; "failed"
// and "error" (the API's poll vocabulary) to OnFailed; "cancelled" and
// "canceled" to OnFailed with [Failure.Code] "CANCELLED"; for a workflow
// execution "completed" to OnWorkflowCompleted and "failed", "error",
// "cancelled", "canceled" to OnWorkflowFailed. "created", "starting",
// "processing", "queued" and "running" are not terminal: acknowledged,
// nothing runs (the observer's Ignored). Any other status is acknowledged
// and kept as a dead letter (reason "unknown_status"), as is a terminal
// status with no callback registered ("no_callback"): never dropped
// silently.
//
// Member names match as encoding/json matches them to a struct's fields:
// escapes decoded, then case-insensitively ("ID", "i\u0064", "Status" are
// "id" and "status"), the last of repeated members winning, so the id and
// status that route and deduplicate a delivery are the ones a callback
// reads from the same Raw bytes with encoding/json. Metrics decode as
// encoding/json decodes them: a value out of float64's range stays zero.
//
// A body's kind and id are decided by the first rule that holds: a
// non-empty "workflow_id" makes it a workflow execution identified by
// "execution_id" (400 if that is missing); else a non-empty "id" makes it a
// prediction with that id, even when "exec_id" is present too; else a
// non-empty "exec_id" makes it a prediction with that id; else a non-empty
// "execution_id" makes it a workflow execution. A body that matches no rule
// is answered 400 and logged ("cannot tell the kind of delivery"). Fields
// the Handler does not know are ignored, never a reason to refuse.
//
// Predictions are deduplicated by their id and workflow executions by
// [WorkflowKeyPrefix] + execution id ("workflow:abc"); a prediction id that
// itself begins with "workflow:" or "prediction:" is escaped as
// "prediction:" + id, so the two kinds cannot collide in a shared [Store]
// whatever the ids. That key is also what a [SecretLookup] receives and
// what logs and [CallbackError] report.
//
// Signatures: see Verifying. The plain X-Webhook-Secret header, which
// carries the secret itself and signs nothing, is refused (401) unless
// [WithLegacySecretHeader] is set; a request with a signature is decided by
// the signature alone. A request that repeats X-Webhook-Signature,
// X-Webhook-Timestamp or X-Webhook-Secret is refused (401, matching
// signature.ErrMalformed), whatever the order of the copies: the sender
// sends one of each. A redelivery (X-Webhook-Redelivery: true, signed
// again with a fresh timestamp) is handled like any delivery: it runs no
// callback if the id's callback already finished within the dedupe TTL or
// the id is a dead letter, and runs it if the claim's lease ran out
// without the callback finishing (its process died).
//
// # Delivery guarantees
//
// Duplicates: the first verified delivery of an id claims it in the
// [Store] as in progress for a lease as long as a callback's longest run
// with its retries (every attempt at [WithCallbackTimeout], every backoff
// of [WithRetry], and a minute: 4m03s by default); when
// the callback succeeds the id is marked done for the dedupe TTL
// ([WithDedupeTTL], default 24h). Any redelivery or concurrent copy within
// the lease, or within the TTL once done, is acknowledged without running
// a callback. The default [MemoryStore] deduplicates within one process;
// replicas behind a load balancer need a shared store.
//
// Acknowledgement: a 200 is written before the callback runs, as the
// sender asks. A 503 means nothing was accepted and the sender's retry
// will be processed.
//
// Callbacks: each accepted delivery runs its callback on a worker. A
// callback that returns an error, panics or calls [runtime.Goexit] (as
// t.FailNow does) is run again, up to the attempts of [WithRetry] (default
// 3, backoff 1s doubling); a panic or a Goexit is logged, ends that attempt
// only ([ErrCallbackPanic]) and the worker lives on; an attempt longer than
// [WithCallbackTimeout] (default 1 minute) fails too. When every attempt
// failed the delivery becomes a dead letter (reason "callback_failed", see
// Dead letters), reported to [WithErrorHandler], and its id stays claimed
// as done, so that a redelivery does not run it a second time; replaying
// the dead letter runs it again. Callbacks may run more than once for one
// id (retries, a lease that ran out, a replay): make them idempotent. Their context is not the request's; it is cancelled when
// [Handler.Shutdown] gives up waiting. [AttemptFromContext] tells the
// attempt number.
//
// What each outcome leads to, by mode:
//
//	                    memory queue             durable queue
//	callback fails      dead letter after the    dead letter (River's
//	  on every attempt  last attempt             discarded job)
//	status unknown, or  dead letter at once,     dead letter at once,
//	  no callback       before the 200           before the 200
//	process dies after  lost with the default    run again after the
//	  the 200, callback store (at most once);    restart, by any replica
//	  not finished      with a shared store the  (at least once)
//	                    claim's lease runs out
//	                    and a redelivery or the
//	                    reconciler's delivery
//	                    runs it (at least once
//	                    with package eachloop)
//
// Crashes: with the in-memory queue, a delivery acknowledged with 200 lives
// only in the process's memory until its callback finishes. If the process
// dies in between, the sender will not retry a delivery it saw
// acknowledged: with the default store the event is lost (at most once
// across a crash). With a shared store (Redis, Postgres) the dead
// process's claim expires after its lease, so the reconciler of package
// eachloop, which marks a prediction done only when its callback finished,
// delivers the polled outcome again and it runs: at least once. While the
// process lives, each accepted id runs its callback until an attempt
// succeeds or it becomes a dead letter. [Handler.Shutdown] drains the
// queue; deliveries it could not start before its deadline are logged by
// id, their claims released, and lost.
//
// Durable queues: [WithQueue] replaces the in-memory queue with another
// [Queue]. Module github.com/eachhook/eachhook/durable provides one on
// River (SQLite for one process, Postgres for many replicas): the
// verified body is committed to the database before the 200, and a
// process that restarts after a crash runs it again, so a delivery
// acknowledged with 200 is processed at least once, even across a crash.
//
// # Dead letters
//
// After the 200 the sender will not send a delivery again, so the Handler
// keeps every acknowledged delivery whose callback will not run by itself
// as a [DeadLetter] instead of dropping it: one whose callback failed on
// every attempt ("callback_failed"), and one whose terminal status has no
// callback registered ("no_callback", kept before the 200). Each is logged
// at error level and passed once to [WithErrorHandler].
// [Handler.DeadLetters] lists them, oldest first; [Handler.Replay] runs one
// again through the path of a delivery (dedupe claim, queue, retries; it
// may become a dead letter again) and removes it once its callback
// succeeded; [Handler.Discard] deletes one. They live in a
// [DeadLetterStore] set with [WithDeadLetters]; the default keeps at most
// 1000 in memory (and 64 MiB of bodies), evicting the oldest with an
// error log, and loses them with the process. Shared stores, on which any
// replica lists, replays and discards: module redisstore (DeadLetters),
// module pgstore (DeadLetters) and, in a SQLite file, module durable
// (SQLiteDeadLetters). Package deadlettertest is their conformance suite.
// With the durable queue, its discarded jobs are the dead letters of
// failed callbacks: the same three methods list, replay (River's job
// retry) and discard them, on any replica.
//
// # Writing a queue
//
// A [Queue] gets a [Runner] from [Handler.Start]: Runner.Run runs one
// attempt of a delivery's callback and marks the id done when it
// succeeded, Runner.GiveUp makes a delivery whose attempts are used up a
// dead letter. The Handler claims the id in its [Store] before Enqueue,
// passes the claim's token in [Delivery.Claim] (a queue that persists
// deliveries stores it) and releases the claim when Enqueue fails; a
// [DedupingQueue] also decides duplicates itself. Package queuetest is the conformance suite
// every queue of this project runs, as package storetest is for a
// [Store].
//
// # Monitoring
//
// [WithObserver] installs an observe.Observer (package
// [github.com/eachhook/eachhook/observe]), a set of functions the Handler
// calls at every outcome: each request refused (with an observe.Reason
// from a closed set), duplicate, ignored or accepted; each callback run
// started and finished; each delivery given up; each change of the queue's
// depth. Module github.com/eachhook/eachhook/eachhookotel implements it
// with OpenTelemetry metrics and traces. [Handler.Health] serves a health
// endpoint that answers 503 while the Handler cannot accept deliveries.
// [WithPayloadLogging] logs each verified body at debug level.
package eachhook
