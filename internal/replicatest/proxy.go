package replicatest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a loopback address to a server, and
// can be cut (as if the server went away) and restored. Clients given
// [Proxy.Addr] instead of the server's address see a real outage: open
// connections are closed and new ones refused.
type Proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	gen   int          // incremented by every cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port) on a free loopback port. It
// is closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: make(map[net.Conn]struct{})}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the address clients dial instead of the server's.
func (p *Proxy) Addr() string { return p.addr }

// Cut closes every open connection and stops accepting new ones, so that
// dialing Addr is refused. When Cut returns, no byte passes any more.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.gen++
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore accepts connections on Addr again after a [Proxy.Cut].
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	// The port was ours a moment ago; retry briefly in case the kernel
	// has not let go of it yet.
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
}

// Close cuts the proxy and waits for its goroutines to end.
func (p *Proxy) Close() {
	p.Cut()
	p.wg.Wait()
}

// serve starts accepting on ln. p.mu must be held.
func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln, p.gen)
}

func (p *Proxy) accept(ln net.Listener, gen int) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Cut
		}
		if !p.track(gen, c) {
			return
		}
		p.wg.Add(1)
		go p.pipe(c, gen)
	}
}

// track registers c as open unless a cut happened since generation gen
// began, in which case it closes c and reports false.
func (p *Proxy) track(gen int, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != gen {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) pipe(client net.Conn, gen int) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(gen, server) {
		client.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(server, client)
		server.Close()
		client.Close()
	}()
	io.Copy(client, server)
	client.Close()
	server.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}
