package outputs_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/outputs"
)

// server is a local TLS server that counts the requests it gets.
type server struct {
	*httptest.Server
	requests atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// serve answers every request with body and a Content-Type.
func serve(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		io.WriteString(w, body)
	}
}

// newSaver returns a Saver into a new directory that trusts srv's
// certificate, and that directory.
func newSaver(t *testing.T, srv *server, opts ...outputs.Option) (*outputs.Saver, string) {
	t.Helper()
	dir := t.TempDir()
	tlsc := srv.Client().Transport.(*http.Transport).TLSClientConfig
	s, err := outputs.New(outputs.Dir(dir), append([]outputs.Option{outputs.WithTLSConfig(tlsc)}, opts...)...)
	require.NoError(t, err)
	outputs.SetSleep(s, func(context.Context, time.Duration) error { return nil })
	return s, dir
}

func success(id string, output any) *eachhook.Success {
	raw, err := json.Marshal(output)
	if err != nil {
		panic(err)
	}
	return &eachhook.Success{ID: id, Output: raw}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// files lists the regular files under dir, by path relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var list []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			list = append(list, filepath.ToSlash(rel))
		}
		return err
	}))
	slices.Sort(list)
	return list
}

func TestSaveOneURL(t *testing.T) {
	srv := newServer(t, serve("png bytes"))
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())

	saved, err := s.Save(t.Context(), success("pred-1", srv.URL+"/out/image.png?sig=secret"))
	require.NoError(t, err)
	require.Equal(t, []outputs.Saved{{
		URL:         srv.URL + "/out/image.png?sig=secret",
		Location:    filepath.Join(dir, "pred-1-0.png"),
		Size:        9,
		SHA256:      sum("png bytes"),
		ContentType: "image/png",
	}}, saved)
	b, err := os.ReadFile(saved[0].Location)
	require.NoError(t, err)
	require.Equal(t, "png bytes", string(b))
	require.Equal(t, []string{"pred-1-0.png", "pred-1-0.png.saved.json"}, files(t, dir))
}

func TestNoProxy(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1") // nothing listens there
	srv := newServer(t, serve("direct"))
	s, _ := newSaver(t, srv, outputs.WithAllowPrivate())
	saved, err := s.Save(t.Context(), success("p", srv.URL+"/a"))
	require.NoError(t, err)
	require.Equal(t, sum("direct"), saved[0].SHA256)
}

func TestSaveManyOutputs(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "body of "+r.URL.Path) })
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())

	output := []any{srv.URL + "/a.mp4", "a caption", 42, map[string]any{"k": 1}, srv.URL + "/b", "ftp://host/c.png", srv.URL + "/c.tar.gz"}
	saved, err := s.Save(t.Context(), success("p", output))
	require.NoError(t, err)
	require.Len(t, saved, 7)
	for i, want := range map[int]string{0: "/a.mp4", 4: "/b", 6: "/c.tar.gz"} {
		require.Equal(t, int64(len("body of "+want)), saved[i].Size)
		require.Equal(t, sum("body of "+want), saved[i].SHA256)
		b, err := os.ReadFile(saved[i].Location)
		require.NoError(t, err)
		require.Equal(t, "body of "+want, string(b))
	}
	for i, want := range map[int]string{1: `"a caption"`, 2: `42`, 3: `{"k":1}`, 5: `"ftp://host/c.png"`} {
		require.Equal(t, outputs.Saved{Value: json.RawMessage(want)}, saved[i])
	}
	require.Equal(t, []string{
		"p-0.mp4", "p-0.mp4.saved.json", "p-4", "p-4.saved.json", "p-6.gz", "p-6.gz.saved.json",
	}, files(t, dir))
	require.Equal(t, int64(3), srv.requests.Load())
}

func TestSaveNothingToSave(t *testing.T) {
	srv := newServer(t, serve("x"))
	s, dir := newSaver(t, srv)
	for _, out := range []string{"", "null"} {
		saved, err := s.Save(t.Context(), &eachhook.Success{ID: "p", Output: json.RawMessage(out)})
		require.NoError(t, err)
		require.Empty(t, saved)
	}
	require.Empty(t, files(t, dir))
}

