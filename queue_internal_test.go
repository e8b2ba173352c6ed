package eachhook

import (
	"testing"
	"time"
)

func TestBackoffForDoublesAndCaps(t *testing.T) {
	cases := []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{time.Second, 2, time.Second},
		{time.Second, 3, 2 * time.Second},
		{time.Second, 7, 32 * time.Second},
		{time.Second, 8, maxBackoff},
		{time.Second, 57, maxBackoff}, // a shift that would wrap to 0
		{time.Second, 1 << 30, maxBackoff},
		{time.Millisecond, 12, 1024 * time.Millisecond},
		{0, 40, 0},
		{2 * time.Minute, 2, maxBackoff},
	}
	for _, c := range cases {
		if got := backoffFor(c.base, c.attempt); got != c.want {
			t.Errorf("backoffFor(%v, %d) = %v, want %v", c.base, c.attempt, got, c.want)
		}
	}
}
