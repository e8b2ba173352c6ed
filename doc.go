// Package eachhook receives each::labs prediction and workflow execution
// webhooks: a [Handler] verifies each request, answers the sender at once,
// and runs the callback registered for the outcome once per prediction id
// (or workflow execution id) on a worker goroutine, retrying it when it
// fails. An acknowledged delivery whose callback will not run by itself
// becomes a dead letter, never dropped silently. The package imports only
// the standard library; package eachhooktest signs requests for your tests.
//
//	h, err := eachhook.New(eachhook.WithSecret(os.Getenv("EACHHOOK_SECRET")))
//	if err != nil { ... }
//	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error { ... })
//	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error { ... })
//	mux.Handle("POST /webhooks/prediction", h)
//	mux.Handle("GET /healthz", h.Health())
//	... serve; at exit, after the http.Server's own Shutdown:
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	h.Shutdown(ctx)
//
// examples/nethttp in the repository is the whole program; the README
// describes every form the sender uses and how a body is routed.
//
// # Configuration
//
// [New] takes every setting as an [Option] and validates them together.
// Callbacks are registered before serving starts ([Handler.Start] or the
// first request); a registration after that panics. [Handler.Start] is
// optional with the default in-memory queue and required with a queue set
// by [WithQueue].
//
// # Verifying
//
// The Handler accepts X-Webhook-Signature, the hex HMAC-SHA256 of the raw
// body (or, with X-Webhook-Timestamp, of "<timestamp>.<body>", the
// timestamp within [WithTolerance]), compared in constant time with any
// secret of [WithSecret] or of a [SecretLookup]. The plain X-Webhook-Secret
// header, which the each::labs documentation describes today, is accepted
// only with [WithLegacySecretHeader]. Package
// [github.com/eachhook/eachhook/signature] signs and verifies with the
// same code; its sentinel errors tell every failure apart.
//
// # Responses
//
// Checks run in this order; a request gets the answer of the first that
// holds, and is logged at the level given ("-": not logged):
//
//	not POST                                    405, Allow: POST          -
//	Shutdown has begun                          503, Retry-After          -
//	a WithQueue queue not started               503, Retry-After          Error
//	WithWorkers callbacks past their timeout    503, Retry-After          Warn
//	Content-Type present and not JSON           415                       Warn
//	body larger than WithMaxBodyBytes           413                       -
//	body cannot be read                         400                       -
//	signature missing, malformed or wrong,
//	  timestamp out of tolerance, or an
//	  authentication header repeated            401                       Warn
//	secret lookup failed                        503, Retry-After          Error
//	not a JSON object, or its kind and id
//	  cannot be told                            400                       Info
//	non-terminal status (created, starting,
//	  processing, queued, running)              200, nothing runs         Debug
//	dedupe store failed                         503, Retry-After          Error
//	id already accepted (duplicate)             200, nothing runs         Debug
//	status unknown, or terminal with no
//	  callback registered                       200, kept as dead letter  Error
//	  ... and the dead-letter store failed      503, Retry-After          Error
//	queue full                                  503, Retry-After          Warn
//	queue refused the delivery                  503, Retry-After          Error
//	first delivery of an id                     200, its callback runs    -
//
// A 503 releases the id's claim: nothing was accepted, and the sender's
// retry is processed.
//
// # Delivery guarantees
//
// The first verified delivery of an id claims it in the [Store] for a lease
// as long as its callback's longest run with retries; once the callback
// succeeded the id is done for [WithDedupeTTL] (24h). Copies within the
// lease or the TTL run nothing. The default [MemoryStore] deduplicates
// within one process; replicas need a shared store (module redisstore or
// pgstore).
//
// A callback that returns an error, panics, calls [runtime.Goexit] or
// outlives [WithCallbackTimeout] is run again, up to the attempts of
// [WithRetry]; [AttemptFromContext] tells the attempt. Callbacks may run
// more than once for one id: make them idempotent. The attempts of one
// delivery run one at a time: a retry starts only after the previous
// attempt returned. A callback that ignores its context holds its worker
// past its timeout; while [WithWorkers] of them do, deliveries get 503 and
// [Handler.Health] names them. With the in-memory
// queue an acknowledged delivery lives in memory until its callback
// finished, so a crash loses it (at most once across a crash); with a
// durable [Queue] ([WithQueue], module durable) it is committed before the
// 200 and runs again after a crash (at least once).
//
// # Dead letters
//
// A delivery whose callback failed on every attempt ("callback_failed"),
// or whose status is unknown ("unknown_status") or has no callback
// ("no_callback"), becomes a [DeadLetter], logged at Error and passed to
// [WithErrorHandler]. [Handler.DeadLetters] lists them, [Handler.Replay]
// runs one again, [Handler.Discard] deletes one. They live in a
// [DeadLetterStore] ([WithDeadLetters]; by default at most 1000 in
// memory), or in a [DeadLetterQueue] such as the durable queue. A dead
// letter leaves its id claimable: any successful run of the id, resend or
// Replay, deletes it; of concurrent Replays and resends, also on replicas
// sharing the stores, one runs and a Replay that lost returns
// [ErrInProgress] ([ErrNoDeadLetter] for a DeadLetterQueue's). None is dropped silently: a failed write before the 200
// is answered 503; one after it is retried from memory (at most 1000)
// until the store takes it, else lost at Shutdown with an Error log and
// observe.Observer.DeadLetterLost.
//
// # Monitoring
//
// [WithObserver] installs an observe.Observer, told of every outcome;
// module eachhookotel implements it with OpenTelemetry. [Handler.Health]
// answers 503 while the Handler cannot accept deliveries, and for 10 s after
// a claim, queue insert or dead-letter write failed (see the README).
package eachhook
