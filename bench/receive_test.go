package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	"github.com/stretchr/testify/require"
)

// statusWriter is a ResponseWriter that keeps only the status code, so that
// the benchmark times the handler and not a recorder.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *statusWriter) WriteHeader(code int)        { w.code = code }

// seedDeliveries returns n deliveries of the seed success payload, each with
// its own id, signed with the original (body only) scheme that the
// hand-written handler checks.
func seedDeliveries(n int, secret string) []Delivery {
	tpl := eachhooktest.SuccessBody(ID(0))
	at := bytes.Index(tpl, []byte(ID(0)))
	ds := make([]Delivery, n)
	for i := range ds {
		body := bytes.Clone(tpl)
		AppendID(body[at:at], uint64(i+1))
		ds[i] = Delivery{ID: string(body[at : at+IDLen]), Body: body, Signature: signature.Sign(secret, "", body)}
	}
	return ds
}

// receiveCase is one handler of BenchmarkReceive. newHandler returns the
// handler for n deliveries and a function that waits until their callbacks
// have run and then stops whatever the handler started. Only a handler that
// deduplicates needs a fresh id for each delivery.
type receiveCase struct {
	name       string
	freshIDs   bool
	newHandler func(tb testing.TB, n int) (h http.Handler, finish func())
}

var receiveCases = []receiveCase{
	{"eachhook", true, func(tb testing.TB, n int) (http.Handler, func()) {
		h, err := eachhook.New(eachhook.WithSecret(benchSecret), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(tb, err)
		var done atomic.Int64
		all := make(chan struct{})
		h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
			if done.Add(1) == int64(n) {
				close(all)
			}
			return nil
		})
		return h, func() {
			<-all
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(tb, h.Shutdown(ctx))
		}
	}},
	{"hand-written", false, func(tb testing.TB, n int) (http.Handler, func()) {
		var wg sync.WaitGroup
		h := HandWritten(benchSecret, func(payload map[string]any) {
			defer wg.Done()
		})
		// The handler starts one goroutine per accepted delivery.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			wg.Add(1)
			h.ServeHTTP(w, r)
		}), wg.Wait
	}},
	{"bare", false, func(tb testing.TB, n int) (http.Handler, func()) {
		return Bare(), func() {}
	}},
}

// serveAll sends n deliveries to h, taking ds in order and round, and
// reports how many times a delivery had to be sent again after a 503 (a
// full queue).
func serveAll(tb testing.TB, h http.Handler, ds []Delivery, n int) (retries int) {
	r := httptest.NewRequest(http.MethodPost, Path, nil)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(signature.Header, "")
	sig := r.Header[signature.Header]
	rd := bytes.NewReader(nil)
	r.Body = io.NopCloser(rd)
	w := &statusWriter{h: http.Header{}}
	for i := 0; i < n; i++ {
		d := &ds[i%len(ds)]
		rd.Reset(d.Body)
		r.ContentLength = int64(len(d.Body))
		sig[0] = d.Signature
		w.code = 0
		h.ServeHTTP(w, r)
		switch w.code {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			// Back off as a sender would, leaving the CPU to the workers.
			retries++
			time.Sleep(10 * time.Microsecond)
			i--
		default:
			tb.Fatalf("delivery %d: status %d", i, w.code)
		}
	}
	return retries
}

// TestReceiveHandlersAccept checks that every handler of BenchmarkReceive
// answers 200 to fresh signed deliveries and runs a callback for each.
func TestReceiveHandlersAccept(t *testing.T) {
	for _, c := range receiveCases {
		t.Run(c.name, func(t *testing.T) {
			const n = 200
			h, finish := c.newHandler(t, n)
			serveAll(t, h, seedDeliveries(n, benchSecret), n)
			finish() // returns only once every callback ran
		})
	}
}

// BenchmarkReceive times the in-process receive path per delivery: the
// handler's work plus the asynchronous work it started, which the timer
// waits for at the end.
func BenchmarkReceive(b *testing.B) {
	for _, c := range receiveCases {
		b.Run("handler="+c.name, func(b *testing.B) {
			ds := seedDeliveries(min(b.N, 1024), benchSecret)
			if c.freshIDs {
				ds = seedDeliveries(b.N, benchSecret)
			}
			h, finish := c.newHandler(b, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			retries := serveAll(b, h, ds, b.N)
			finish()
			cpu := processCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(retries)/float64(b.N), "retries/op")
			// CPU time counts the work of every goroutine, on both cores,
			// and is less disturbed than wall time by other processes.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
