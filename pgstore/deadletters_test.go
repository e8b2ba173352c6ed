package pgstore_test

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
	"github.com/eachhook/eachhook/pgstore"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// newDeadLetters returns migrated DeadLetters on table.
func newDeadLetters(tb testing.TB, pool *pgxpool.Pool, table string) *pgstore.DeadLetters {
	tb.Helper()
	d, err := pgstore.NewDeadLetters(pool, pgstore.WithTable(table))
	require.NoError(tb, err)
	require.NoError(tb, d.Migrate(context.Background()))
	return d
}

func TestDeadLettersConformance(t *testing.T) {
	pool, other := pgtest.Pool(t), pgtest.Pool(t)
	deadlettertest.Run(t, deadlettertest.Harness{
		New: func(t *testing.T) eachhook.DeadLetterStore {
			return newDeadLetters(t, pool, pgtest.Table(t, pool))
		},
		Replicas: func(t *testing.T) (a, b eachhook.DeadLetterStore) {
			table := pgtest.Table(t, pool)
			return newDeadLetters(t, pool, table), newDeadLetters(t, other, table)
		},
	})
}

func TestNewDeadLettersRejectsUnworkableConfig(t *testing.T) {
	_, err := pgstore.NewDeadLetters(nil)
	require.ErrorIs(t, err, pgstore.ErrInvalidOption)
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	require.NoError(t, err)
	defer pool.Close()
	for _, name := range []string{"", "a b", "x;drop", `"q"`} {
		_, err = pgstore.NewDeadLetters(pool, pgstore.WithTable(name))
		require.ErrorIs(t, err, pgstore.ErrInvalidOption, "table %q", name)
	}
}

// Two Handlers (replicas) share the claims and the dead letters in
// PostgreSQL: a delivery that failed on one is replayed, and another
// discarded, from the other.
func TestDeadLettersReplayAndDiscardOnAnotherReplica(t *testing.T) {
	const secret = "whsec_dead_letters"
	p1, p2 := pgtest.Pool(t), pgtest.Pool(t)
	claimsTable, deadTable := pgtest.Table(t, p1), pgtest.Table(t, p1)
	var fail atomic.Bool
	fail.Store(true)
	var runs atomic.Int32
	replica := func(pool *pgxpool.Pool) *eachhook.Handler {
		claims := newStore(t, pool, claimsTable)
		h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler)), eachhook.WithRetry(2, time.Millisecond),
			eachhook.WithStore(claims), eachhook.WithDeadLetters(newDeadLetters(t, pool, deadTable)))
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
		})
		return h
	}
	a, b := replica(p1), replica(p2)
	ctx := context.Background()
	for _, id := range []string{"replayed", "discarded"} {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", secret, id))
		require.Equal(t, 200, w.Code)
	}
	require.Eventually(t, func() bool {
		list, err := b.DeadLetters(ctx)
		return err == nil && len(list) == 2
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
