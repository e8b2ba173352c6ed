package durable_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"
)

// BenchmarkBacklog measures how fast stored deliveries reach their
// callbacks: a backlog of b.N no-op deliveries is stored, then the
// workers start, and the clock runs until the last callback returned. Run
// it with -benchtime=10000x for a backlog of 10,000.
//
// "durable" is this package's Queue with its default Config (4 workers)
// running a Handler's no-op OnSuccess. "river" is the anchor: a bare River
// client on the same kind of database with a no-op worker, the same
// worker count and the same fetch settings (durable.DefaultFetchCooldown,
// durable.DefaultFetchPollInterval), so that the difference is what the
// Queue and the Handler add to River's own job loop.
func BenchmarkBacklog(b *testing.B) {
	for _, name := range backendNames {
		b.Run(name+"/durable", func(b *testing.B) {
			be := newBackend(b, name)
			q := be.open(b, durable.Config{Logger: quiet})
			seedBacklog(b, be, b.N, func(i int) river.JobArgs {
				id := "backlog-" + strconv.Itoa(i)
				return backlogArgs{ID: id, Status: eachhook.StatusSuccess, Body: eachhooktest.SuccessBody(id)}
			})
			var ran atomic.Int64
			all := make(chan struct{})
			h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(quiet), eachhook.WithQueue(q))
			require.NoError(b, err)
			h.OnSuccess(func(context.Context, *eachhook.Success) error {
				if ran.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			})
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			require.NoError(b, h.Start(context.Background()))
			<-all
			elapsed := time.Since(start)
			b.StopTimer()
			require.NoError(b, h.Shutdown(context.Background()))
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "callbacks/s")
		})
		b.Run(name+"/river", func(b *testing.B) {
			be := newBackend(b, name)
			var ran atomic.Int64
			all := make(chan struct{})
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(context.Context, *river.Job[noopArgs]) error {
				if ran.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			}))
			cfg := &river.Config{
				FetchCooldown:     durable.DefaultFetchCooldown,
				FetchPollInterval: durable.DefaultFetchPollInterval,
				Logger:            quiet,
				Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: durable.DefaultWorkers}},
				Schema:            be.schema,
				Workers:           workers,
			}
			start, stop := bareRiver(b, be, cfg)
			seedBacklog(b, be, b.N, func(int) river.JobArgs { return noopArgs{} })
			b.ReportAllocs()
			b.ResetTimer()
			t0 := time.Now()
			require.NoError(b, start())
			<-all
			elapsed := time.Since(t0)
			b.StopTimer()
			require.NoError(b, stop())
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "callbacks/s")
		})
	}
}

// backlogArgs has the kind and the JSON of the Queue's jobs, so that a
// backlog can be stored without the Queue's unique insert.
type backlogArgs struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Body   []byte `json:"body"`
}

func (backlogArgs) Kind() string { return "eachhook_delivery" }

func (backlogArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: durable.DefaultQueueName}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

// seedBacklog stores n jobs made by args on be's database with an
// insert-only River client, in batches of 1,000.
func seedBacklog(tb testing.TB, be backend, n int, args func(i int) river.JobArgs) {
	tb.Helper()
	ctx := context.Background()
	insert := func(params []river.InsertManyParams) {
		switch be.name {
		case "sqlite":
			db := openSQLiteDB(tb, be.path)
			defer db.Close()
			c, err := river.NewClient(riversqlite.New(db), &river.Config{Logger: quiet})
			require.NoError(tb, err)
			_, err = c.InsertMany(ctx, params)
			require.NoError(tb, err)
		case "postgres":
			c, err := river.NewClient(riverpgxv5.New(be.pool), &river.Config{Logger: quiet, Schema: be.schema})
			require.NoError(tb, err)
			_, err = c.InsertMany(ctx, params)
			require.NoError(tb, err)
		}
	}
	for from := 0; from < n; from += 1000 {
		params := make([]river.InsertManyParams, 0, 1000)
		for i := from; i < min(n, from+1000); i++ {
			params = append(params, river.InsertManyParams{Args: args(i)})
		}
		insert(params)
	}
}

// openSQLiteDB opens path with the connection settings of
// durable.OpenSQLite.
func openSQLiteDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	require.NoError(tb, err)
	db.SetMaxOpenConns(1)
	return db
}

// bareRiver returns the start and stop of a River client with cfg on be's
// database, whose tables it creates on SQLite.
func bareRiver(tb testing.TB, be backend, cfg *river.Config) (start, stop func() error) {
	tb.Helper()
	ctx := context.Background()
	var client interface {
		Start(context.Context) error
		Stop(context.Context) error
	}
	closeDB := func() error { return nil }
	switch be.name {
	case "sqlite":
		db := openSQLiteDB(tb, be.path)
		driver := riversqlite.New(db)
		m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quiet})
		require.NoError(tb, err)
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		require.NoError(tb, err)
		c, err := river.NewClient(driver, cfg)
		require.NoError(tb, err)
		client, closeDB = c, db.Close
	case "postgres":
		c, err := river.NewClient(riverpgxv5.New(be.pool), cfg)
		require.NoError(tb, err)
		client = c
	default:
		panic(fmt.Sprint("unknown backend ", be.name))
	}
	return func() error { return client.Start(ctx) }, func() error {
		if err := client.Stop(ctx); err != nil {
			return err
		}
		return closeDB()
	}
}
