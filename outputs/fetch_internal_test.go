package outputs

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestControl(t *testing.T) {
	var f fetcher
	for _, addr := range []string{
		"127.0.0.1:443", "127.8.8.8:443", "[::1]:443", // loopback
		"10.0.0.1:443", "172.16.0.1:443", "192.168.1.1:443", "[fd00::1]:443", // private
		"169.254.169.254:80", "[fe80::1]:443", // link-local
		"0.0.0.0:443", "[::]:443", "0.1.2.3:443", // unspecified, this network
		"224.0.0.1:443", "[ff02::1]:443", "[ff01::1]:443", // multicast
		"100.100.100.200:80", "240.0.0.1:443", "255.255.255.255:443", // shared, reserved, broadcast
		"[::ffff:10.0.0.1]:443", // private, IPv4-mapped
		"not an address",
	} {
		require.ErrorIs(t, f.control("tcp", addr, nil), ErrBlockedAddress, addr)
	}
	for _, addr := range []string{"8.8.8.8:443", "100.128.0.1:443", "[2001:4860:4860::8888]:443", "[::ffff:8.8.8.8]:443"} {
		require.NoError(t, f.control("tcp", addr, nil), addr)
	}
	f.allowPrivate = true
	require.NoError(t, f.control("tcp", "10.0.0.1:443", nil))
}

func TestCheck(t *testing.T) {
	f := fetcher{hosts: []string{"cdn.example.com", "*.storage.example"}}
	for raw, want := range map[string]error{
		"https://cdn.example.com/a":      nil,
		"https://CDN.Example.com:8443/a": nil,
		"https://a.storage.example/a":    nil,
		"https://a.b.storage.example/a":  nil,
		"https://storage.example/a":      ErrHostNotAllowed,
		"https://evilstorage.example/a":  ErrHostNotAllowed,
		"https://cdn.example.com.evil/a": ErrHostNotAllowed,
		"http://cdn.example.com/a":       ErrInsecureScheme,
		"ftp://cdn.example.com/a":        ErrInsecureScheme,
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		require.ErrorIs(t, f.check(u), want, raw)
	}
	f.allowHTTP = true
	require.NoError(t, f.check(&url.URL{Scheme: "http", Host: "cdn.example.com"}))
}

// failAfter fails each write once it has taken n bytes.
type failAfter struct{ n int }

func (w *failAfter) Write(b []byte) (int, error) {
	if w.n < len(b) {
		return 0, errors.New("disk full")
	}
	w.n -= len(b)
	return len(b), nil
}

func TestPipeCopy(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), 100_000)
	var dst bytes.Buffer
	n, err := pipeCopy(&dst, bytes.NewReader(src))
	require.NoError(t, err)
	require.Equal(t, int64(len(src)), n)
	require.Equal(t, src, dst.Bytes())

	// A failed write ends the copy: the rest of an endless body is not read.
	n, err = pipeCopy(&failAfter{n: 300 << 10}, zeros{})
	require.EqualError(t, err, "disk full")
	require.Equal(t, int64(256<<10), n)

	n, err = pipeCopy(io.Discard, io.MultiReader(bytes.NewReader(src[:10]), errReader{}))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, int64(10), n)
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
