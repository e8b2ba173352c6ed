package pgstore_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/pgstore"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/eachhook/eachhook/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// proxyPool returns a pool on the test database through the proxy at
// addr (host:port), closed when the test ends.
func proxyPool(tb testing.TB, addr string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.DSN(tb))
	require.NoError(tb, err)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(tb, err)
	p, err := strconv.ParseUint(port, 10, 16)
	require.NoError(tb, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Fallbacks = host, uint16(p), nil
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}

// newStore returns a migrated store on table, closed when the test ends.
func newStore(tb testing.TB, pool *pgxpool.Pool, table string, opts ...pgstore.Option) *pgstore.Store {
	tb.Helper()
	s, err := pgstore.New(pool, append([]pgstore.Option{pgstore.WithTable(table)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	require.NoError(tb, s.Migrate(context.Background()))
	return s
}

func TestConformance(t *testing.T) {
	pool, other := pgtest.Pool(t), pgtest.Pool(t)
	table := pgtest.Table(t, pool)
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) eachhook.Store { return newStore(t, pool, table) },
		Replicas: func(t *testing.T) (a, b eachhook.Store) {
			return newStore(t, pool, table), newStore(t, other, table)
		},
		Outage: &storetest.Outage{
			Target: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
			NewStore: func(t *testing.T, addr string) eachhook.Store {
				return newStore(t, proxyPool(t, addr), table)
			},
			Claimed: func(t *testing.T, id string) bool {
				var ok bool
				err := pool.QueryRow(context.Background(),
					"SELECT EXISTS (SELECT 1 FROM "+table+" WHERE id = $1 AND expires_at > now())", id).Scan(&ok)
				require.NoError(t, err)
				return ok
			},
		},
	})
}

func TestNewRejectsUnworkableConfig(t *testing.T) {
	_, err := pgstore.New(nil)
	require.ErrorIs(t, err, pgstore.ErrInvalidOption)
	// A pool that never connects: New must not contact the server.
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	require.NoError(t, err)
	defer pool.Close()
	for _, name := range []string{"", "a b", "x;drop", "1abc", "a.b.c", `"q"`, strings.Repeat("t", 49), "s." + strings.Repeat("t", 49)} {
		_, err = pgstore.New(pool, pgstore.WithTable(name))
		require.ErrorIs(t, err, pgstore.ErrInvalidOption, "table %q", name)
	}
	for _, name := range []string{strings.Repeat("t", 48), strings.Repeat("s", 63) + "." + strings.Repeat("t", 48)} {
		s, err := pgstore.New(pool, pgstore.WithTable(name), pgstore.WithCleanupInterval(0))
		require.NoError(t, err, "table %q", name)
		s.Close()
	}
	_, err = pgstore.New(pool, pgstore.WithCleanupInterval(-time.Second))
	require.ErrorIs(t, err, pgstore.ErrInvalidOption)
	_, err = pgstore.New(pool, pgstore.WithLogger(nil))
	require.ErrorIs(t, err, pgstore.ErrInvalidOption)
	s, err := pgstore.New(pool, pgstore.WithCleanupInterval(0))
	require.NoError(t, err)
	_, _, err = s.Claim(context.Background(), "pred", 0)
	require.ErrorIs(t, err, pgstore.ErrInvalidTTL)
	require.ErrorIs(t, s.Complete(context.Background(), "pred", "", 0), pgstore.ErrInvalidTTL)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
}

