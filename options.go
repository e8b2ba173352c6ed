package eachhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
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

// Defaults for the options.
const (
	DefaultWorkers      = 4
	DefaultQueueSize    = 1024
	DefaultMaxBodyBytes = 10 << 20
	DefaultDedupeTTL    = 24 * time.Hour
	DefaultTolerance    = 15 * time.Minute
	DefaultMaxAttempts  = 3
	DefaultBackoff      = time.Second
)

type config struct {
	secrets     []string
	lookup      SecretLookup
	insecure    bool
	legacy      bool // accept the plain X-Webhook-Secret header
	workers     int
	queueSize   int
	maxBody     int64
	store       Store
	dedupeTTL   time.Duration
	tolerance   time.Duration
	logger      *slog.Logger
	now         func() time.Time
	maxAttempts int
	backoff     time.Duration
	onError     func(ctx context.Context, err error)
	observe     observeConfig // observe.go
	queue       Queue
}

func defaultConfig() config {
	return config{
		workers:     DefaultWorkers,
		queueSize:   DefaultQueueSize,
		maxBody:     DefaultMaxBodyBytes,
		dedupeTTL:   DefaultDedupeTTL,
		tolerance:   DefaultTolerance,
		now:         time.Now,
		maxAttempts: DefaultMaxAttempts,
		backoff:     DefaultBackoff,
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

// WithWorkers sets how many goroutines run callbacks. Default
// [DefaultWorkers] (4). It must be at least 1.
func WithWorkers(n int) Option {
	return func(c *config) error { c.workers = n; return nil }
}

// WithQueueSize sets how many accepted deliveries may wait for a worker.
// When the queue is full a delivery is answered 503 with Retry-After and the
// sender retries it later. Default [DefaultQueueSize] (1024); at least 1.
func WithQueueSize(n int) Option {
	return func(c *config) error { c.queueSize = n; return nil }
}

// WithMaxBodyBytes sets the largest body accepted; a larger one is answered
// 413. Default [DefaultMaxBodyBytes] (10 MiB).
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

// WithDedupeTTL sets how long an accepted prediction id is remembered.
// Default [DefaultDedupeTTL] (24h). It must be at least the tolerance, or a
// replayed timestamped delivery could outlive its dedupe record.
func WithDedupeTTL(d time.Duration) Option {
	return func(c *config) error { c.dedupeTTL = d; return nil }
}

// WithTolerance sets how far the X-Webhook-Timestamp of a timestamped
// signature may lie from the current time, in either direction. Default
// [DefaultTolerance] (15m): the sender reuses one timestamp for every
// attempt of a delivery, the last about 12.5 minutes after the first.
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
// minute). Default [DefaultMaxAttempts] (3) attempts with [DefaultBackoff]
// (1s) backoff.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(c *config) error {
		c.maxAttempts = attempts
		c.backoff = backoff
		return nil
	}
}

// WithErrorHandler sets a function called when a delivery's callback
// failed on every attempt. err is a [*CallbackError]. It runs on the worker
// goroutine; ctx is the callbacks' context. It also receives the errors
// passed to [Handler.ReportError], on the reporter's goroutine. Default:
// none (the failure is logged either way).
func WithErrorHandler(fn func(ctx context.Context, err error)) Option {
	return func(c *config) error { c.onError = fn; return nil }
}
