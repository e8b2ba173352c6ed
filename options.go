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

// Option configures a [Handler]. [New] applies options in order; a later one
// overrides an earlier one of its kind, except that [WithSecret] adds secrets.
type Option func(*config) error

// SecretLookup returns the secrets that may have signed the delivery of id,
// the delivery's key (see [WorkflowKeyPrefix]). It returns (nil, nil) when id
// has no secret (answered 401) and an error only for a system failure
// (answered 503). id comes from an unverified body: treat it as untrusted.
type SecretLookup func(ctx context.Context, id string) ([]string, error)

// DefaultDedupeTTL is how long an accepted id is remembered unless
// [WithDedupeTTL] says otherwise.
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

// WithSecret accepts deliveries signed with any of secrets (list old and new
// while rotating); an empty secret is an error. New needs WithSecret,
// [WithSecretLookup] or [WithInsecureSkipVerification].
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

// WithSecretLookup verifies a delivery that no [WithSecret] secret signed
// with the secrets lookup returns for its id. Default: no lookup.
func WithSecretLookup(lookup SecretLookup) Option {
	return func(c *config) error {
		if lookup == nil {
			return fmt.Errorf("%w: nil secret lookup", ErrInvalidOption)
		}
		c.lookup = lookup
		return nil
	}
}

// WithInsecureSkipVerification accepts every delivery unchecked, for local
// development only. It cannot be combined with secrets. Default: off.
func WithInsecureSkipVerification() Option {
	return func(c *config) error {
		c.insecure = true
		return nil
	}
}

// WithWorkers sets how many goroutines run callbacks and how many stuck
// past their timeout refuse deliveries (with [WithQueue] too). Default 4, >= 1.
func WithWorkers(n int) Option {
	return func(c *config) error { c.workers = n; return nil }
}

// WithQueueSize sets how many accepted deliveries may wait for a worker; when
// full, a delivery is answered 503. Default 1024; at least 1.
func WithQueueSize(n int) Option {
	return func(c *config) error { c.queueSize = n; return nil }
}

// WithMaxBodyBytes sets the largest body accepted; a larger one is answered
// 413. Default 10 MiB.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error { c.maxBody = n; return nil }
}

// WithStore sets the dedupe store, which the Handler does not close.
// Default: a [MemoryStore] closed by [Handler.Shutdown].
func WithStore(s Store) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("%w: nil store", ErrInvalidOption)
		}
		c.store = s
		return nil
	}
}

// WithDedupeTTL sets how long an id is remembered as done once its callback
// succeeded. Default [DefaultDedupeTTL]; at least the tolerance
// ([WithTolerance]).
func WithDedupeTTL(d time.Duration) Option {
	return func(c *config) error { c.dedupeTTL = d; return nil }
}

// WithTolerance sets how far the X-Webhook-Timestamp of a signature may lie
// from the current time, either way. Default [signature.DefaultTolerance].
func WithTolerance(d time.Duration) Option {
	return func(c *config) error { c.tolerance = d; return nil }
}

// WithLogger sets the logger. Default [slog.Default] when New runs. Secrets
// and bodies are never logged, except bodies under [WithPayloadLogging].
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

// WithRetry sets how many times a failing callback runs for one delivery
// (attempts, at least 1) and the wait before the second (backoff, doubling,
// capped at one minute). Default 3 attempts, 1s. With [WithCallbackTimeout] it
// sets the lease of an id's claim: all attempts' timeouts and backoffs plus a
// minute (4m03s by default); a redelivery after it is processed again.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(c *config) error {
		c.maxAttempts = attempts
		c.backoff = backoff
		return nil
	}
}

// WithCallbackTimeout sets how long one attempt of a callback may run: after
// d its context is cancelled and the attempt fails with an error matching
// [context.DeadlineExceeded]; a callback that ignores its context holds its
// worker until it returns. Default 1 minute; it must be positive.
func WithCallbackTimeout(d time.Duration) Option {
	return func(c *config) error { c.callbackTimeout = d; return nil }
}

// WithErrorHandler sets a function called with a [*CallbackError] once per
// dead letter, on the worker, or on the request's goroutine before the 200
// for a delivery with no callback: keep it quick. Default: none.
func WithErrorHandler(fn func(ctx context.Context, err error)) Option {
	return func(c *config) error { c.onError = fn; return nil }
}

// WithLegacySecretHeader also accepts deliveries that carry no signature but
// the secret itself in X-Webhook-Secret ([signature.HeaderSecret]), which is
// weaker than a signature. A request with X-Webhook-Signature is decided by
// it alone. Default: off (answered 401). It cannot be combined with
// [WithInsecureSkipVerification].
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

// WithPayloadLogging logs every verified body at debug level (attributes
// id, status, body); bodies may hold personal data. Default: off.
func WithPayloadLogging() Option {
	return func(c *config) error {
		c.logPayloads = true
		return nil
	}
}

// WithQueue sets how accepted deliveries are queued and run. Default: an
// in-memory queue set by [WithWorkers], [WithQueueSize] and [WithRetry],
// which have no other effect on q. [Handler.Start] starts q and [Handler.Shutdown]
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

// WithDeadLetters keeps the Handler's dead letters in s, such as a store
// shared by every replica. Default: in memory, at most 1000 dead letters and
// 64 MiB of bodies, evicting the oldest (logged at error level). With a
// [DeadLetterQueue], s holds only dead letters the queue never saw.
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
