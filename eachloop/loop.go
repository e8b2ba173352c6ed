package eachloop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

// Errors of [New], [NewMemoryExpectations], [Loop.Create] and [Loop.Run].
var (
	// ErrInvalidOption is matched by every error [New] and
	// [NewMemoryExpectations] return for a configuration that cannot work,
	// and by those of the constructors of packages redisexpect, pgexpect
	// and sqliteexpect.
	ErrInvalidOption = errors.New("eachloop: invalid option")
	// ErrNotRecorded is matched by the error of [Loop.Create] when the
	// prediction was created but its expectation could not be recorded:
	// its webhook will be refused and it will not be reconciled. Create
	// returns the prediction's id with it.
	ErrNotRecorded = errors.New("eachloop: prediction created but not recorded")
	// ErrRunning is returned by [Loop.Run] while another Run of the same
	// Loop is active.
	ErrRunning = errors.New("eachloop: already running")
)

// Defaults for the options.
const (
	// DefaultGrace is how long after its creation a prediction may go
	// without an accepted outcome before it is polled: longer than the
	// sender's retries of a webhook (about 12.5 minutes for the spec
	// page's sender, seconds for newer ones) plus a short prediction's
	// run time, so that polling stays the exception.
	DefaultGrace = 15 * time.Minute
	// DefaultHorizon is how long after its creation a prediction is
	// polled at most; then the reconciler gives up and reports it.
	DefaultHorizon = 6 * time.Hour
	// DefaultMinPollWait and DefaultMaxPollWait bound the wait between
	// two polls of one prediction.
	DefaultMinPollWait = 30 * time.Second
	DefaultMaxPollWait = 10 * time.Minute
	// DefaultScanInterval is how often the reconciler lists the pending
	// expectations.
	DefaultScanInterval = time.Minute
	// DefaultConcurrency is how many polls run at once.
	DefaultConcurrency = 4
)

// secretBytes is the size of a generated webhook secret: 256 bits.
const secretBytes = 32

// maxInflightSecrets bounds how many secrets of creations in flight
// SecretLookup returns for an unknown id, and so the HMACs a forged
// delivery can cost.
const maxInflightSecrets = 8

// Loop creates predictions, each with its own webhook secret, records
// them as [Expectations], verifies their webhooks with those secrets and
// reconciles the predictions whose webhook never came. Create it with
// [New]; it is safe for concurrent use.
type Loop struct {
	client     *eachlabs.Client
	exp        Expectations
	webhookURL string
	cfg        config
	log        *slog.Logger

	inflightMu sync.Mutex
	inflight   map[*string]struct{} // secrets of creations not yet recorded

	running atomic.Bool
	sw      sweepState // used by the active Run only
	mu      sync.Mutex
	sched   map[string]*entry    // expectations the running reconciler polls
	claimed map[string]time.Time // ids claimed in this process whose callback has not finished, with when
	// finished holds ids whose callback finished in this process (at most
	// maxFinished), so that a poll that finds one a duplicate settles it:
	// its webhook may have finished before its expectation was recorded.
	finished map[string]time.Time
}

// maxFinished bounds Loop.finished.
const maxFinished = 4096

type config struct {
	grace, horizon   time.Duration
	minWait, maxWait time.Duration
	scanInterval     time.Duration
	concurrency      int
	now              func() time.Time
	sleep            func(context.Context, time.Duration) error
	logger           *slog.Logger
	onError          func(ctx context.Context, err error)
	dropCancelled    bool
}

// Option configures a [Loop].
type Option func(*config) error

// WithGrace sets how long after its creation a prediction may go without
// an accepted outcome before the reconciler polls it. Default
// [DefaultGrace] (15m); zero polls at once.
func WithGrace(d time.Duration) Option {
	return func(c *config) error { c.grace = d; return nil }
}

// WithHorizon sets how long after its creation a prediction is polled at
// most. The last poll happens at the horizon; if the prediction has not
// finished by then the reconciler marks it done and reports an error
// matching [ErrGaveUp] (see [WithErrorHandler]).
// Default [DefaultHorizon] (6h). It must be longer than the grace period,
// and should be shorter than the Handler's dedupe TTL.
func WithHorizon(d time.Duration) Option {
	return func(c *config) error { c.horizon = d; return nil }
}

