package expectationstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachloop"
)

// Benchmark measures the two calls on a webhook's path against e, which
// must be empty: Secrets (the Handler's SecretLookup) and Done (the Loop's
// tracking Store, after a won claim), over 1000 recorded expectations.
func Benchmark(b *testing.B, e eachloop.Expectations) {
	ctx := context.Background()
	const n = 1000
	for i := range n {
		if err := e.Expect(ctx, eachloop.Expectation{ID: fmt.Sprint("pred-", i), Secret: "s", CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Secrets", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := e.Secrets(ctx, fmt.Sprint("pred-", i%n)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Done", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := e.Done(ctx, fmt.Sprint("pred-", i%n)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
