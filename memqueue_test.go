package eachhook_test

import (
	"testing"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/queuetest"
)

// TestMemQueueConformance runs the Queue conformance suite on the
// in-memory queue: it drains on Shutdown.
func TestMemQueueConformance(t *testing.T) {
	queuetest.Run(t, queuetest.Harness{
		New:         func(*testing.T) eachhook.Queue { return eachhook.NewMemQueueForTest(2, 64, 3) },
		MaxAttempts: 3,
	})
}
