package claimledger

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseToken(t *testing.T) {
	a := NewToken()
	got, ok := ParseToken(a.String())
	require.True(t, ok)
	require.Equal(t, a, got)
	for _, bad := range []string{"", "1", "zz" + a.String()[2:], a.String() + "00"} {
		_, ok := ParseToken(bad)
		require.False(t, ok, bad)
	}
}

// A Release whose delete fails leaves a claim of unknown outcome, undone in
// the background once the server answers again.
func TestFailedReleaseIsUndoneLater(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var undone atomic.Int32
	l := New(10, time.Millisecond, func(context.Context, string, Token) error {
		if down.Load() {
			return errors.New("server down")
		}
		undone.Add(1)
		return nil
	})
	defer l.Close()
	require.Error(t, l.Release(context.Background(), "p", NewToken(), time.Hour))
	require.Equal(t, 1, l.Doubts())
	down.Store(false)
	require.Eventually(t, func() bool { return l.Doubts() == 0 }, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(1), undone.Load())
}

// A claim of unknown outcome is undone in the background, retried while
// undo fails, and the goroutine ends when none is left.
func TestDoubtsAreUndone(t *testing.T) {
	var mu sync.Mutex
	fails := 3
	undone := map[string]Token{}
	l := New(10, time.Millisecond, func(ctx context.Context, id string, tok Token) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("down")
		}
		undone[id] = tok
		return nil
	})
	a, b := NewToken(), NewToken()
	l.Doubt("p1", a, time.Hour)
	l.Doubt("p2", b, time.Hour)
	require.Eventually(t, func() bool { return l.Doubts() == 0 }, 10*time.Second, time.Millisecond)
	mu.Lock()
	require.Equal(t, map[string]Token{"p1": a, "p2": b}, undone)
	mu.Unlock()
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.running
	}, 10*time.Second, time.Millisecond)
}

// Settle undoes id's doubtful claim before a new claim of id, and reports
// the failure to undo it.
func TestSettle(t *testing.T) {
	down := true
	var mu sync.Mutex
	l := New(10, time.Millisecond, func(ctx context.Context, id string, tok Token) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("down")
		}
		return nil
	})
	ctx := context.Background()
	require.NoError(t, l.Settle(ctx, "p1"))
	l.Doubt("p1", NewToken(), time.Hour)
	require.Error(t, l.Settle(ctx, "p1"))
	require.NoError(t, l.Settle(ctx, "p2"))
	mu.Lock()
	down = false
	mu.Unlock()
	require.NoError(t, l.Settle(ctx, "p1"))
	require.Zero(t, l.Doubts())
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.running
	}, 10*time.Second, time.Millisecond)
}

// BenchmarkLocalWork measures what a winning Claim does on the client
// beyond the command it sends: drawing a token and writing it out.
func BenchmarkLocalWork(b *testing.B) {
	for b.Loop() {
		_ = NewToken().String()
	}
}

// Close ends the undo goroutine even while undo fails, and a later doubt
// starts none.
func TestClose(t *testing.T) {
	l := New(10, time.Hour, func(ctx context.Context, id string, tok Token) error { return errors.New("down") })
	l.Doubt("p1", NewToken(), time.Hour)
	l.Close()
	l.Doubt("p2", NewToken(), time.Hour)
	require.Equal(t, 2, l.Doubts())
	l.Close()
}

// Two claims of one id whose outcome is unknown are both undone.
func TestDoubtsOfOneId(t *testing.T) {
	var mu sync.Mutex
	var undone []Token
	l := New(10, time.Hour, func(ctx context.Context, id string, tok Token) error {
		mu.Lock()
		defer mu.Unlock()
		undone = append(undone, tok)
		return nil
	})
	defer l.Close()
	a, b := NewToken(), NewToken()
	l.mu.Lock()
	l.closed = true // no background goroutine: Settle does the work
	l.mu.Unlock()
	l.Doubt("p1", a, time.Hour)
	l.Doubt("p1", b, time.Hour)
	require.Equal(t, 2, l.Doubts())
	require.NoError(t, l.Settle(context.Background(), "p1"))
	require.Zero(t, l.Doubts())
	require.ElementsMatch(t, []Token{a, b}, undone)
}

// The claims of unknown outcome are bounded too.
func TestDoubtsAreBounded(t *testing.T) {
	l := New(3, time.Hour, func(context.Context, string, Token) error { return errors.New("down") })
	defer l.Close()
	for i := range 10 {
		l.Doubt("p"+strconv.Itoa(i), NewToken(), time.Hour)
	}
	require.Equal(t, 3, l.Doubts())
}