func TestNamesStayInTheDirectory(t *testing.T) {
	srv := newServer(t, serve("x"))
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())
	saved, err := s.Save(t.Context(), success("../up/.x~é", srv.URL+"/a.p%2Fng"))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "%2E.%2Fup%2F.x%7E%C3%A9-0"), saved[0].Location)
	require.Equal(t, []string{"%2E.%2Fup%2F.x%7E%C3%A9-0", "%2E.%2Fup%2F.x%7E%C3%A9-0.saved.json"}, files(t, dir))
}

// TestAddressRefused: an address that is not public is refused when it is
// dialled, directly or after a redirect from a public host, and allowed
// with WithAllowPrivate. 10.0.0.1 is never dialled: the check refuses it
// before the connection is made.
func TestAddressRefused(t *testing.T) {
	target := newServer(t, serve("private bytes"))
	public := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	viaPublic := func(to string) string { return public.URL + "/?to=" + to }
	tests := []struct {
		name, url     string
		allowPrivate  bool
		err           error
		targetReached int64
	}{
		{name: "loopback", url: target.URL + "/a.png", err: outputs.ErrBlockedAddress},
		{name: "redirect to loopback", url: viaPublic(target.URL + "/a.png"), err: outputs.ErrBlockedAddress},
		{name: "redirect to 10.0.0.1", url: viaPublic("https://10.0.0.1:9/a.png"), err: outputs.ErrBlockedAddress},
		{name: "redirect to loopback allowed", url: viaPublic(target.URL + "/a.png"), allowPrivate: true, targetReached: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target.requests.Store(0)
			var opts []outputs.Option
			if tt.allowPrivate {
				opts = append(opts, outputs.WithAllowPrivate())
			}
			s, dir := newSaver(t, target, opts...)
			outputs.Exempt(s, public.Listener.Addr().String())
			saved, err := s.Save(t.Context(), success("p", tt.url))
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, tt.targetReached, target.requests.Load())
			if tt.err == nil {
				require.Equal(t, sum("private bytes"), saved[0].SHA256)
			} else {
				require.Empty(t, files(t, dir))
			}
		})
	}
}

func TestSchemeAndHostRefused(t *testing.T) {
	plain := httptest.NewServer(serve("plain"))
	t.Cleanup(plain.Close)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		io.WriteString(w, "tls")
	})
	host := "127.0.0.1"
	tests := []struct {
		name, url string
		opts      []outputs.Option
		err       error
	}{
		{name: "http", url: plain.URL + "/a", err: outputs.ErrInsecureScheme},
		{name: "redirect to http", url: srv.URL + "/?to=" + plain.URL + "/a", err: outputs.ErrInsecureScheme},
		{name: "http allowed", url: plain.URL + "/a", opts: []outputs.Option{outputs.WithAllowHTTP()}},
		{name: "host not allowed", url: srv.URL + "/a", opts: []outputs.Option{outputs.WithAllowedHosts("cdn.example.com")}, err: outputs.ErrHostNotAllowed},
		{name: "redirect to a host not allowed", url: srv.URL + "/?to=https://localhost/a", opts: []outputs.Option{outputs.WithAllowedHosts(host)}, err: outputs.ErrHostNotAllowed},
		{name: "host allowed", url: srv.URL + "/a", opts: []outputs.Option{outputs.WithAllowedHosts("CDN.example.com", host)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := newSaver(t, srv, append([]outputs.Option{outputs.WithAllowPrivate()}, tt.opts...)...)
			_, err := s.Save(t.Context(), success("p", tt.url))
			require.ErrorIs(t, err, tt.err)
			if tt.err != nil {
				require.Empty(t, files(t, dir))
			}
		})
	}
}