// Migrate is idempotent and safe to run from several replicas at once, in
// a schema of its own too.
func TestMigrateConcurrently(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	schema := pgtest.Schema(t, pool)
	s, err := pgstore.New(pool, pgstore.WithTable(schema+".claims"), pgstore.WithCleanupInterval(0))
	require.NoError(t, err)
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.Migrate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, ok, err := s.Claim(ctx, "pred-1", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
}

// Cleanup deletes expired rows only, in batches, and the background
// cleanup runs it.
func TestCleanup(t *testing.T) {
	pool := pgtest.Pool(t)
	table := pgtest.Table(t, pool)
	s := newStore(t, pool, table, pgstore.WithCleanupInterval(0))
	ctx := context.Background()
	// 2500 expired rows (more than two batches) and one live claim.
	_, err := pool.Exec(ctx, "INSERT INTO "+table+" (id, token, expires_at) "+
		"SELECT 'old-' || g, gen_random_uuid(), now() - interval '1 minute' FROM generate_series(1, 2500) g")
	require.NoError(t, err)
	_, ok, err := s.Claim(ctx, "live", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)

	n, err := s.Cleanup(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2500), n)
	var left int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&left))
	require.Equal(t, 1, left)

	// The background cleanup of a second store on the same table.
	_, err = pool.Exec(ctx, "INSERT INTO "+table+" (id, token, expires_at) VALUES ('old', gen_random_uuid(), now())")
	require.NoError(t, err)
	bg := newStore(t, pool, table, pgstore.WithCleanupInterval(10*time.Millisecond))
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, bg.Close())
	_, ok, err = s.Claim(ctx, "live", time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "cleanup deleted a live claim")
}

// Ping is a real round trip: it fails while the server is unreachable.
func TestPing(t *testing.T) {
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	proxy := storetest.NewProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	direct := pgtest.Pool(t)
	s := newStore(t, proxyPool(t, proxy.Addr()), pgtest.Table(t, direct))
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	proxy.Cut()
	require.Error(t, s.Ping(ctx))
	proxy.Restore(t)
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
}

// A Claim whose answer is lost after PostgreSQL committed it returns an
// error (the Handler answers 503) and leaves no claim behind: the store
// deletes it once the database answers, so the sender's retry, on any
// replica, is processed.
func TestFailedClaimLeavesNoClaim(t *testing.T) {
	direct := pgtest.Pool(t)
	table := pgtest.Table(t, direct)
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	target := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	ctx := context.Background()
	claimed := func(id string) bool {
		var ok bool
		require.NoError(t, direct.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+table+" WHERE id = $1)", id).Scan(&ok))
		return ok
	}
	for _, sameStore := range []bool{false, true} {
		id := fmt.Sprintf("pred-lost-%v", sameStore)
		proxy := storetest.NewReplyDropper(t, target, id)
		s := newStore(t, proxyPool(t, proxy.Addr()), table)

		_, ok, err := s.Claim(ctx, id, time.Hour)
		require.Error(t, err)
		require.False(t, ok)
		require.True(t, proxy.Dropped())

		if sameStore {
			// The same store claims the id again before it was undone in
			// the background, or after: either way it wins.
			_, ok, err = s.Claim(ctx, id, time.Hour)
			require.NoError(t, err)
			require.True(t, ok)
			continue
		}
		require.Eventually(t, func() bool { return !claimed(id) }, 10*time.Second, 10*time.Millisecond,
			"the failed claim was not undone")
		_, ok, err = newStore(t, direct, table).Claim(ctx, id, time.Hour)
		require.NoError(t, err)
		require.True(t, ok)
	}
}

// Simultaneous claims of an id whose row has expired (and not yet been
// cleaned up) have exactly one winner, as for a new id.
func TestConcurrentClaimsOfExpiredRow(t *testing.T) {
	pool := pgtest.Pool(t)
	table := pgtest.Table(t, pool)
	stores := []*pgstore.Store{newStore(t, pool, table), newStore(t, pgtest.Pool(t), table)}
	ctx := context.Background()
	for round := range 5 {
		id := fmt.Sprintf("pred-expired-%d", round)
		_, err := pool.Exec(ctx, "INSERT INTO "+table+" (id, token, expires_at) VALUES ($1, gen_random_uuid(), now() - interval '1 second')", id)
		require.NoError(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, failed := 0, 0
		start := make(chan struct{})
		for i := range 50 {
			wg.Go(func() {
				<-start
				_, ok, err := stores[i%2].Claim(ctx, id, time.Hour)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
				} else if ok {
					won++
				}
			})
		}
		close(start)
		wg.Wait()
		require.Zero(t, failed)
		require.Equal(t, 1, won, "round %d", round)
	}
}
