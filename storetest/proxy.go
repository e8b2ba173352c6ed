package storetest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
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

// ReplyDropper is a TCP proxy on loopback that closes the connection
// instead of relaying the server's answer to the first request containing
// a marker, after the server received it: what a network failure at the
// worst moment does.
type ReplyDropper struct {
	ln      net.Listener
	target  string
	marker  []byte
	dropped atomic.Bool
	wg      sync.WaitGroup
}

// NewReplyDropper starts a ReplyDropper to target (host:port) that drops
// the answer to the first request containing marker. It is closed when the
// test ends.
func NewReplyDropper(t testing.TB, target, marker string) *ReplyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &ReplyDropper{ln: ln, target: target, marker: []byte(marker)}
	p.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(conn) })
		}
	})
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *ReplyDropper) pipe(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var drop atomic.Bool // the next reply on this connection is dropped
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if bytes.Contains(buf[:n], p.marker) && p.dropped.CompareAndSwap(false, true) {
					drop.Store(true)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if drop.Load() {
			client.Close()
			break
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	client.Close()
	io.Copy(io.Discard, server)
	<-done
}

// Addr returns the address clients dial instead of the server's.
func (p *ReplyDropper) Addr() string { return p.ln.Addr().String() }

// Dropped reports whether an answer was dropped.
func (p *ReplyDropper) Dropped() bool { return p.dropped.Load() }
