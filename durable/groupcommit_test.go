package durable_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// The group commit on a real database: requests that arrive while an
// insert is in flight wait for it (the job table is locked by the test)
// and are then inserted together, in one transaction.

// lockJobs takes the write lock of be's job table until the returned
// function is called: inserts wait for it.
func lockJobs(t *testing.T, be backend) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	switch be.name {
	case "sqlite":
		db := openSQLiteDB(t, be.path)
		tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
		require.NoError(t, err)
		var once sync.Once
		unlock := func() { once.Do(func() { _ = tx.Rollback(); _ = db.Close() }) }
		t.Cleanup(unlock) // also when the test fails while locked
		return unlock
	case "postgres":
		tx, err := be.pool.Begin(ctx)
		require.NoError(t, err)
		var once sync.Once
		unlock := func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
		// Registered before the schema's drop runs (cleanups run last
		// first), so a failing test does not leave the drop waiting.
		t.Cleanup(unlock)
		_, err = tx.Exec(ctx, "LOCK TABLE "+be.schema+".river_job IN SHARE ROW EXCLUSIVE MODE")
		require.NoError(t, err)
		return unlock
	}
	panic("unknown backend " + be.name)
}

// failInserts makes every insert into be's job table fail until the
// returned function is called.
func failInserts(t *testing.T, be backend) (restore func()) {
	t.Helper()
	ctx := context.Background()
	switch be.name {
	case "sqlite":
		db := openSQLiteDB(t, be.path)
		defer db.Close()
		_, err := db.ExecContext(ctx, `CREATE TRIGGER fail_inserts BEFORE INSERT ON river_job BEGIN SELECT RAISE(ABORT, 'injected insert failure'); END`)
		require.NoError(t, err)
		return func() {
			db := openSQLiteDB(t, be.path)
			defer db.Close()
			_, err := db.ExecContext(ctx, `DROP TRIGGER fail_inserts`)
			require.NoError(t, err)
		}
	case "postgres":
		_, err := be.pool.Exec(ctx, `CREATE FUNCTION `+be.schema+`.fail_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected insert failure'; END $$;
CREATE TRIGGER fail_inserts BEFORE INSERT ON `+be.schema+`.river_job FOR EACH ROW EXECUTE FUNCTION `+be.schema+`.fail_inserts()`)
		require.NoError(t, err)
		return func() {
			_, err := be.pool.Exec(ctx, `DROP TRIGGER fail_inserts ON `+be.schema+`.river_job`)
			require.NoError(t, err)
		}
	}
	panic("unknown backend " + be.name)
}

// countJobs counts the jobs stored in be.
func countJobs(t *testing.T, be backend) int {
	t.Helper()
	ctx := context.Background()
	var n int
	switch be.name {
	case "sqlite":
		db := openSQLiteDB(t, be.path)
		defer db.Close()
		require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM river_job").Scan(&n))
	case "postgres":
		require.NoError(t, be.pool.QueryRow(ctx, "SELECT count(*) FROM "+be.schema+".river_job").Scan(&n))
	}
	return n
}

// serveAsync serves a delivery of id and sends its status code.
func serveAsync(h *eachhook.Handler, id string) <-chan int {
	ch := make(chan int, 1)
	go func() { ch <- serve(h, eachhooktest.NewSuccessRequest("/", secret, id)) }()
	return ch
}

// batchBehindLockedInsert sends first, waits until its insert is in
// flight (blocked on the lock), then sends ids and waits until they all
// wait for the next batch.
func batchBehindLockedInsert(t *testing.T, q *durable.Queue, h *eachhook.Handler, first string, ids []string) (firstCode <-chan int, codes []<-chan int) {
	t.Helper()
	firstCode = serveAsync(h, first)
	// first is the only call: in flight with none pending means its
	// batch took it (and waits for the lock).
	require.Eventually(t, func() bool { return durable.InsertInFlight(q) }, 10*time.Second, time.Millisecond)
	for _, id := range ids {
		codes = append(codes, serveAsync(h, id))
	}
	require.Eventually(t, func() bool { return durable.PendingInserts(q) == len(ids) }, 10*time.Second, time.Millisecond)
	return firstCode, codes
}

// TestFailedBatchIs503AndTheRetriesRunOnce: every request of a failed
// batch is answered 503 and its claim released, nothing is stored, and the
// sender's retries are each processed exactly once.
func TestFailedBatchIs503AndTheRetriesRunOnce(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			be := newBackend(t, name)
			q := be.open(t, durable.Config{Logger: quiet})
			store := eachhook.NewMemoryStore()
			t.Cleanup(func() { require.NoError(t, store.Close()) })
			rec := eachhooktest.NewRecorder()
			h := newHandler(t, q, rec.Register, eachhook.WithStore(store))

			restore := failInserts(t, be)
			unlock := lockJobs(t, be)
			var ids []string
			for i := range 8 {
				ids = append(ids, "fail-"+strconv.Itoa(i))
			}
			first, codes := batchBehindLockedInsert(t, q, h, "fail-first", ids)
			unlock()
			require.Equal(t, 503, <-first)
			for i, c := range codes {
				require.Equal(t, 503, <-c, ids[i])
			}
			ids = append(ids, "fail-first")
			for _, id := range ids {
				token, claimed, err := store.Claim(ctx, id, time.Minute)
				require.NoError(t, err)
				require.True(t, claimed, "%s: the claim of a refused delivery is released", id)
				require.NoError(t, store.Release(ctx, id, token))
			}
			require.Zero(t, countJobs(t, be), "a failed batch stores nothing")

			restore()
			for _, id := range ids {
				require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, id)), id)
			}
			wait(t, rec, len(ids))
			require.Equal(t, len(ids), countJobs(t, be))
			for _, id := range ids {
				require.Equal(t, []int{1}, attempts(rec)[id], id)
			}
		})
	}
}

// TestCopiesInOneBatchMakeOneJob: two copies of one id in one batch (and a
// copy of the id whose insert is in flight) make one job and one
// callback, and every copy is answered 200 only once it is committed.
func TestCopiesInOneBatchMakeOneJob(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			be := newBackend(t, name)
			q := be.open(t, durable.Config{Logger: quiet})
			rec := eachhooktest.NewRecorder()
			h := newHandler(t, q, rec.Register)

			unlock := lockJobs(t, be)
			ids := []string{"dup-a", "dup-b", "dup-a", "dup-first", "dup-c"}
			first, codes := batchBehindLockedInsert(t, q, h, "dup-first", ids)
			for _, c := range append(codes, first) {
				select {
				case code := <-c:
					t.Fatalf("answered %d before the commit", code)
				default:
				}
			}
			// Readers do not wait for the lock (SQLite's WAL, Postgres's
			// SHARE ROW EXCLUSIVE): nothing is committed yet.
			require.Zero(t, countJobs(t, be))
			unlock()
			require.Equal(t, 200, <-first)
			for i, c := range codes {
				require.Equal(t, 200, <-c, ids[i])
			}
			require.Equal(t, 4, countJobs(t, be))
			wait(t, rec, 4)
			require.Equal(t, map[string][]int{"dup-first": {1}, "dup-a": {1}, "dup-b": {1}, "dup-c": {1}}, attempts(rec))
		})
	}
}
