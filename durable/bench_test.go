package durable_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// BenchmarkRequestTo200 measures the time from a signed request entering
// ServeHTTP to its 200, with 1 and with 16 concurrent senders and a no-op
// callback. "durable" is this package's Queue (River insert, River workers
// running the callbacks on the same database at the same time); "inbox" is
// the floor: the same Handler with a Queue that only runs INSERT ... ON
// CONFLICT DO NOTHING into a one-table inbox on the same database, with
// the same connection settings.
func BenchmarkRequestTo200(b *testing.B) {
	for _, name := range backendNames {
		for _, senders := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/senders=%d/durable", name, senders), func(b *testing.B) {
				be := newBackend(b, name)
				benchHandler(b, be.open(b, durable.Config{Logger: quiet}), senders)
			})
			b.Run(fmt.Sprintf("%s/senders=%d/inbox", name, senders), func(b *testing.B) {
				be := newBackend(b, name)
				benchHandler(b, newInbox(b, be), senders)
			})
		}
	}
}

func benchHandler(b *testing.B, q eachhook.Queue, senders int) {
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q))
	require.NoError(b, err)
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	require.NoError(b, h.Start(context.Background()))
	defer func() { require.NoError(b, h.Shutdown(context.Background())) }()

	var seq atomic.Int64
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var mu sync.Mutex
	var all []time.Duration
	failed := atomic.Int64{}
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Go(func() {
			var lat []time.Duration
			for {
				i := seq.Add(1)
				if i > int64(b.N) {
					break
				}
				id := "bench-" + run + "-" + strconv.FormatInt(i, 10)
				r := eachhooktest.NewRequest("/", secret, eachhooktest.SuccessBody(id), eachhooktest.BodyScheme, time.Now())
				w := httptest.NewRecorder()
				t0 := time.Now()
				h.ServeHTTP(w, r)
				lat = append(lat, time.Since(t0))
				if w.Code != 200 {
					failed.Add(1)
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	require.Zero(b, failed.Load(), "requests not answered 200")
	slices.Sort(all)
	quantile := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(quantile(0.50), "p50-ms")
	b.ReportMetric(quantile(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
}

// inbox is the floor of the benchmark: a Queue that stores a delivery with
// one INSERT ... ON CONFLICT DO NOTHING and runs nothing.
type inbox struct {
	insert func(ctx context.Context, d eachhook.Delivery) error
	close  func()
}

func newInbox(tb testing.TB, be backend) *inbox {
	ctx := context.Background()
	const table = `CREATE TABLE %s (id TEXT PRIMARY KEY, status TEXT NOT NULL, body %s NOT NULL)`
	switch be.name {
	case "sqlite":
		// The pragmas and the single connection of durable.OpenSQLite.
		db, err := sql.Open("sqlite", "file:"+be.path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate")
		require.NoError(tb, err)
		db.SetMaxOpenConns(1)
		_, err = db.ExecContext(ctx, fmt.Sprintf(table, "inbox", "BLOB"))
		require.NoError(tb, err)
		// Prepared once, as the durable Queue's statements are (and as
		// pgx does by itself on Postgres).
		stmt, err := db.PrepareContext(ctx, `INSERT INTO inbox (id, status, body) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`)
		require.NoError(tb, err)
		return &inbox{
			insert: func(ctx context.Context, d eachhook.Delivery) error {
				_, err := stmt.ExecContext(ctx, d.ID, d.Status, d.Body)
				return err
			},
			close: func() { _ = stmt.Close(); _ = db.Close() },
		}
	case "postgres":
		pool := be.pool
		_, err := pool.Exec(ctx, fmt.Sprintf(table, be.schema+".inbox", "BYTEA"))
		require.NoError(tb, err)
		stmt := `INSERT INTO ` + be.schema + `.inbox (id, status, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`
		return &inbox{
			insert: func(ctx context.Context, d eachhook.Delivery) error {
				_, err := pool.Exec(ctx, stmt, d.ID, d.Status, d.Body)
				return err
			},
			close: func() {},
		}
	}
	panic("unknown backend " + be.name)
}

func (i *inbox) Start(context.Context, eachhook.Runner) error { return nil }

func (i *inbox) Enqueue(ctx context.Context, d eachhook.Delivery) error { return i.insert(ctx, d) }

func (i *inbox) Shutdown(context.Context) error { i.close(); return nil }
