package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Deliveries returns n pre-signed deliveries of bodies of size bytes, signed
// with secret at time now. A fraction dup of them (0 <= dup < 1) repeat one
// of the 64 deliveries before them, so that many duplicates arrive while
// the original is still in flight; the rest have distinct ids.
func Deliveries(n, size int, secret string, dup float64, now time.Time) []Delivery {
	rng := rand.New(rand.NewPCG(1, 2))
	ds := make([]Delivery, 0, n)
	var next uint64
	for len(ds) < n {
		if len(ds) > 0 && rng.Float64() < dup {
			back := 1 + rng.IntN(min(64, len(ds)))
			ds = append(ds, ds[len(ds)-back])
			continue
		}
		next++
		id := ID(next)
		ds = append(ds, Sign(secret, id, BodyOfSize(id, size), now))
	}
	return ds
}

// LoadConfig configures one load run.
type LoadConfig struct {
	URL         string
	Deliveries  []Delivery // sent in order, each once
	Concurrency int        // requests in flight at once, one connection each
	Duration    time.Duration
}

// LoadResult is what one load run measured.
type LoadResult struct {
	Sent     int // requests that got an answer
	Status   map[int]int
	Errors   int // requests that got no answer
	Elapsed  time.Duration
	RPS      float64 // answers per second
	P50, P99 time.Duration
	// AckedIDs counts the distinct ids that got at least one 200.
	AckedIDs int
	// Exhausted reports that the deliveries ran out before Duration.
	Exhausted bool
}

// Load sends cfg.Deliveries to cfg.URL from cfg.Concurrency goroutines,
// each waiting for its answer before sending the next, until the duration
// has passed, the deliveries ran out or ctx ended.
func Load(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if cfg.Concurrency < 1 || cfg.Duration <= 0 || len(cfg.Deliveries) == 0 {
		return LoadResult{}, fmt.Errorf("bench: load needs concurrency, duration and deliveries")
	}
	tr := &http.Transport{
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		MaxConnsPerHost:     cfg.Concurrency,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	status := make([]int16, len(cfg.Deliveries))
	var next atomic.Int64
	var exhausted atomic.Bool
	lat := make([][]time.Duration, cfg.Concurrency)
	errs := make([]int, cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	// A request in flight at the deadline still completes, so that every
	// delivery the server may have accepted has its answer recorded.
	deadline := start.Add(cfg.Duration)
	for w := range cfg.Concurrency {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= len(cfg.Deliveries) {
					exhausted.Store(true)
					break
				}
				d := &cfg.Deliveries[i]
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(d.Body))
				if err != nil {
					panic(err) // the URL was checked by the first request
				}
				d.SetHeaders(req.Header)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs[w]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				status[i] = int16(resp.StatusCode)
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := LoadResult{Status: map[int]int{}, Elapsed: elapsed, Exhausted: exhausted.Load()}
	all := slices.Concat(lat...)
	for _, e := range errs {
		res.Errors += e
	}
	acked := make(map[string]struct{})
	for i, s := range status {
		if s == 0 {
			continue
		}
		res.Status[int(s)]++
		if s == http.StatusOK {
			acked[cfg.Deliveries[i].ID] = struct{}{}
		}
	}
	res.AckedIDs = len(acked)
	res.Sent = len(all)
	if res.Sent == 0 {
		return res, fmt.Errorf("bench: no request to %s got an answer (%d errors)", cfg.URL, res.Errors)
	}
	slices.Sort(all)
	res.P50 = all[len(all)*50/100]
	res.P99 = all[len(all)*99/100]
	res.RPS = float64(res.Sent) / elapsed.Seconds()
	return res, nil
}
