package eachloop

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
)

// ErrInvalidExpectation is returned by [Expectations.Expect] for an
// expectation without an id or a secret.
var ErrInvalidExpectation = errors.New("eachloop: expectation needs an id and a secret")

// Expectation is a prediction whose outcome the service waits for.
type Expectation struct {
	// ID is the prediction id.
	ID string
	// Secret is the webhook_secret the prediction was created with.
	Secret string
	// CreatedAt is when the prediction was created; the grace period and
	// the horizon count from it.
	CreatedAt time.Time
}

// Expectations records the predictions a service created and waits for:
// their secrets, for verifying their webhooks, and whether their outcome
// has been accepted yet, for reconciling those whose webhook never came.
// Implementations must be safe for concurrent use; a durable one lets the
// expectations and their secrets survive a restart.
//
// Every method returns a non-nil error only for a system failure (the
// store cannot be reached); unknown ids are not errors.
type Expectations interface {
	// Expect records e as pending. Recording an id again replaces its
	// secret and creation time and makes it pending. It returns an error
	// matching [ErrInvalidExpectation] when e has no id or no secret.
	Expect(ctx context.Context, e Expectation) error
	// Secrets returns the secret of id, pending or done, as a list of
	// one; (nil, nil) when id is unknown or was forgotten.
	Secrets(ctx context.Context, id string) ([]string, error)
	// Done marks id done: its outcome's callback finished (or it became a
	// dead letter), or the reconciler gave up on it. Pending no longer returns it; Secrets still does, so that
	// redeliveries verify, until the implementation's retention after
	// Done has passed. Done of an unknown id does nothing.
	Done(ctx context.Context, id string) error
	// Reopen makes a done id pending again, because its accepted outcome
	// was released (the Handler shut down before running it, or a dead
	// letter is replayed). Reopen of an unknown or pending id
	// does nothing.
	Reopen(ctx context.Context, id string) error
	// Pending returns every pending expectation created at or before
	// before, oldest first (ties in id order).
	Pending(ctx context.Context, before time.Time) ([]Expectation, error)
}

// purgeEvery is how often MemoryExpectations drops expired entries.
const purgeEvery = time.Minute

// MemoryExpectations is an in-process [Expectations]. It forgets
// everything when the process ends: predictions created before a restart
// are then neither verified (their webhooks are answered 401) nor
// reconciled. Use a durable implementation to survive restarts.
type MemoryExpectations struct {
	now       func() time.Time
	retention time.Duration

	mu        sync.Mutex
	m         map[string]*memoryExpectation
	lastPurge time.Time
}

type memoryExpectation struct {
	Expectation
	done   bool
	doneAt time.Time
}

type memoryConfig struct {
	retention time.Duration
	now       func() time.Time
}

// MemoryOption configures [NewMemoryExpectations].
type MemoryOption func(*memoryConfig) error

// WithRetention sets how long [MemoryExpectations] keeps a done
// expectation's secret, so that redeliveries of its webhook still verify;
// it must be positive. Default [eachhook.DefaultDedupeTTL] (24h), the
// Handler's default dedupe TTL, so that a redelivery verifies for as long
// as it is recognised as a duplicate.
func WithRetention(d time.Duration) MemoryOption {
	return func(c *memoryConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: retention %v <= 0", ErrInvalidOption, d)
		}
		c.retention = d
		return nil
	}
}

// WithMemoryClock sets the source of the current time of
// [MemoryExpectations], for tests; a nil now is an error. Default
// [time.Now].
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(c *memoryConfig) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		c.now = now
		return nil
	}
}

// NewMemoryExpectations returns an empty MemoryExpectations. Pending
// expectations are kept until they are done; done ones for the retention
// ([WithRetention]). It returns an error matching [ErrInvalidOption] for
// an option that cannot work.
func NewMemoryExpectations(opts ...MemoryOption) (*MemoryExpectations, error) {
	cfg := memoryConfig{retention: eachhook.DefaultDedupeTTL, now: time.Now}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &MemoryExpectations{now: cfg.now, retention: cfg.retention, m: make(map[string]*memoryExpectation)}, nil
}

// Expect implements [Expectations].
func (s *MemoryExpectations) Expect(ctx context.Context, e Expectation) error {
	if e.ID == "" || e.Secret == "" {
		return ErrInvalidExpectation
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge()
	s.m[e.ID] = &memoryExpectation{Expectation: e}
	return nil
}

// Secrets implements [Expectations].
func (s *MemoryExpectations) Secrets(ctx context.Context, id string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok || s.expired(e) {
		return nil, nil
	}
	return []string{e.Secret}, nil
}

// Done implements [Expectations].
func (s *MemoryExpectations) Done(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[id]; ok && !e.done {
		e.done, e.doneAt = true, s.now()
	}
	return nil
}

// Reopen implements [Expectations].
func (s *MemoryExpectations) Reopen(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[id]; ok && e.done && !s.expired(e) {
		e.done, e.doneAt = false, time.Time{}
	}
	return nil
}

// Pending implements [Expectations].
func (s *MemoryExpectations) Pending(ctx context.Context, before time.Time) ([]Expectation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge()
	var out []Expectation
	for _, e := range s.m {
		if !e.done && !e.CreatedAt.After(before) {
			out = append(out, e.Expectation)
		}
	}
	slices.SortFunc(out, func(a, b Expectation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Len reports how many expectations are held, pending or done.
func (s *MemoryExpectations) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *MemoryExpectations) expired(e *memoryExpectation) bool {
	return e.done && !s.now().Before(e.doneAt.Add(s.retention))
}

// purge drops expired entries, at most once a minute. s.mu is held.
func (s *MemoryExpectations) purge() {
	now := s.now()
	if now.Sub(s.lastPurge) < purgeEvery && !now.Before(s.lastPurge) {
		return
	}
	s.lastPurge = now
	for id, e := range s.m {
		if s.expired(e) {
			delete(s.m, id)
		}
	}
}
