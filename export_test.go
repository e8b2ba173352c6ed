package eachhook

import (
	"context"
	"log/slog"
	"time"
)

// NewMemQueueForTest returns the in-memory queue, not started, with
// workers goroutines, room for size waiting deliveries and attempts
// attempts per delivery without backoff, so that the queuetest suite can
// run against it from package eachhook_test. It is compiled only in tests.
var NewMemQueueForTest = func(workers, size, attempts int) Queue {
	// The queue reads its retry settings, logger and store through its
	// Handler. A store with no sweep goroutine keeps goleak quiet.
	h, err := New(WithSecret("x"), WithRetry(attempts, 0), WithStore(nopStore{}), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	return newMemQueue(h, workers, size)
}

// nopStore is a Store that claims every id.
type nopStore struct{}

func (nopStore) Claim(context.Context, string, time.Duration) (string, bool, error) {
	return "t", true, nil
}
func (nopStore) Complete(context.Context, string, string, time.Duration) error { return nil }
func (nopStore) Release(context.Context, string, string) error                 { return nil }

// NewMemoryDeadLettersForTest returns the default dead-letter store with
// the given bounds, logging to log, so that package eachhook_test can run
// the deadlettertest suite and the eviction test against it, and share
// one between two Handlers as replicas would share a database.
var NewMemoryDeadLettersForTest = func(log *slog.Logger, max, maxBytes int) DeadLetterStore {
	return newMemoryDeadLetters(log, max, maxBytes)
}
