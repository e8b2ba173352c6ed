package eachhook

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemoryStoreSweepFreesExpired(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := newMemoryStore(time.Hour, clock)
	defer s.Close()
	ctx := context.Background()
	for i := range 10_000 {
		_, ok, err := s.Claim(ctx, fmt.Sprintf("id-%d", i), time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
	}
	_, ok, err := s.Claim(ctx, "late", 10*time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 10_001, s.Len())

	s.Sweep()
	require.Equal(t, 10_001, s.Len(), "nothing has expired yet")

	now.Add(int64(2 * time.Minute))
	_, ok, err = s.Claim(ctx, "id-1", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "an expired claim counts as absent before any sweep")
	s.Sweep()
	require.Equal(t, 2, s.Len(), "only the unexpired ids remain")
	_, ok, err = s.Claim(ctx, "late", time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestMemoryStoreCloseIsIdempotent(t *testing.T) {
	s := newMemoryStore(time.Millisecond, nil)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, ok, err := s.Claim(context.Background(), "after-close", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
}
