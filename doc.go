// Package eachhook receives each::labs prediction and workflow execution
// webhooks: it verifies each request's signature, answers the sender at
// once, accepts each prediction id (or workflow execution id) once and
// runs the callback registered for its outcome on a worker goroutine.
// Callbacks are at least once: one that returns an error runs again, and
// with a durable queue one interrupted by a crash runs again after it;
// with the default in-memory queue a crash loses what had not run, so
// across a crash that mode is at most once (see Delivery guarantees).
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
// minutes) of the current time in both directions. The Handler verifies the
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
//	  or timestamp out of tolerance            401
//	secret lookup failed                       503, Retry-After
//	not a JSON object, or its kind and id
//	  cannot be told (see below)               400
//	status with no callback (see below), or
//	  no callback registered for it            200, logged, no callback
//	id already accepted (duplicate)            200, no callback
//	dedupe store failed, or queue full
//	  or its insert failed (see [Queue])       503, Retry-After, claim released
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
// [WorkflowKeyPrefix] + execution id ("workflow:abc"), so the two cannot
// collide in a shared [Store]; that key is also what a [SecretLookup]
// receives and what logs and [CallbackError] report.
//
// Signatures: see Verifying. The plain X-Webhook-Secret header, which
// carries the secret itself and signs nothing, is refused (401) unless
// [WithLegacySecretHeader] is set; a request with a signature is decided by
// the signature alone. A manual redelivery (X-Webhook-Redelivery: true, signed
// again with a fresh timestamp) is handled like any delivery: it runs no
// callback if the id's callback already finished within the dedupe TTL,
// and runs it again if every attempt had failed (the claim was released).
//
// # Delivery guarantees
//
// Duplicates: the first verified delivery of a prediction id claims the id
// in the [Store] for the dedupe TTL ([WithDedupeTTL], default 24h); any
// redelivery or concurrent copy of it within that time is acknowledged
// without running a callback. The default [MemoryStore] deduplicates within
// one process; replicas behind a load balancer need a shared store.
//
// Acknowledgement: a 200 is written before the callback runs, as the
// sender asks. A 503 means nothing was accepted and the sender's retry
// will be processed.
//
// Callbacks: each accepted delivery runs its callback on a worker. A
// callback that returns an error or panics is run again, up to the
// attempts of [WithRetry] (default 3, backoff 1s doubling); a panic is
// recovered and logged and the worker lives on. When every attempt failed
// the failure goes to [WithErrorHandler] and the id's claim is released,
// so that a manual redelivery is processed again. Callbacks may therefore
// run more than once for one id: make them idempotent. Their context is
// not the request's; it is cancelled when [Handler.Shutdown] gives up
// waiting. [AttemptFromContext] tells the attempt number.
//
// Crashes: with the in-memory queue, a delivery acknowledged with 200 lives
// only in the process's memory until its callback finishes. If the process
// dies in between, the event is lost: the sender will not retry a delivery
// it saw acknowledged. In-memory mode is therefore at most once across a
// crash; while the process lives, each accepted id runs its callback until
// an attempt succeeds or the attempts are used up. [Handler.Shutdown] drains the queue; deliveries it
// could not start before its deadline are logged by id and lost.
//
// Durable queues: [WithQueue] replaces the in-memory queue with another
// [Queue]. Module github.com/eachhook/eachhook/durable provides one on
// River (SQLite for one process, Postgres for many replicas): the
// verified body is committed to the database before the 200, and a
// process that restarts after a crash runs it again, so a delivery
// acknowledged with 200 is processed at least once, even across a crash.
//
// # Writing a queue
//
// A [Queue] gets a [Runner] from [Handler.Start]: Runner.Run runs one
// attempt of a delivery's callback, Runner.GiveUp ends a delivery whose
// attempts are used up. The Handler claims the id in its [Store] before
// Enqueue and releases it when Enqueue fails; a [DedupingQueue] also
// decides duplicates itself. Package queuetest is the conformance suite
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
