package bench

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/stretchr/testify/require"
)

// memoryIDs is how many distinct ids BenchmarkDedupeMemory holds.
const memoryIDs = 1_000_000

// heapAfterGC returns the live heap once the garbage collector has run.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// dedupeSet is an in-memory set of claimed ids measured by
// BenchmarkDedupeMemory. fill claims n distinct ids; expire lets their TTL
// pass and evicts them.
type dedupeSet struct {
	name  string
	build func(tb testing.TB) (fill func(n int), expire func(), close func())
}

const memoryTTL = time.Hour

var dedupeSets = []dedupeSet{
	{"eachhook.MemoryStore", func(tb testing.TB) (func(int), func(), func()) {
		// The background sweep (every minute) never fires during the run:
		// the ids get a TTL of a millisecond, and Sweep is called by hand
		// once it has passed. Expired ids are held until a sweep.
		const ttl = time.Millisecond
		s := eachhook.NewMemoryStore()
		ctx := context.Background()
		fill := func(n int) {
			for i := range n {
				_, ok, err := s.Claim(ctx, ID(uint64(i)), ttl)
				if err != nil || !ok {
					tb.Fatalf("claim %d: %v %v", i, ok, err)
				}
			}
			require.Equal(tb, n, s.Len())
		}
		expire := func() {
			time.Sleep(2 * ttl)
			s.Sweep()
			require.Zero(tb, s.Len())
		}
		return fill, expire, func() { require.NoError(tb, s.Close()) }
	}},
	// The two obvious alternatives, for scale. Neither evicts by itself;
	// expire deletes every entry as a sweep would.
	{"map[string]int64", func(tb testing.TB) (func(int), func(), func()) {
		var mu sync.Mutex
		m := map[string]int64{}
		fill := func(n int) {
			exp := time.Now().Add(memoryTTL).UnixNano()
			for i := range n {
				mu.Lock()
				m[ID(uint64(i))] = exp
				mu.Unlock()
			}
		}
		expire := func() {
			mu.Lock()
			// Go maps never shrink, so a sweep must rebuild the map.
			m = map[string]int64{}
			mu.Unlock()
		}
		return fill, expire, func() {}
	}},
	{"sync.Map", func(tb testing.TB) (func(int), func(), func()) {
		var m sync.Map
		fill := func(n int) {
			exp := time.Now().Add(memoryTTL).UnixNano()
			for i := range n {
				m.LoadOrStore(ID(uint64(i)), exp)
			}
		}
		expire := func() { m.Clear() }
		return fill, expire, func() {}
	}},
}

// BenchmarkDedupeMemory reports the live heap per claimed id with a
// million distinct 36-character ids held, and how much of that heap is
// still live after the TTL passed and the ids were evicted, in percent of
// the heap before the first claim.
func BenchmarkDedupeMemory(b *testing.B) {
	for _, set := range dedupeSets {
		b.Run("set="+set.name, func(b *testing.B) {
			var perID, residue, left float64
			for range b.N {
				b.StopTimer()
				start := heapAfterGC()
				fill, expire, closeSet := set.build(b)
				b.StartTimer()
				fill(memoryIDs)
				b.StopTimer()
				full := heapAfterGC()
				expire()
				after := heapAfterGC()
				closeSet()
				perID += (float64(full) - float64(start)) / memoryIDs
				residue += 100 * (float64(after) - float64(start)) / float64(start)
				left += float64(after) - float64(start)
				runtime.KeepAlive(fill) // the set lives until its heap is measured
				runtime.KeepAlive(expire)
				b.StartTimer()
			}
			b.ReportMetric(perID/float64(b.N), "B/id")
			b.ReportMetric(residue/float64(b.N), "%heap-left")
			b.ReportMetric(left/float64(b.N), "B-left")
			b.ReportMetric(0, "ns/op")
		})
	}
}
