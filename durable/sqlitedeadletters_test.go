package durable_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/deadlettertest"
	"github.com/eachhook/eachhook/durable"
	"github.com/stretchr/testify/require"
)

func openDeadLetters(t *testing.T, path string) *durable.SQLiteDeadLetters {
	t.Helper()
	d, err := durable.OpenSQLiteDeadLetters(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// The replicas are two connections on one file, as a restarted process
// (or a tool run beside the service) opens it.
func TestSQLiteDeadLettersConformance(t *testing.T) {
	deadlettertest.Run(t, deadlettertest.Harness{
		New: func(t *testing.T) eachhook.DeadLetterStore {
			return openDeadLetters(t, filepath.Join(t.TempDir(), "dead.db"))
		},
		Replicas: func(t *testing.T) (a, b eachhook.DeadLetterStore) {
			path := filepath.Join(t.TempDir(), "dead.db")
			return openDeadLetters(t, path), openDeadLetters(t, path)
		},
	})
}

func TestOpenSQLiteDeadLettersRejectsBadPaths(t *testing.T) {
	for _, path := range []string{"", "a?b", "a#b"} {
		_, err := durable.OpenSQLiteDeadLetters(context.Background(), path)
		require.ErrorIs(t, err, durable.ErrInvalidConfig, "path %q", path)
	}
}
