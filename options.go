package eachhook

// This file owns the configuration: every With… option, its default and
// its validation, applied once by New.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eachhook/eachhook/observe"
	"github.com/eachhook/eachhook/signature"
)

// ErrInvalidOption is matched by every error [New] returns for a
// configuration that cannot work.
var ErrInvalidOption = errors.New("eachhook: invalid option")

// Option configures a [Handler]. Options are applied in order by [New],
// which validates the result; a later option overrides an earlier one of the
// same kind, except [WithSecret], whose secrets accumulate.
type Option func(*config) error

// SecretLookup returns the secrets that may have signed the delivery of
// prediction id, for services that create each prediction with its own
// webhook_secret. id is the delivery's key: the prediction id, or for a
// workflow execution [WorkflowKeyPrefix] and the execution id. It returns
// (nil, nil) when id has no secret (the delivery is refused with 401) and an
// error only for a system failure (the delivery is answered 503 so that the
// sender retries). id comes from a body that is not yet verified: treat it
// as untrusted input.
type SecretLookup func(ctx context.Context, id string) ([]string, error)

// DefaultDedupeTTL is how long an accepted id is remembered unless
// [WithDedupeTTL] says otherwise; it is also the retention of every other
// record this project keeps per delivery (the reconciler's expectations,
// the adapters' rows), so that they are forgotten together.
const DefaultDedupeTTL = 24 * time.Hour

// Defaults of the other options, stated in their documentation.
const (
	defaultWorkers      = 4
	defaultQueueSize    = 1024
	defaultMaxBodyBytes = 10 << 20
	defaultMaxAttempts  = 3
	defaultBackoff      = time.Second
	defaultCallbackTime = time.Minute
)

type config struct {
	secrets         []string
	lookup          SecretLookup
	insecure        bool
	legacy          bool // accept the plain X-Webhook-Secret header
	workers         int
	queueSize       int
	maxBody         int64
	store           Store
	dedupeTTL       time.Duration
	tolerance       time.Duration
	logger          *slog.Logger
	now             func() time.Time
	maxAttempts     int
	backoff         time.Duration
	callbackTimeout time.Duration
	onError         func(ctx context.Context, err error)
	observer        observe.Observer
	logPayloads     bool
	queue           Queue
	deadLetters     DeadLetterStore
}

func defaultConfig() config {
	return config{
		workers:         defaultWorkers,
		queueSize:       defaultQueueSize,
		maxBody:         defaultMaxBodyBytes,
		dedupeTTL:       DefaultDedupeTTL,
		tolerance:       signature.DefaultTolerance,
		now:             time.Now,
		maxAttempts:     defaultMaxAttempts,
		backoff:         defaultBackoff,
		callbackTimeout: defaultCallbackTime,
	}
}

func (c *config) validate() error {
	switch {
	case c.insecure && (len(c.secrets) > 0 || c.lookup != nil):
		return fmt.Errorf("%w: WithInsecureSkipVerification together with secrets", ErrInvalidOption)
	case c.insecure && c.legacy:
		return fmt.Errorf("%w: WithInsecureSkipVerification together with WithLegacySecretHeader", ErrInvalidOption)
	case !c.insecure && len(c.secrets) == 0 && c.lookup == nil:
		return fmt.Errorf("%w: no secret: use WithSecret or WithSecretLookup", ErrInvalidOption)
	case c.workers < 1:
		return fmt.Errorf("%w: workers %d < 1", ErrInvalidOption, c.workers)
	case c.queueSize < 1:
		return fmt.Errorf("%w: queue size %d < 1", ErrInvalidOption, c.queueSize)
	case c.maxBody < 1:
		return fmt.Errorf("%w: max body bytes %d < 1", ErrInvalidOption, c.maxBody)
	case c.tolerance <= 0:
		return fmt.Errorf("%w: tolerance %v <= 0", ErrInvalidOption, c.tolerance)
	case c.dedupeTTL < c.tolerance:
		return fmt.Errorf("%w: dedupe TTL %v shorter than tolerance %v", ErrInvalidOption, c.dedupeTTL, c.tolerance)
	case c.maxAttempts < 1:
		return fmt.Errorf("%w: attempts %d < 1", ErrInvalidOption, c.maxAttempts)
	case c.callbackTimeout <= 0:
		return fmt.Errorf("%w: callback timeout %v <= 0", ErrInvalidOption, c.callbackTimeout)
	case c.backoff < 0:
		return fmt.Errorf("%w: backoff %v < 0", ErrInvalidOption, c.backoff)
	}
	return nil
}

