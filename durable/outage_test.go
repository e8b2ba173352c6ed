package durable_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/pgstore/pgtest"
	"github.com/eachhook/eachhook/storetest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// TestPostgresOutage cuts the connection to Postgres while the Handler
// serves: deliveries get 503, never a 200 without a committed insert, and
// once the database is back the resent deliveries run exactly once.
func TestPostgresOutage(t *testing.T) {
	ctx := context.Background()
	direct := pgtest.Pool(t)
	schema := postgresSchema(t, direct)

	cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	target := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	proxy := storetest.NewProxy(t, target)
	host, port, err := net.SplitHostPort(proxy.Addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()

	q, err := durable.NewPostgres(pool, durable.Config{Logger: quiet, Schema: schema})
	require.NoError(t, err)
	rec := eachhooktest.NewRecorder()
	h := newHandler(t, q, rec.Register)
	deliver := func(id string) int { return serve(h, eachhooktest.NewSuccessRequest("/", secret, id)) }

	require.Equal(t, 200, deliver("o1"))
	wait(t, rec, 1)

	proxy.Cut()
	for _, id := range []string{"o2", "o3", "o2"} {
		require.Equal(t, 503, deliver(id), id)
	}
	var stored int
	require.NoError(t, direct.QueryRow(ctx, "SELECT count(*) FROM "+schema+".river_job").Scan(&stored))
	require.Equal(t, 1, stored, "no job may be stored during the outage")

	proxy.Restore(t)
	require.Eventually(t, func() bool { return deliver("o2") == 200 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 200, deliver("o3"))
	require.Equal(t, 200, deliver("o1")) // a duplicate, not run again
	wait(t, rec, 3)
	require.NoError(t, h.Shutdown(ctx))

	require.Equal(t, map[string][]int{"o1": {1}, "o2": {1}, "o3": {1}}, attempts(rec))
}
