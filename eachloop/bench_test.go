package eachloop_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/signature"
)

type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// BenchmarkServeHTTPPerPredictionSecret measures the Handler's request
// path when every prediction has its own secret: the SecretLookup of a
// Loop on MemoryExpectations, and the Loop's tracking Store, which marks
// the expectation done. Compare with the core's BenchmarkServeHTTP (one
// shared secret).
func BenchmarkServeHTTPPerPredictionSecret(b *testing.B) {
	client, err := eachlabs.NewClient("k")
	if err != nil {
		b.Fatal(err)
	}
	exp := newMemoryExpectations(b)
	loop, err := eachloop.New(client, exp, "https://example.com/hook", eachloop.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	store := eachhook.NewMemoryStore()
	defer store.Close()
	h, err := eachhook.New(eachhook.WithSecretLookup(loop.SecretLookup), eachhook.WithStore(loop.Store(store)),
		eachhook.WithLogger(quiet), eachhook.WithQueueSize(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })

	ctx := context.Background()
	bodies, sigs := make([][]byte, b.N), make([]string, b.N)
	for i := range b.N {
		id := "pred-" + strconv.Itoa(i)
		secret := strconv.Itoa(i) + "-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		if err := exp.Expect(ctx, eachloop.Expectation{ID: id, Secret: secret, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		bodies[i] = eachhooktest.SuccessBody(id)
		sigs[i] = signature.Sign(secret, "", bodies[i])
	}
	r, _ := http.NewRequest(http.MethodPost, "/webhook", nil)
	r.Header.Set("Content-Type", "application/json")
	body := &benchBody{}
	r.Body = body
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		body.Reset(bodies[i])
		r.ContentLength = int64(len(bodies[i]))
		r.Header[signature.Header] = sigs[i : i+1]
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("delivery %d: status %d", i, w.code)
		}
	}
	b.StopTimer()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		b.Fatal(err)
	}
	if n := len(mustPending(b, exp)); n != 0 {
		b.Fatalf("%d expectations still pending", n)
	}
}

func mustPending(b *testing.B, exp eachloop.Expectations) []eachloop.Expectation {
	p, err := exp.Pending(context.Background(), time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return p
}
