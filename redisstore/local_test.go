package redisstore

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkLocalWork measures what a winning Claim does on the client
// beyond the SET NX it sends: drawing a token and remembering it, with the
// token map full (DefaultMaxTokens entries, so the oldest is forgotten on
// every claim).
func BenchmarkLocalWork(b *testing.B) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	b.Cleanup(func() { c.Close() })
	s, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 2*DefaultMaxTokens)
	for i := range ids {
		ids[i] = "pred-" + strconv.Itoa(i)
	}
	for i := range DefaultMaxTokens {
		s.remember(&claim{id: ids[i], token: newToken(), expires: s.now().Add(time.Hour)}, true)
	}
	i := DefaultMaxTokens
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		s.remember(&claim{id: id, token: newToken(), expires: s.now().Add(time.Hour)}, true)
	}
}
