package durable_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// smallTmpfs mounts a tmpfs of size bytes on a directory of the test's own
// and returns it; it is unmounted when the test ends. The test is skipped
// unless it runs as root in a place that allows mounting.
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root: run this test as root to fill a filesystem")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the filesystem is full, and returns it.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			return path
		}
	}
}

// SQLite on a full filesystem refuses the queue's inserts: deliveries are
// answered 503, and Health answers 503 until an insert succeeds again.
func TestSQLiteFullDiskMakesHealthUnavailable(t *testing.T) {
	dir := smallTmpfs(t, 4<<20)
	ctx := context.Background()
	q, err := durable.OpenSQLite(ctx, filepath.Join(dir, "queue.db"), durable.Config{Logger: quiet})
	require.NoError(t, err)
	rec := eachhooktest.NewRecorder()
	h := newHandler(t, q, rec.Register)
	health := func() (int, string) {
		w := httptest.NewRecorder()
		h.Health().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code, w.Body.String()
	}
	require.Equal(t, 200, serve(h, eachhooktest.NewSuccessRequest("/", secret, "before")))
	wait(t, rec, 1)
	code, _ := health()
	require.Equal(t, 200, code)

	filler := fill(t, dir)
	refused := 0
	for i := range 200 {
		if serve(h, eachhooktest.NewSuccessRequest("/", secret, "full-"+strconv.Itoa(i))) == 503 {
			refused++
			break
		}
	}
	require.Equal(t, 1, refused, "a full disk refuses an insert within 200 deliveries")
	code, body := health()
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"status":"unavailable","reason":"queue failed"}`, body)

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool {
		return serve(h, eachhooktest.NewSuccessRequest("/", secret, "after")) == 200
	}, 30*time.Second, 10*time.Millisecond)
	code, _ = health()
	require.Equal(t, 200, code)
}