func TestRedirectLimit(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n > 0 {
			http.Redirect(w, r, "/?n="+strconv.Itoa(n-1), http.StatusFound)
			return
		}
		io.WriteString(w, "end")
	})
	for _, tt := range []struct {
		redirects int
		err       error
	}{{5, nil}, {6, outputs.ErrTooManyRedirects}} {
		s, _ := newSaver(t, srv, outputs.WithAllowPrivate())
		srv.requests.Store(0)
		_, err := s.Save(t.Context(), success("p", srv.URL+"/?n="+strconv.Itoa(tt.redirects)))
		require.ErrorIs(t, err, tt.err)
		require.Equal(t, int64(min(tt.redirects, 5)+1), srv.requests.Load())
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		h       http.HandlerFunc
		entries int // in the directory after the refusal
	}{
		{"by Content-Length", serve("eleven byte"), 0}, // refused before Create
		{"by counting", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "eleven")
			w.(http.Flusher).Flush() // no Content-Length
			io.WriteString(w, " byte")
		}, 1}, // the empty .partial
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.h)
			s, dir := newSaver(t, srv, outputs.WithAllowPrivate(), outputs.WithMaxBytes(10))
			_, err := s.Save(t.Context(), success("p", srv.URL+"/a"))
			require.ErrorIs(t, err, outputs.ErrTooLarge)
			require.Equal(t, int64(1), srv.requests.Load())
			require.Empty(t, files(t, dir))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, tt.entries)

			s, _ = newSaver(t, srv, outputs.WithAllowPrivate(), outputs.WithMaxBytes(11))
			_, err = s.Save(t.Context(), success("p", srv.URL+"/a"))
			require.NoError(t, err)
		})
	}
}

// TestBodyLength: a body shorter than its Content-Length (HTTP/1.1, the
// connection closed early) is retried, then refused; one longer (HTTP/2,
// frames written by hand since net/http's server never sends one) is
// refused at once. Nothing is left in the directory.
func TestBodyLength(t *testing.T) {
	short := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
		buf.Flush()
	})
	s, dir := newSaver(t, short, outputs.WithAllowPrivate())
	_, err := s.Save(t.Context(), success("p", short.URL+"/a"))
	require.ErrorIs(t, err, outputs.ErrBodyLength)
	require.Equal(t, int64(3), short.requests.Load())
	require.Empty(t, files(t, dir))

	long := newH2Server(t, 10, []byte("0123456789abcdefghij"))
	s, dir = newSaver(t, long, outputs.WithAllowPrivate())
	_, err = s.Save(t.Context(), success("p", long.URL+"/a"))
	require.ErrorIs(t, err, outputs.ErrBodyLength)
	require.Equal(t, int64(1), long.requests.Load())
	require.Empty(t, files(t, dir))

	exact := newH2Server(t, 10, []byte("0123456789"))
	s, _ = newSaver(t, exact, outputs.WithAllowPrivate())
	saved, err := s.Save(t.Context(), success("p", exact.URL+"/a"))
	require.NoError(t, err)
	require.Equal(t, sum("0123456789"), saved[0].SHA256)
}

// newH2Server answers each HTTP/2 connection's first request with a
// Content-Length of declared and body as its data.
func newH2Server(t *testing.T, declared int, body []byte) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(http.NotFoundHandler())}
	var mu sync.Mutex
	var conns []net.Conn
	s.TLS = &tls.Config{NextProtos: []string{"h2"}}
	s.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(_ *http.Server, c *tls.Conn, _ http.Handler) {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			serveH2(c, declared, body, &s.requests)
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	t.Cleanup(func() { // before Close, which waits for the connections
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

func serveH2(c net.Conn, declared int, body []byte, requests *atomic.Int64) {
	frame := func(typ, flags byte, stream uint32, payload []byte) {
		h := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[5:], stream)
		c.Write(append(h, payload...))
	}
	const typeData, typeHeaders, typeSettings = 0, 1, 4
	if _, err := io.ReadFull(c, make([]byte, 24)); err != nil { // the client's preface
		return
	}
	frame(typeSettings, 0, 0, nil)
	h := make([]byte, 9)
	for {
		if _, err := io.ReadFull(c, h); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(h[0])<<16|int64(h[1])<<8|int64(h[2])); err != nil {
			return
		}
		switch {
		case h[3] == typeSettings && h[4]&1 == 0:
			frame(typeSettings, 1, 0, nil) // ACK
		case h[3] == typeHeaders:
			requests.Add(1)
			stream := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
			// HPACK: ":status: 200" (static index 8), then content-length
			// (static name 28) with a literal value, not indexed.
			cl := strconv.Itoa(declared)
			frame(typeHeaders, 0x4, stream, append([]byte{0x88, 0x0f, 28 - 15, byte(len(cl))}, cl...))
			frame(typeData, 0x1, stream, body)
		}
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // then 200
		attempts int
		err      error
		opts     []outputs.Option
		waits    []time.Duration
	}{
		{name: "503 then 200", statuses: []int{503}, attempts: 2, waits: []time.Duration{time.Second}},
		{name: "429, 500 then 200", statuses: []int{429, 500}, attempts: 3, waits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "503 three times", statuses: []int{503, 503, 503}, attempts: 3, err: outputs.ErrStatus, waits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "backoff capped at a minute", statuses: []int{503, 503, 503, 503, 503}, attempts: 5, err: outputs.ErrStatus,
			opts: []outputs.Option{outputs.WithRetry(5, 20*time.Second)}, waits: []time.Duration{20 * time.Second, 40 * time.Second, time.Minute, time.Minute}},
		{name: "404 not retried", statuses: []int{404}, attempts: 1, err: outputs.ErrStatus},
		{name: "403 not retried", statuses: []int{403}, attempts: 1, err: outputs.ErrStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *server
			srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if n := int(srv.requests.Load()); n <= len(tt.statuses) {
					w.WriteHeader(tt.statuses[n-1])
					return
				}
				io.WriteString(w, "ok")
			})
			s, dir := newSaver(t, srv, append(tt.opts, outputs.WithAllowPrivate())...)
			var waits []time.Duration
			outputs.SetSleep(s, func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil })
			_, err := s.Save(t.Context(), success("p", srv.URL+"/a"))
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, int64(tt.attempts), srv.requests.Load())
			require.Equal(t, tt.waits, waits)
			if tt.err != nil {
				require.Empty(t, files(t, dir))
			}
		})
	}
}

