package eachhook

import (
	"log/slog"
)

// NewMemQueueForTest returns the in-memory queue, not started, with
// workers goroutines, room for size waiting deliveries and attempts
// attempts per delivery without backoff, so that the queuetest suite can
// run against it from package eachhook_test. It is compiled only in tests.
var NewMemQueueForTest = func(workers, size, attempts int) Queue {
	return newMemQueue(memQueueConfig{workers: workers, size: size, attempts: attempts})
}

// NewMemoryDeadLettersForTest returns the default dead-letter store with
// the given bounds, logging to log, so that package eachhook_test can run
// the deadlettertest suite and the eviction test against it, and share
// one between two Handlers as replicas would share a database.
var NewMemoryDeadLettersForTest = func(log *slog.Logger, max, maxBytes int) DeadLetterStore {
	return newMemoryDeadLetters(log, max, maxBytes)
}
