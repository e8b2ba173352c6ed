package eachhookotel_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhookotel"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkServeHTTPWithObserver is the core's BenchmarkServeHTTP with
// this observer on SDK meter and tracer providers (every span sampled, no
// exporter), so that the two compare the cost of the observer.
func BenchmarkServeHTTPWithObserver(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	defer mp.Shutdown(context.Background())
	defer tp.Shutdown(context.Background())
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(mp), eachhookotel.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)), eachhook.WithQueueSize(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
	}()
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })

	const idTemplate = "bench-0000000000000000"
	body := eachhooktest.SuccessBody(idTemplate)
	at := bytes.Index(body, []byte(idTemplate)) + len("bench-")
	r := httptest.NewRequest("POST", "/webhook", nil)
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = int64(len(body))
	rd := bytes.NewReader(body)
	var digits [20]byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		d := strconv.AppendInt(digits[:0], int64(n), 10)
		copy(body[at+16-len(d):at+16], d)
		r.Header.Set(signature.Header, signature.Sign(secret, "", body))
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("op %d: status %d: %s", n, w.Code, w.Body)
		}
	}
}
