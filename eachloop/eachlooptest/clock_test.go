package eachlooptest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var start = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

// A value that is ready when the sleeper sleeps is returned without a
// step, and the sleep is left to the next Step. Each round has both ready
// before StepUntilReceive looks, where a plain select would step half the
// time.
func TestStepUntilReceivePrefersAReadyValue(t *testing.T) {
	c := NewClock(start)
	ch := make(chan int, 1)
	slept := make(chan error, 1)
	for i := range 100 {
		go func() {
			ch <- i
			slept <- c.Sleep(context.Background(), time.Minute)
		}()
		require.Eventually(t, func() bool { return len(c.asleep) == 1 }, Guard, time.Millisecond)
		require.Equal(t, i, StepUntilReceive(t, c, ch))
		require.Equal(t, start.Add(time.Duration(i)*time.Minute), c.Now(), "no step while a value was ready")
		require.Equal(t, start.Add(time.Duration(i+1)*time.Minute), c.Step(t), "the sleep is still there to end")
		require.NoError(t, <-slept)
	}
}

// While ch is empty, StepUntilReceive ends each sleep.
func TestStepUntilReceiveStepsUntilTheValueComes(t *testing.T) {
	c := NewClock(start)
	ch := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		for range 3 {
			if err := c.Sleep(context.Background(), time.Minute); err != nil {
				done <- err
				return
			}
		}
		ch <- c.Now()
		done <- nil
	}()
	require.Equal(t, start.Add(3*time.Minute), StepUntilReceive(t, c, ch))
	require.NoError(t, <-done)
	require.Equal(t, start.Add(3*time.Minute), c.Now())
}
