package eachhook_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
)

// BenchmarkServeHTTP measures one accepted delivery: the seed success
// payload with a fresh id each operation, signed, through ServeHTTP with a
// ResponseRecorder, and a callback that does nothing. Signing is part of
// each operation.
func BenchmarkServeHTTP(b *testing.B) {
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueueSize(1<<16))
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

	// The id has a fixed width so that each operation rewrites its digits
	// in place and the body keeps its length.
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
		r.Header.Set(eachhook.HeaderSignature, eachhook.Sign(secret, "", body))
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("op %d: status %d: %s", n, w.Code, w.Body)
		}
	}
}