// WithPollWait bounds the wait between two polls of one prediction. The
// wait equals the time since the prediction's first poll, within [min,
// max], so it doubles from min up to max; a Retry-After longer than the
// wait is waited instead. Default [DefaultMinPollWait] (30s) and
// [DefaultMaxPollWait] (10m).
func WithPollWait(min, max time.Duration) Option {
	return func(c *config) error { c.minWait, c.maxWait = min, max; return nil }
}

// WithScanInterval sets how often the reconciler lists the pending
// expectations, so a prediction is first polled between the grace period
// and the grace period plus this interval after its creation. Default
// [DefaultScanInterval] (1m).
func WithScanInterval(d time.Duration) Option {
	return func(c *config) error { c.scanInterval = d; return nil }
}

// WithConcurrency sets how many polls run at once. Default
// [DefaultConcurrency] (4).
func WithConcurrency(n int) Option {
	return func(c *config) error { c.concurrency = n; return nil }
}

// WithClock sets the source of the current time and the function that
// waits, for tests. sleep must wait d or until ctx ends, returning
// ctx.Err() in that case. Default [time.Now] and a timer.
func WithClock(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *config) error {
		if now == nil || sleep == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		c.now, c.sleep = now, sleep
		return nil
	}
}

// WithLogger sets the logger. Default [slog.Default] at the time New runs.
// Secrets are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithErrorHandler sets a function the reconciler calls, on its own
// goroutine, with every error it reports: a [*GiveUpError] for each
// prediction it gave up on at the horizon. Each such error is also logged
// at Error level on the Loop's logger ([WithLogger]), with or without
// this function. Pass the function given to the Handler's
// [eachhook.WithErrorHandler] to see both in one place. Default: none.
func WithErrorHandler(fn func(ctx context.Context, err error)) Option {
	return func(c *config) error { c.onError = fn; return nil }
}

