package storetest

// The subtests of Run over real HTTP: several Handlers sharing one store,
// as replicas behind a load balancer share it.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
)

const secret = "whsec_storetest"

// replica is one Handler behind its own HTTP server, with its callback
// counts.
type replica struct {
	h   *eachhook.Handler
	srv *httptest.Server
}

// cluster is a set of replicas sharing one store, and the callbacks they
// ran, by prediction id.
type cluster struct {
	t        *testing.T
	replicas []*replica
	client   *http.Client
	rec      *eachhooktest.Recorder // every replica's callback runs
}

// newCluster starts n replicas; replica i uses stores[i%len(stores)].
func newCluster(t *testing.T, stores []eachhook.Store, n int) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		rec:    eachhooktest.NewRecorder(),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second},
	}
	for i := range n {
		h, err := eachhook.New(
			eachhook.WithSecret(secret),
			eachhook.WithStore(stores[i%len(stores)]),
			eachhook.WithLogger(slog.New(slog.DiscardHandler)),
			eachhook.WithWorkers(4),
		)
		if err != nil {
			t.Fatalf("eachhook.New: %v", err)
		}
		h.OnSuccess(c.rec.Success(nil))
		c.replicas = append(c.replicas, &replica{h: h, srv: httptest.NewServer(h)})
	}
	t.Cleanup(func() { c.shutdown() })
	return c
}

// shutdown drains every replica's accepted deliveries, so that the
// callback counts are final. It may be called more than once.
func (c *cluster) shutdown() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range c.replicas {
		r.srv.Close()
		if err := r.h.Shutdown(ctx); err != nil {
			c.t.Errorf("Shutdown: %v", err)
		}
	}
	c.client.CloseIdleConnections()
}

// send delivers the success payload of id, signed, to replica i (modulo
// the number of replicas) and returns the status code, or 0 and the error
// if no answer came.
func (c *cluster) send(i int, id string) (int, error) {
	url := c.replicas[i%len(c.replicas)].srv.URL
	req, err := eachhooktest.NewClientRequest(url, secret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, time.Now())
	if err != nil {
		return 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		return resp.StatusCode, fmt.Errorf("503 without Retry-After")
	}
	return resp.StatusCode, nil
}

// sendAll sends each id once, concurrently, spreading them over the
// replicas, and returns the status codes in the order of ids.
func (c *cluster) sendAll(ids []string) []int {
	return c.sendAllRetrying(ids, 0)
}

// resendAll is sendAll, but like the sender it sends a delivery again while
// it is answered 503, for up to wait: a client may need a moment to
// reconnect after its server came back.
func (c *cluster) resendAll(ids []string, wait time.Duration) []int {
	return c.sendAllRetrying(ids, wait)
}