// WithSecret accepts deliveries signed with any of secrets (list the old
// and the new secret while rotating). An empty secret is an error. Without
// WithSecret, [WithSecretLookup] or [WithInsecureSkipVerification], New
// returns an error.
func WithSecret(secrets ...string) Option {
	return func(c *config) error {
		if len(secrets) == 0 {
			return fmt.Errorf("%w: WithSecret with no secret", ErrInvalidOption)
		}
		for _, s := range secrets {
			if s == "" {
				return fmt.Errorf("%w: empty secret", ErrInvalidOption)
			}
		}
		c.secrets = append(c.secrets, secrets...)
		return nil
	}
}

// WithSecretLookup verifies deliveries with per-prediction secrets. When
// the signature matches none of the [WithSecret] secrets (or there are
// none), the Handler reads the prediction id from the body, calls lookup and
// verifies with the secrets it returns. Default: no lookup.
func WithSecretLookup(lookup SecretLookup) Option {
	return func(c *config) error {
		if lookup == nil {
			return fmt.Errorf("%w: nil secret lookup", ErrInvalidOption)
		}
		c.lookup = lookup
		return nil
	}
}

// WithInsecureSkipVerification accepts every delivery without checking its
// signature. It exists for local development against a sender that has no
// secret; never use it on a reachable endpoint, since anyone could then
// trigger your callbacks. It cannot be combined with secrets.
func WithInsecureSkipVerification() Option {
	return func(c *config) error {
		c.insecure = true
		return nil
	}
}

// WithWorkers sets how many goroutines run callbacks. Default 4. It must
// be at least 1.
func WithWorkers(n int) Option {
	return func(c *config) error { c.workers = n; return nil }
}

// WithQueueSize sets how many accepted deliveries may wait for a worker.
// When the queue is full a delivery is answered 503 with Retry-After and the
// sender retries it later. Default 1024; at least 1.
func WithQueueSize(n int) Option {
	return func(c *config) error { c.queueSize = n; return nil }
}

// WithMaxBodyBytes sets the largest body accepted; a larger one is answered
// 413. Default 10 MiB.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error { c.maxBody = n; return nil }
}

// WithStore sets the dedupe store. Default: a [MemoryStore] owned by the
// Handler and closed by [Handler.Shutdown]. A store given here is not
// closed by the Handler.
func WithStore(s Store) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("%w: nil store", ErrInvalidOption)
		}
		c.store = s
		return nil
	}
}

// WithDedupeTTL sets how long an id is remembered as done once its
// callback succeeded or it became a dead letter (while the callback runs,
// the claim lasts for its lease instead, see [WithRetry]). Default
// [DefaultDedupeTTL] (24h). It must be at least the tolerance, or a
// replayed timestamped delivery could outlive its dedupe record.
func WithDedupeTTL(d time.Duration) Option {
	return func(c *config) error { c.dedupeTTL = d; return nil }
}

// WithTolerance sets how far the X-Webhook-Timestamp of a timestamped
// signature may lie from the current time, in either direction. Default
// [signature.DefaultTolerance] (15m): the sender reuses one timestamp for
// every attempt of a delivery, the last about 12.5 minutes after the first.
func WithTolerance(d time.Duration) Option {
	return func(c *config) error { c.tolerance = d; return nil }
}

// WithLogger sets the logger. Default [slog.Default] at the time New runs.
// Secrets, signatures, the X-Webhook-Secret header and bodies are never
// logged, except verified bodies under [WithPayloadLogging].
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithClock sets the source of the current time, for timestamp checks and
// dedupe expiry. Default [time.Now].
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		c.now = now
		return nil
	}
}

// WithRetry sets how often a callback that returns an error or panics is
// run for one delivery (attempts, at least 1) and the wait before the
// second attempt (backoff, doubling on each later attempt, capped at one
// minute). Default 3 attempts with a 1s backoff.
//
// These and [WithCallbackTimeout] also set how long an accepted id stays
// claimed as in progress while its callback runs, its lease: every
// attempt at its timeout, every backoff, and a minute more (4m03s by
// default). A redelivery (or the reconciler's delivery) of the id within
// the lease is a duplicate, and one after it is processed again, so that
// an event whose process died after the 200 is not lost to a claim that
// never ends. Once the callback succeeds the id is marked done for the
// dedupe TTL ([WithDedupeTTL]) instead. A queue set with [WithQueue]
// retries by its own policy; a lease that runs out before it gave up
// lets a redelivery reach the queue, which decides (a [DedupingQueue],
// such as the durable one, refuses the copy).
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(c *config) error {
		c.maxAttempts = attempts
		c.backoff = backoff
		return nil
	}
}

