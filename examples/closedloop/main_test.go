package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBothOutcomesArrive runs the example: the first outcome comes by
// webhook, the second, whose webhook is lost, by polling.
func TestBothOutcomesArrive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, ln, &out, slog.New(slog.DiscardHandler)))
	require.Equal(t, `created pred-1 ("a lighthouse at dawn")
pred-1 succeeded, learned by webhook: https://storage.example.com/pred-1.png
created pred-2 ("a lighthouse whose webhook gets lost")
pred-2 succeeded, learned by poll: https://storage.example.com/pred-2.png
`, out.String())
}