func (c *cluster) sendAllRetrying(ids []string, wait time.Duration) []int {
	codes := make([]int, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			deadline := time.Now().Add(wait)
			for try := 0; ; try++ {
				code, err := c.send(i+try, id)
				if err != nil {
					c.t.Errorf("delivery %s: %v", id, err)
				}
				codes[i] = code
				if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return codes
}

func (c *cluster) callCount(id string) int {
	n := 0
	for _, r := range c.rec.Runs() {
		if r.ID == id {
			n++
		}
	}
	return n
}

// runSharedStore is the TwoHandlers subtest of [Run]: the first Handler
// uses a, the second b.
func runSharedStore(t *testing.T, a, b eachhook.Store) {
	t.Helper()
	c := newCluster(t, []eachhook.Store{a, b}, 2)
	id := fmt.Sprintf("pred-shared-%d", time.Now().UnixNano())
	const copies = 100
	var wg sync.WaitGroup
	var ok, other atomic.Int32
	start := make(chan struct{})
	for i := range copies {
		wg.Go(func() {
			<-start
			code, err := c.send(i, id)
			if err != nil || code != http.StatusOK {
				other.Add(1)
				t.Errorf("copy %d: status %d, error %v; want 200", i, code, err)
				return
			}
			ok.Add(1)
		})
	}
	close(start)
	wg.Wait()
	c.shutdown()
	if ok.Load() != copies || other.Load() != 0 {
		t.Fatalf("%d copies: %d answered 200, %d otherwise; want all 200", copies, ok.Load(), other.Load())
	}
	if n := c.callCount(id); n != 1 {
		t.Fatalf("%d copies over 2 Handlers ran the callback %d times, want exactly 1", copies, n)
	}
}

// runLeaseExpiry is the LeaseExpiryOverHTTP subtest of [Run]: the
// process that dies claims through a, the Handler uses b.
func runLeaseExpiry(t *testing.T, a, b eachhook.Store) {
	t.Helper()
	c := newCluster(t, []eachhook.Store{b}, 1)
	id := fmt.Sprintf("pred-crashed-%d", time.Now().UnixNano())
	const lease = 500 * time.Millisecond
	if _, ok, err := a.Claim(context.Background(), id, lease); err != nil || !ok {
		t.Fatalf("Claim through the replica that dies: %v, %v", ok, err)
	}
	// The claiming process is gone: nothing completes or releases it.
	if code, err := c.send(0, id); err != nil || code != http.StatusOK {
		t.Fatalf("redelivery within the lease: %d, %v; want 200", code, err)
	}
	time.Sleep(2 * lease)
	if code, err := c.send(0, id); err != nil || code != http.StatusOK {
		t.Fatalf("redelivery after the lease: %d, %v; want 200", code, err)
	}
	c.shutdown()
	if n := c.callCount(id); n != 1 {
		t.Fatalf("a delivery whose claim's lease ran out after its process died ran %d callbacks, want 1 (the redelivery after the lease)", n)
	}
	// Done now: a later copy is a duplicate even after the lease.
}

// health returns the status code and body of replica i's Health handler.
func (c *cluster) health(i int) (int, string) {
	w := httptest.NewRecorder()
	c.replicas[i%len(c.replicas)].h.Health().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	return w.Code, w.Body.String()
}

// runOutage is the Outage subtest of [Run].
func runOutage(t *testing.T, o Outage) {
	t.Helper()
	proxy := NewProxy(t, o.Target)
	c := newCluster(t, []eachhook.Store{o.NewStore(t, proxy.Addr()), o.NewStore(t, proxy.Addr())}, 2)
	tag := time.Now().UnixNano()
	ids := func(phase string, n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("pred-outage-%d-%s-%d", tag, phase, i)
		}
		return s
	}
	requireAll := func(what string, codes []int, ids []string, want int) {
		t.Helper()
		for i, code := range codes {
			if code != want {
				t.Fatalf("%s: delivery %s answered %d, want %d", what, ids[i], code, want)
			}
		}
	}

	// Up: accepted and claimed.
	before := ids("before", 10)
	requireAll("server up", c.sendAll(before), before, http.StatusOK)
	for _, id := range before {
		if !o.Claimed(t, id) {
			t.Fatalf("server up: delivery %s answered 200 without a committed claim", id)
		}
	}

	if code, body := c.health(0); code != http.StatusOK {
		t.Fatalf("server up: health %d %s, want 200", code, body)
	}

	// Down: every delivery is 503 and claims nothing.
	proxy.Cut()
	for i := range c.replicas {
		code, body := c.health(i)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"store unreachable"`) {
			t.Fatalf("server down: replica %d's health %d %s, want 503 store unreachable", i, code, body)
		}
	}
	down := ids("down", 20)
	requireAll("server down", c.sendAll(down), down, http.StatusServiceUnavailable)
	requireAll("server down, copies of accepted deliveries", c.sendAll(before), before, http.StatusServiceUnavailable)
	for _, id := range down {
		if o.Claimed(t, id) {
			t.Fatalf("server down: delivery %s answered 503 but left a claim", id)
		}
	}

	// Back: the resent deliveries are processed, and the copies of the
	// accepted ones are still duplicates.
	proxy.Restore(t)
	deadline := time.Now().Add(30 * time.Second)
	for code, body := c.health(0); code != http.StatusOK; code, body = c.health(0) {
		if time.Now().After(deadline) {
			t.Fatalf("server back: health %d %s, want 200", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	requireAll("server back", c.resendAll(down, 30*time.Second), down, http.StatusOK)
	requireAll("server back, copies of accepted deliveries", c.resendAll(before, 30*time.Second), before, http.StatusOK)

	// Cut in the middle of a stream of deliveries.
	mid := ids("mid", 120)
	codes := make([]int, len(mid))
	var answered atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	cut := make(chan struct{})
	wg.Go(func() {
		defer close(cut)
		deadline := time.Now().Add(20 * time.Second)
		for answered.Load() < 40 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		proxy.Cut()
	})
	for i, id := range mid {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if i >= 80 {
				<-cut // the last third surely meets the outage
			}
			code, err := c.send(i, id)
			if err != nil {
				t.Errorf("delivery %s: %v", id, err)
			}
			codes[i] = code
			answered.Add(1)
		})
	}
	wg.Wait()
	var accepted, refused []string
	committed := 0 // refused, yet their claim committed before the cut
	for i, code := range codes {
		switch code {
		case http.StatusOK:
			accepted = append(accepted, mid[i])
		case http.StatusServiceUnavailable:
			refused = append(refused, mid[i])
			if o.Claimed(t, mid[i]) {
				committed++
			}
		default:
			t.Fatalf("cut mid-stream: delivery %s answered %d, want 200 or 503", mid[i], code)
		}
	}
	if len(accepted) == 0 || len(refused) == 0 {
		t.Fatalf("cut mid-stream: %d accepted, %d refused; the cut missed the stream", len(accepted), len(refused))
	}
	for _, id := range accepted {
		if !o.Claimed(t, id) {
			t.Fatalf("cut mid-stream: delivery %s answered 200 without a committed claim", id)
		}
	}
	proxy.Restore(t)
	// A refused delivery must leave no claim once the server is back, or
	// the sender's retry would be taken for a duplicate and dropped.
	deadline = time.Now().Add(30 * time.Second)
	for _, id := range refused {
		for o.Claimed(t, id) {
			if time.Now().After(deadline) {
				t.Fatalf("cut mid-stream: delivery %s answered 503 still holds a claim after the server came back", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	requireAll("resent after the mid-stream cut", c.resendAll(refused, 30*time.Second), refused, http.StatusOK)
	t.Logf("cut mid-stream: %d accepted, %d refused and resent, of which %d had their claim committed before the cut (and undone after)",
		len(accepted), len(refused), committed)

	c.shutdown()
	for _, id := range before {
		if n := c.callCount(id); n != 1 {
			t.Errorf("accepted before the outage: %s ran %d callbacks, want 1", id, n)
		}
	}
	for _, id := range down {
		if n := c.callCount(id); n != 1 {
			t.Errorf("refused during the outage and resent: %s ran %d callbacks, want 1", id, n)
		}
	}
	for _, id := range append(accepted, refused...) {
		if n := c.callCount(id); n != 1 {
			t.Errorf("cut mid-stream: %s ran %d callbacks, want 1", id, n)
		}
	}
}
