package outputs

import (
	"context"
	"net/netip"
	"time"
)

// SetSleep replaces the wait between attempts, so that a test records the
// waits instead of waiting.
func SetSleep(s *Saver, fn func(context.Context, time.Duration) error) { s.fetcher.sleep = fn }

// Exempt lets s dial addr (a test server's "127.0.0.1:port") as if it
// were public, so that a test can show what a public host's redirect to a
// private address meets.
func Exempt(s *Saver, addr string) { s.fetcher.exempt = netip.MustParseAddrPort(addr) }
