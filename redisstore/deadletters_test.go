package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/deadlettertest"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/eachhook/eachhook/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestDeadLettersConformance(t *testing.T) {
	redistest.Addr(t) // without a server, the whole suite skips
	deadlettertest.Run(t, deadlettertest.Harness{
		New: func(t *testing.T) eachhook.DeadLetterStore {
			c := redistest.Client(t)
			d, err := redisstore.NewDeadLetters(c, redisstore.WithKeyPrefix(redistest.Prefix(t, c)))
			require.NoError(t, err)
			return d
		},
		Replicas: func(t *testing.T) (a, b eachhook.DeadLetterStore) {
			c1, c2 := redistest.Client(t), redistest.Client(t)
			prefix := redistest.Prefix(t, c1)
			a, err := redisstore.NewDeadLetters(c1, redisstore.WithKeyPrefix(prefix))
			require.NoError(t, err)
			b, err = redisstore.NewDeadLetters(c2, redisstore.WithKeyPrefix(prefix))
			require.NoError(t, err)
			return a, b
		},
	})
}

func TestNewDeadLettersRejectsNilClient(t *testing.T) {
	_, err := redisstore.NewDeadLetters(nil)
	require.ErrorIs(t, err, redisstore.ErrInvalidOption)
}

// Two Handlers (replicas) share the claims and the dead letters in Redis:
// a delivery that failed on one is replayed, and another discarded, from
// the other.
func TestDeadLettersReplayAndDiscardOnAnotherReplica(t *testing.T) {
	const secret = "whsec_dead_letters"
	c1, c2 := redistest.Client(t), redistest.Client(t)
	prefix := redistest.Prefix(t, c1)
	var fail atomic.Bool
	fail.Store(true)
	var runs, reported atomic.Int32
	replica := func(c *redis.Client) *eachhook.Handler {
		claims, err := redisstore.New(c, redisstore.WithKeyPrefix(prefix+"claim:"))
		require.NoError(t, err)
		dead, err := redisstore.NewDeadLetters(c, redisstore.WithKeyPrefix(prefix))
		require.NoError(t, err)
		h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler)), eachhook.WithRetry(2, time.Millisecond),
			eachhook.WithStore(claims), eachhook.WithDeadLetters(dead),
			eachhook.WithErrorHandler(func(context.Context, error) { reported.Add(1) }))
		require.NoError(t, err)
		h.OnSuccess(func(context.Context, *eachhook.Success) error {
			runs.Add(1)
			if fail.Load() {
				return errors.New("downstream unavailable")
			}
			return nil
		})
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, h.Shutdown(ctx))
			require.NoError(t, claims.Close())
		})
		return h
	}
	a, b := replica(c1), replica(c2)
	ctx := context.Background()
	for _, id := range []string{"replayed", "discarded"} {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", secret, id))
		require.Equal(t, 200, w.Code)
	}
	require.Eventually(t, func() bool {
		list, err := b.DeadLetters(ctx)
		return err == nil && len(list) == 2 && reported.Load() == 2 // reported once their claims were released
	}, 10*time.Second, 5*time.Millisecond)
	fail.Store(false)
	require.NoError(t, b.Replay(ctx, "replayed"))
	require.NoError(t, b.Discard(ctx, "discarded"))
	require.Eventually(t, func() bool {
		list, err := a.DeadLetters(ctx)
		return err == nil && len(list) == 0
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, int32(5), runs.Load()) // 2 + 2 failed, 1 replayed
	require.ErrorIs(t, a.Replay(ctx, "discarded"), eachhook.ErrNoDeadLetter)
	require.ErrorIs(t, a.Discard(ctx, "replayed"), eachhook.ErrNoDeadLetter)
}
