package outputs_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook/outputs"
)

// BenchmarkSave50MiB compares saving a 50 MiB output from a local TLS
// server (hashed, synced, renamed, recorded) with a plain io.Copy of the
// same response into a file; compare their MB/s.
func BenchmarkSave50MiB(b *testing.B) {
	body := make([]byte, 50<<20)
	rand.Read(body)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	dir := b.TempDir()

	b.Run("io.Copy", func(b *testing.B) {
		client := srv.Client()
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Get(srv.URL + "/a.bin")
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(filepath.Join(dir, "copy.bin"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			f.Close()
		}
	})
	b.Run("Save", func(b *testing.B) {
		s, err := outputs.New(outputs.Dir(dir), outputs.WithAllowPrivate(),
			outputs.WithTLSConfig(srv.Client().Transport.(*http.Transport).TLSClientConfig))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++ // a new id each time, so that each Save downloads
			saved, err := s.Save(b.Context(), success("p"+strconv.Itoa(i), srv.URL+"/a.bin"))
			if err != nil {
				b.Fatal(err)
			}
			os.Remove(saved[0].Location)
		}
	})
}
