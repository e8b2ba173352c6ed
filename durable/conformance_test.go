package durable_test

import (
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/queuetest"
)

// conformanceAttempts is the retry setting the suite runs the durable
// queue with: with fastRetry, a failing delivery is given up in well under
// a second instead of River's hours.
const conformanceAttempts = 3

// TestQueueConformance runs the Queue conformance suite on the durable
// queue on SQLite and on Postgres: it keeps on Shutdown what it did not
// start, and a Queue reopened on the same database runs it.
func TestQueueConformance(t *testing.T) {
	cfg := durable.Config{MaxAttempts: conformanceAttempts, RetryPolicy: fastRetry{}, Logger: quiet}
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			var backends sync.Map // *durable.Queue -> backend
			open := func(t *testing.T, b backend) eachhook.Queue {
				q := b.open(t, cfg)
				backends.Store(q, b)
				return q
			}
			queuetest.Run(t, queuetest.Harness{
				New: func(t *testing.T) eachhook.Queue { return open(t, newBackend(t, name)) },
				Reopen: func(t *testing.T, q eachhook.Queue) eachhook.Queue {
					b, ok := backends.Load(q)
					if !ok {
						t.Fatalf("Reopen of a queue the harness did not open: %v", q)
					}
					return open(t, b.(backend))
				},
				MaxAttempts:     conformanceAttempts,
				KeepsOnShutdown: true,
				Timeout:         30 * time.Second,
			})
		})
	}
}