// WithCallbackTimeout sets how long one attempt of a callback may run:
// its context is cancelled after d, and an attempt that has not returned
// by then, or returned only after it, counts as failed with an error
// matching [context.DeadlineExceeded] (and is retried as [WithRetry]
// says). A callback that ignores its context is not stopped, which Go
// cannot do: the worker stops waiting for it and goes on with the next
// delivery while it ends on its own. Default 1 minute; it must be
// positive. A durable queue takes its job timeout from this setting.
func WithCallbackTimeout(d time.Duration) Option {
	return func(c *config) error { c.callbackTimeout = d; return nil }
}

// WithErrorHandler sets a function called once per dead letter (see
// [Handler.DeadLetters]): when a delivery's callback failed on every
// attempt, and when a delivery was acknowledged with no callback to run
// for its status. err is a [*CallbackError]; its Attempts is 0 when no
// callback ran. For a failed callback it runs on the worker goroutine and
// ctx is the callbacks' context; for a delivery with no callback it runs
// on the request's goroutine, before the 200, with the request's context,
// so keep it quick. It also receives the errors the reconciler of package
// eachloop reports, on its goroutine. Default: none (the dead letter is
// logged either way).
func WithErrorHandler(fn func(ctx context.Context, err error)) Option {
	return func(c *config) error { c.onError = fn; return nil }
}

// WithLegacySecretHeader accepts deliveries that carry no signature but
// the secret itself in the X-Webhook-Secret header ([signature.HeaderSecret]),
// the form the each::labs documentation currently describes. The value is compared in constant time with each [WithSecret]
// secret and, when none matches and a [SecretLookup] is set, with the
// secrets it returns for the delivery's id.
//
// This form is weaker than a signature: the secret travels in every
// request, where anything that records headers can see it, and nothing
// protects the body from being changed. Enable it when the account sends
// it (eachhook history tells). A request that carries X-Webhook-Signature is always
// decided by its signature, and X-Webhook-Secret is then ignored (newer
// senders send both). The header's value is never logged.
//
// Default: off, and a delivery authenticated only by X-Webhook-Secret is
// answered 401. It cannot be combined with [WithInsecureSkipVerification].
func WithLegacySecretHeader() Option {
	return func(c *config) error {
		c.legacy = true
		return nil
	}
}

// WithObserver installs o to receive every outcome of the Handler. A later
// WithObserver replaces an earlier one. Default: none.
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		c.observer = o
		return nil
	}
}

// WithPayloadLogging logs the body of every verified delivery at debug
// level through the logger ([WithLogger]), with the attributes id, status
// and body, to debug what the sender sends. A body is logged only after
// its signature verified, so a forged request cannot write into the logs;
// under [WithInsecureSkipVerification] every body counts as verified.
// Headers are never logged. Bodies may hold personal data and output URLs:
// enable this while debugging only. Default: off.
func WithPayloadLogging() Option {
	return func(c *config) error {
		c.logPayloads = true
		return nil
	}
}

// WithQueue sets how accepted deliveries are queued and run. Default: an
// in-memory queue of [WithWorkers] goroutines holding up to
// [WithQueueSize] deliveries, retrying as set by [WithRetry]; those three
// options have no effect on a Queue set here, which has its own settings.
// [Handler.Start] starts q, outside any request, and [Handler.Shutdown]
// shuts it down; until Start succeeds every delivery is answered 503.
func WithQueue(q Queue) Option {
	return func(c *config) error {
		if q == nil {
			return fmt.Errorf("%w: nil queue", ErrInvalidOption)
		}
		c.queue = q
		return nil
	}
}

// WithDeadLetters keeps the Handler's dead letters (see [DeadLetter]) in
// s, such as a store shared by every replica, so that [Handler.Replay]
// and [Handler.Discard] work on any of them and the dead letters outlive
// the process. Default: in memory, at most 1000 dead letters and 64 MiB
// of bodies; beyond either bound the oldest dead letter is evicted and
// logged at error level with its id (its event is then lost), and all
// are lost when the process ends. With a queue that keeps its own dead
// letters (the durable queue's discarded jobs), s holds only those the
// queue never saw: deliveries with no callback for their status.
func WithDeadLetters(s DeadLetterStore) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("%w: nil dead-letter store", ErrInvalidOption)
		}
		c.deadLetters = s
		return nil
	}
}

// claimLease is how long an accepted id stays claimed as in progress: no
// run of its callbacks in the in-memory queue outlasts it (see WithRetry).
func (c *config) claimLease() time.Duration {
	lease := time.Minute
	for attempt := 1; attempt <= c.maxAttempts; attempt++ {
		lease += c.callbackTimeout
		if attempt > 1 {
			lease += backoffFor(c.backoff, attempt)
		}
		if lease < 0 || lease > 1000*time.Hour { // absurd settings: cap, never overflow
			return 1000 * time.Hour
		}
	}
	return lease
}
