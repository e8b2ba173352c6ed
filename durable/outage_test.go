package durable_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// tcpProxy forwards 127.0.0.1 connections to a server. Stopping it cuts
// every connection and refuses new ones, which the client sees as the
// server going away, without disturbing the server other tests share.
type tcpProxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// startProxy listens on addr ("127.0.0.1:0" for any port) and forwards to
// target.
func startProxy(t *testing.T, addr, target string) *tcpProxy {
	t.Helper()
	var ln net.Listener
	var err error
	// The port of a stopped proxy may take a moment to be free again.
	require.Eventually(t, func() bool { ln, err = net.Listen("tcp", addr); return err == nil }, 10*time.Second, 10*time.Millisecond)
	p := &tcpProxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, s) {
			return
		}
		for _, pair := range [][2]net.Conn{{c, s}, {s, c}} {
			p.wg.Go(func() {
				_, _ = io.Copy(pair[0], pair[1])
				pair[0].Close()
				pair[1].Close()
			})
		}
	}
}

// track records conns, or closes them and reports false if the proxy
// stopped.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// stop closes the listener and every connection, and waits for the
// copying goroutines. It may be called more than once.
func (p *tcpProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// TestPostgresOutage cuts the connection to Postgres while the Handler
// serves: deliveries get 503, never a 200 without a committed insert, and
// once the database is back the resent deliveries run exactly once.
func TestPostgresOutage(t *testing.T) {
	ctx := context.Background()
	direct := postgresPool(t)
	schema := postgresSchema(t, direct)

	cfg, err := pgxpool.ParseConfig(postgresDSN())
	require.NoError(t, err)
	target := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	proxy := startProxy(t, "127.0.0.1:0", target)
	host, port, err := net.SplitHostPort(proxy.addr())
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
	rec := newRecord()
	h := newHandler(t, q, rec.register)
	deliver := func(id string) int { return serve(h, eachhooktest.NewSuccessRequest("/", secret, id)) }

	require.Equal(t, 200, deliver("o1"))
	rec.wait(t, 1)

	proxy.stop()
	for _, id := range []string{"o2", "o3", "o2"} {
		require.Equal(t, 503, deliver(id), id)
	}
	var stored int
	require.NoError(t, direct.QueryRow(ctx, "SELECT count(*) FROM "+schema+".river_job").Scan(&stored))
	require.Equal(t, 1, stored, "no job may be stored during the outage")

	startProxy(t, proxy.addr(), target)
	require.Eventually(t, func() bool { return deliver("o2") == 200 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 200, deliver("o3"))
	require.Equal(t, 200, deliver("o1")) // a duplicate, not run again
	rec.wait(t, 2)
	require.NoError(t, h.Shutdown(ctx))

	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, map[string][]int{"o1": {1}, "o2": {1}, "o3": {1}}, rec.runs)
}