// TestTimeoutPerAttempt: each attempt times out (while the body is read,
// or sooner on a slow machine) and is tried again; nothing is saved.
func TestTimeoutPerAttempt(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate(), outputs.WithTimeout(20*time.Millisecond), outputs.WithRetry(2, time.Second))
	var waits []time.Duration
	outputs.SetSleep(s, func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil })
	_, err := s.Save(t.Context(), success("p", srv.URL+"/a"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, []time.Duration{time.Second}, waits)
	require.Empty(t, files(t, dir))
}

func TestCancelledBetweenAttempts(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	s, _ := newSaver(t, srv, outputs.WithAllowPrivate())
	ctx, cancel := context.WithCancel(t.Context())
	outputs.SetSleep(s, func(ctx context.Context, _ time.Duration) error { cancel(); <-ctx.Done(); return ctx.Err() })
	_, err := s.Save(ctx, success("p", srv.URL+"/a"))
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, outputs.ErrStatus)
	require.Equal(t, int64(1), srv.requests.Load())
}

// TestCrashLeftovers: what a crash left (a part in .partial, or a file
// without its record) is downloaded again, and one complete file stays.
func TestCrashLeftovers(t *testing.T) {
	srv := newServer(t, serve("complete"))
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".partial"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".partial", "p-0.png~CRASHED"), []byte("comp"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p-1.png"), []byte("complete"), 0o644)) // no record

	saved, err := s.Save(t.Context(), success("p", []string{srv.URL + "/a.png", srv.URL + "/b.png"}))
	require.NoError(t, err)
	require.Equal(t, int64(2), srv.requests.Load())
	require.Equal(t, []string{"p-0.png", "p-0.png.saved.json", "p-1.png", "p-1.png.saved.json"}, files(t, dir))
	for _, sv := range saved {
		b, err := os.ReadFile(sv.Location)
		require.NoError(t, err)
		require.Equal(t, "complete", string(b))
	}
}

func TestRetriedCallbackDownloadsNothing(t *testing.T) {
	srv := newServer(t, serve("once"))
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())
	p := success("p", []any{srv.URL + "/a.png", "text", srv.URL + "/b.png"})
	first, err := s.Save(t.Context(), p)
	require.NoError(t, err)
	require.Equal(t, int64(2), srv.requests.Load())

	// Another Saver on the same directory, as after a restart; it does not
	// trust the server's certificate, so any download would fail.
	again, err := outputs.New(outputs.Dir(dir), outputs.WithAllowPrivate())
	require.NoError(t, err)
	second, err := again.Save(t.Context(), p)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, int64(2), srv.requests.Load())
}