// WithDropCancelled makes the reconciler drop a prediction it finds
// cancelled (logged, marked done, no callback) instead of dispatching it
// to OnFailed with [eachhook.CodeCancelled]. Default: dispatch.
func WithDropCancelled() Option {
	return func(c *config) error { c.dropCancelled = true; return nil }
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// New returns a Loop that creates predictions with client, records them in
// exp and has their outcomes delivered to webhookURL, the absolute http(s)
// URL where your [eachhook.Handler] is served.
func New(client *eachlabs.Client, exp Expectations, webhookURL string, opts ...Option) (*Loop, error) {
	cfg := config{
		grace: DefaultGrace, horizon: DefaultHorizon,
		minWait: DefaultMinPollWait, maxWait: DefaultMaxPollWait,
		scanInterval: DefaultScanInterval, concurrency: DefaultConcurrency,
		now: time.Now, sleep: sleepTimer,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(webhookURL)
	switch {
	case client == nil:
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	case exp == nil:
		return nil, fmt.Errorf("%w: nil expectations", ErrInvalidOption)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("%w: webhook URL %q is not an absolute http(s) URL", ErrInvalidOption, webhookURL)
	case cfg.grace < 0:
		return nil, fmt.Errorf("%w: grace %v < 0", ErrInvalidOption, cfg.grace)
	case cfg.horizon <= cfg.grace:
		return nil, fmt.Errorf("%w: horizon %v not longer than grace %v", ErrInvalidOption, cfg.horizon, cfg.grace)
	case cfg.minWait <= 0 || cfg.maxWait < cfg.minWait:
		return nil, fmt.Errorf("%w: poll wait from %v to %v", ErrInvalidOption, cfg.minWait, cfg.maxWait)
	case cfg.scanInterval <= 0:
		return nil, fmt.Errorf("%w: scan interval %v <= 0", ErrInvalidOption, cfg.scanInterval)
	case cfg.concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency %d < 1", ErrInvalidOption, cfg.concurrency)
	}
	l := &Loop{
		client: client, exp: exp, webhookURL: webhookURL, cfg: cfg, log: cfg.logger,
		inflight: make(map[*string]struct{}), sched: make(map[string]*entry), claimed: make(map[string]time.Time), finished: make(map[string]time.Time),
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l, nil
}

// Create starts a prediction and records it as expected. Unless req
// already has them, it sets req.WebhookURL to the Loop's webhook URL and
// req.WebhookSecret to a fresh random secret (256 bits from crypto/rand,
// hex-encoded), so that each prediction's webhook is signed with a secret
// of its own. It returns the prediction's id.
//
// When the API refused or failed, nothing was recorded and the error is
// the client's (see package eachlabs). Create never retries: a refusal for
// the account's balance matches [eachlabs.ErrPaymentRequired], and one for
// its concurrency cap (too many predictions in flight) matches
// [eachlabs.ErrConcurrencyLimit]; neither created a prediction, and
// neither clears by retrying at once: create again once a prediction in
// flight has finished (its callback ran). after an error matching
// [eachlabs.ErrTimeout] the prediction may exist all the same: the Loop
// does not know it, and its webhook will be refused. When the prediction
// was created but
// could not be recorded, Create returns its id and an error matching
// [ErrNotRecorded]. The expectation is recorded even if ctx ends once the
// API has answered.
//
// A webhook that arrives before Create has recorded the expectation is
// verified with the secret of the creation in flight (see
// [Loop.SecretLookup]) and accepted; the expectation is then recorded as
// pending, and its first poll finds the outcome already accepted and
// settles it without a second callback.
func (l *Loop) Create(ctx context.Context, req eachlabs.PredictionRequest) (string, error) {
	if req.WebhookURL == "" {
		req.WebhookURL = l.webhookURL
	}
	if req.WebhookSecret == "" {
		var b [secretBytes]byte
		rand.Read(b[:]) // never fails, see crypto/rand.Read
		req.WebhookSecret = hex.EncodeToString(b[:])
	}
	// A fast sender may deliver before the expectation is recorded:
	// SecretLookup accepts the secrets of creations in flight.
	secret := &req.WebhookSecret
	l.inflightMu.Lock()
	l.inflight[secret] = struct{}{}
	l.inflightMu.Unlock()
	defer func() {
		l.inflightMu.Lock()
		delete(l.inflight, secret)
		l.inflightMu.Unlock()
	}()

	createdAt := l.cfg.now()
	created, err := l.client.CreatePrediction(ctx, req)
	if err != nil {
		return "", err
	}
	id := created.PredictionID
	e := Expectation{ID: id, Secret: req.WebhookSecret, CreatedAt: createdAt}
	if err := l.exp.Expect(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("eachloop: prediction created but not recorded", "id", id, "err", err)
		return id, fmt.Errorf("%w: %s: %w", ErrNotRecorded, id, err)
	}
	return id, nil
}

// SecretLookup returns the secret recorded for prediction id. It has the
// type [eachhook.SecretLookup]: pass it to [eachhook.WithSecretLookup] so
// that each delivery is verified with its own prediction's secret, and one
// signed with another prediction's secret is refused with 401. For an id
// not recorded (yet) it returns the secrets of the creations in flight in
// this process (at most eight), each known only to the sender of that
// creation; a delivery refused meanwhile is retried by the sender, and
// its outcome is polled for after the grace period in any case.
func (l *Loop) SecretLookup(ctx context.Context, id string) ([]string, error) {
	secrets, err := l.exp.Secrets(ctx, id)
	if err != nil || len(secrets) > 0 {
		return secrets, err
	}
	l.inflightMu.Lock()
	defer l.inflightMu.Unlock()
	for s := range l.inflight {
		if len(secrets) == maxInflightSecrets {
			break
		}
		secrets = append(secrets, *s)
	}
	return secrets, nil
}

// Store wraps the Handler's dedupe store so that the Loop learns when an
// outcome is finished: a Complete of an id (its callback succeeded), or a
// ReleaseDeadLetter (it became a dead letter), marks its expectation done, which stops its
// polling, and a Release makes it pending again, so that an outcome the
// Handler released (it was not run before shutdown, or its dead letter is
// replayed) is polled and dispatched again. A won Claim only pauses the
// polling of the id in this process while its callback runs: the
// expectation stays pending, so that if the process dies meanwhile, the
// reconciler of the next process (or of another replica) delivers the
// outcome again once the claim's lease ran out. Pass the result to [eachhook.WithStore]; close inner
// yourself. Failures to update the expectations are logged and do not
// fail the Store's call: a poll too many is harmless, since the dedupe
// store refuses the duplicate.
func (l *Loop) Store(inner eachhook.Store) eachhook.Store {
	return &trackingStore{Store: inner, l: l}
}

type trackingStore struct {
	eachhook.Store
	l *Loop
}

// Ping implements [eachhook.Pinger]: inner's Ping, or nil when inner has
// none.
func (s *trackingStore) Ping(ctx context.Context) error {
	if p, ok := s.Store.(eachhook.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (s *trackingStore) Claim(ctx context.Context, id string, lease time.Duration) (string, bool, error) {
	token, ok, err := s.Store.Claim(ctx, id, lease)
	if ok && err == nil {
		s.l.mu.Lock()
		delete(s.l.sched, id)
		s.l.claimed[id] = s.l.cfg.now()
		s.l.mu.Unlock()
	}
	return token, ok, err
}

var _ eachhook.DeadLetterReleaser = (*trackingStore)(nil)

// ReleaseDeadLetter implements [eachhook.DeadLetterReleaser]: the id's
// outcome is kept as a dead letter, so it is done for the Loop, as after
// Complete, while its claim is released (a resend of it runs).
func (s *trackingStore) ReleaseDeadLetter(ctx context.Context, id, token string) error {
	err := s.Store.Release(ctx, id, token)
	s.l.finish(ctx, id)
	return err
}

func (s *trackingStore) Complete(ctx context.Context, id, token string, ttl time.Duration) error {
	err := s.Store.Complete(ctx, id, token, ttl)
	if err == nil {
		s.l.finish(ctx, id)
	} else {
		// Not recorded: the claim's lease will run out, so poll id again.
		s.l.unclaim(id)
	}
	return err
}

// finish records that id's outcome is finished and settles it.
func (l *Loop) finish(ctx context.Context, id string) {
	l.mu.Lock()
	if len(l.finished) >= maxFinished {
		for old := range l.finished { // forget one, the map's choice
			delete(l.finished, old)
			break
		}
	}
	l.finished[id] = l.cfg.now()
	l.mu.Unlock()
	l.settle(context.WithoutCancel(ctx), id)
}

func (s *trackingStore) Release(ctx context.Context, id, token string) error {
	err := s.Store.Release(ctx, id, token)
	s.l.mu.Lock()
	delete(s.l.finished, id)
	s.l.mu.Unlock()
	s.l.unclaim(id)
	if rerr := s.l.exp.Reopen(context.WithoutCancel(ctx), id); rerr != nil {
		s.l.log.Warn("eachloop: reopening a released expectation failed", "id", id, "err", rerr)
	}
	return err
}

// reportError logs err and passes it to the WithErrorHandler function,
// if any.
func (l *Loop) reportError(ctx context.Context, err error) {
	l.log.Error("eachloop: reported error", "err", err)
	if l.cfg.onError != nil {
		l.cfg.onError(ctx, err)
	}
}

// unclaim forgets that id's callback runs in this process, so that the
// next scan polls it again if it is pending.
func (l *Loop) unclaim(id string) {
	l.mu.Lock()
	delete(l.claimed, id)
	l.mu.Unlock()
}

// settle stops polling id and marks it done.
func (l *Loop) settle(ctx context.Context, id string) {
	l.mu.Lock()
	delete(l.sched, id)
	delete(l.claimed, id)
	l.mu.Unlock()
	if err := l.exp.Done(ctx, id); err != nil {
		l.log.Warn("eachloop: marking an expectation done failed", "id", id, "err", err)
	}
}
