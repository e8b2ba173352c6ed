package eachhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

// benchWriter is a reusable ResponseWriter, so that the benchmarks measure
// the handlers rather than httptest.ResponseRecorder.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// deliveries returns n signed success bodies with distinct ids and their
// signatures.
func deliveries(n int) ([][]byte, []string) {
	bodies := make([][]byte, n)
	sigs := make([]string, n)
	for i := range bodies {
		bodies[i] = eachhooktest.SuccessBody("pred-" + strconv.Itoa(i) + "-0000-0000-0000-000000000000"[len(strconv.Itoa(i)):])
		sigs[i] = signature.Sign(secret, "", bodies[i])
	}
	return bodies, sigs
}

// serveFresh runs h on b.N signed deliveries with fresh ids and fails the
// benchmark unless every one is answered 200.
func serveFresh(b *testing.B, h http.Handler) {
	bodies, sigs := deliveries(b.N)
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
}

// BenchmarkServeHTTP measures the request path of a Handler: read, verify,
// decode the envelope, claim the id, queue the delivery, answer 200.
func BenchmarkServeHTTP(b *testing.B) {
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueueSize(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	serveFresh(b, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBareHandler is the floor for BenchmarkServeHTTP: a handler that
// only reads the body and answers 200.
func BenchmarkBareHandler(b *testing.B) {
	serveFresh(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
}

var verifySizes = []struct {
	name string
	n    int
}{{"300B", 300}, {"4KiB", 4 << 10}, {"64KiB", 64 << 10}}

func verifyBody(n int) []byte { return bytes.Repeat([]byte("a"), n) }

// BenchmarkVerify measures Verifier.Verify on the original body scheme.
func BenchmarkVerify(b *testing.B) {
	v, err := signature.NewVerifier(secret)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, size := range verifySizes {
		body := verifyBody(size.n)
		sig := signature.Sign(secret, "", body)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				if err := v.Verify(body, sig, "", now, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyFloor is the floor for BenchmarkVerify: a pre-keyed
// HMAC-SHA256 (Reset, Write, Sum), hex decoding and hmac.Equal.
func BenchmarkVerifyFloor(b *testing.B) {
	mac := hmac.New(sha256.New, []byte(secret))
	for _, size := range verifySizes {
		body := verifyBody(size.n)
		sig := signature.Sign(secret, "", body)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			var want [sha256.Size]byte
			for b.Loop() {
				if _, err := hex.Decode(want[:], []byte(sig)); err != nil {
					b.Fatal(err)
				}
				mac.Reset()
				mac.Write(body)
				if !hmac.Equal(mac.Sum(nil), want[:]) {
					b.Fatal("mismatch")
				}
			}
		})
	}
}