func TestConcurrentCallbacks(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	s, dir := newSaver(t, srv, outputs.WithAllowPrivate())
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		id := "same"
		if i < 50 {
			id = "id" + strconv.Itoa(i)
		}
		wg.Go(func() {
			saved, err := s.Save(t.Context(), success(id, srv.URL+"/"+id+".bin"))
			if err == nil && saved[0].SHA256 != sum("/"+id+".bin") {
				err = fmt.Errorf("%s: wrong hash", id)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var want []string
	for i := range 50 {
		want = append(want, "id"+strconv.Itoa(i)+"-0.bin", "id"+strconv.Itoa(i)+"-0.bin.saved.json")
	}
	want = append(want, "same-0.bin", "same-0.bin.saved.json")
	slices.Sort(want)
	require.Equal(t, want, files(t, dir))
	for i := range 50 {
		b, err := os.ReadFile(filepath.Join(dir, "id"+strconv.Itoa(i)+"-0.bin"))
		require.NoError(t, err)
		require.Equal(t, "/id"+strconv.Itoa(i)+".bin", string(b))
	}
	require.Equal(t, int64(51), srv.requests.Load()) // "same" once
}

// TestWrapInHandler: a failed save fails the callback's attempt, so the
// Handler retries it and keeps a dead letter; a save that succeeds runs fn.
func TestWrapInHandler(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(404)
			return
		}
		io.WriteString(w, "image")
	})
	s, _ := newSaver(t, srv, outputs.WithAllowPrivate())
	deadLetter := make(chan error, 1)
	h, err := eachhook.New(eachhook.WithSecret("whsec"), eachhook.WithRetry(2, time.Millisecond), eachhook.WithLogger(slog.New(slog.DiscardHandler)),
		eachhook.WithErrorHandler(func(_ context.Context, err error) { deadLetter <- err }))
	require.NoError(t, err)
	rec := eachhooktest.NewRecorder()
	var got []outputs.Saved
	h.OnSuccess(rec.Success(s.Wrap(func(_ context.Context, _ *eachhook.Success, saved []outputs.Saved) error {
		got = saved
		return nil
	})))
	body := []byte(`{"id":"p1","status":"success","output":"` + srv.URL + `/a.png"}`)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewRequest("/", "whsec", body, eachhooktest.BodyScheme, time.Now()))
	require.Equal(t, http.StatusOK, w.Code)
	require.ErrorIs(t, <-deadLetter, outputs.ErrStatus)
	require.NoError(t, rec.Wait(t.Context(), 2))
	for _, run := range rec.Runs() {
		require.ErrorIs(t, run.Err, outputs.ErrStatus)
	}
	require.Nil(t, got)

	fail.Store(false)
	require.NoError(t, h.Replay(t.Context(), "p1"))
	require.NoError(t, rec.Wait(t.Context(), 3))
	require.Len(t, got, 1)
	require.Equal(t, sum("image"), got[0].SHA256)
	require.Equal(t, int64(3), srv.requests.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, tt := range []struct {
		name string
		dest outputs.Destination
		opts []outputs.Option
	}{
		{"nil destination", nil, nil},
		{"missing directory", outputs.Dir(filepath.Join(dir, "missing")), nil},
		{"a file", outputs.Dir(file), nil},
		{"max bytes 0", outputs.Dir(dir), []outputs.Option{outputs.WithMaxBytes(0)}},
		{"timeout 0", outputs.Dir(dir), []outputs.Option{outputs.WithTimeout(0)}},
		{"0 attempts", outputs.Dir(dir), []outputs.Option{outputs.WithRetry(0, time.Second)}},
		{"negative backoff", outputs.Dir(dir), []outputs.Option{outputs.WithRetry(1, -1)}},
		{"no hosts", outputs.Dir(dir), []outputs.Option{outputs.WithAllowedHosts()}},
		{"nil TLS config", outputs.Dir(dir), []outputs.Option{outputs.WithTLSConfig(nil)}},
	} {
		_, err := outputs.New(tt.dest, tt.opts...)
		require.Error(t, err, tt.name)
	}
	_, err := outputs.New(outputs.Dir(dir))
	require.NoError(t, err)
}
