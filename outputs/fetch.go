package outputs

// This file owns the download: the HTTP client, its address, scheme, host
// and redirect checks, and the reading of a body within its bounds.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// maxRedirects is how many redirects a download follows.
const maxRedirects = 5

// fetcher holds the download settings of a Saver.
type fetcher struct {
	client       *http.Client
	tls          *tls.Config
	allowHTTP    bool
	allowPrivate bool
	hosts        []string // lower case; empty: any
	maxBytes     int64
	timeout      time.Duration
	sleep        func(ctx context.Context, d time.Duration) error
	exempt       netip.AddrPort // a test's server, dialled though not public
}

func (f *fetcher) newClient() *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: f.control}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // a proxy would be dialled instead of the host
			DialContext:         d.DialContext,
			TLSClientConfig:     f.tls,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConnsPerHost: 8,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return ErrTooManyRedirects
			}
			return f.check(req.URL)
		},
	}
}

// check refuses a URL whose scheme or host is not allowed.
func (f *fetcher) check(u *url.URL) error {
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "http" && !f.allowHTTP, scheme != "http" && scheme != "https":
		return fmt.Errorf("%w: %s", ErrInsecureScheme, u.Scheme)
	}
	if len(f.hosts) == 0 {
		return nil
	}
	host := strings.ToLower(u.Hostname())
	for _, h := range f.hosts {
		if host == h || strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrHostNotAllowed, host)
}

// blocked are the prefixes refused besides those netip classifies.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (carrier NAT, some cloud metadata)
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and the broadcast address
}

// control runs once the address is resolved and before the connection is
// made: it refuses addresses that are not public.
func (f *fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBlockedAddress, address)
	}
	a := ap.Addr().Unmap()
	if f.allowPrivate || ap == f.exempt {
		return nil
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, a)
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return fmt.Errorf("%w: %s", ErrBlockedAddress, a)
		}
	}
	return nil
}

// temporary marks an error worth another attempt.
type temporary struct{ err error }

func (t temporary) Error() string { return t.err.Error() }
func (t temporary) Unwrap() error { return t.err }

// get sends the request and returns a 200 response whose Content-Length,
// if any, is within the cap.
func (f *fetcher) get(ctx context.Context, u *url.URL) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		// url.Error's message holds the whole URL, whose query may be a
		// signature: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var cert *tls.CertificateVerificationError
		if isRefusal(err) || errors.As(err, &cert) {
			return nil, err
		}
		return nil, temporary{err}
	}
	switch {
	case resp.StatusCode == http.StatusOK && resp.ContentLength > f.maxBytes:
		err = fmt.Errorf("%w: Content-Length %d, at most %d", ErrTooLarge, resp.ContentLength, f.maxBytes)
	case resp.StatusCode == http.StatusOK:
		return resp, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		err = temporary{fmt.Errorf("%w: %s", ErrStatus, resp.Status)}
	default:
		err = fmt.Errorf("%w: %s", ErrStatus, resp.Status)
	}
	resp.Body.Close()
	return nil, err
}

func isRefusal(err error) bool {
	for _, r := range []error{ErrInsecureScheme, ErrHostNotAllowed, ErrBlockedAddress, ErrTooManyRedirects} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// copyBody copies the body of resp to w, within the cap and exactly as
// long as its Content-Length, if it has one.
func (f *fetcher) copyBody(w io.Writer, resp *http.Response) (int64, error) {
	declared := resp.ContentLength
	n, err := pipeCopy(w, io.LimitReader(resp.Body, f.maxBytes+1))
	switch {
	case err != nil && declared >= 0 && n >= declared:
		// net/http's HTTP/2 body fails once the server sends more than
		// it declared.
		return n, fmt.Errorf("%w: more than %d bytes: %v", ErrBodyLength, declared, err)
	case errors.Is(err, io.ErrUnexpectedEOF) && declared >= 0:
		return n, temporary{fmt.Errorf("%w: %d of %d bytes", ErrBodyLength, n, declared)}
	case err != nil:
		return n, temporary{err}
	case n > f.maxBytes:
		return n, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, f.maxBytes)
	case declared >= 0 && n != declared:
		return n, fmt.Errorf("%w: %d bytes, %d declared", ErrBodyLength, n, declared)
	}
	return n, nil
}

// pipeCopy copies src to dst like io.Copy, but writes each buffer on a
// second goroutine while the next one is read: dst's writes (the file's,
// and the hash's) overlap the download's reading and decryption.
func pipeCopy(dst io.Writer, src io.Reader) (int64, error) {
	const size = 256 << 10
	free := make(chan []byte, 2)
	free <- make([]byte, size)
	free <- make([]byte, size)
	full := make(chan []byte, 2) // never blocks: there are two buffers
	done := make(chan struct{})
	var written int64
	var werr error
	go func() {
		defer close(done)
		for b := range full {
			n, err := dst.Write(b)
			written += int64(n)
			if err == nil && n < len(b) {
				err = io.ErrShortWrite
			}
			if err != nil {
				werr = err
				return
			}
			free <- b[:cap(b)]
		}
	}()
	var rerr error
	for rerr == nil {
		var b []byte
		select {
		case b = <-free:
		case <-done: // the writer failed
		}
		if b == nil {
			break
		}
		n := 0 // fill b: a body reads a TLS record at a time
		for n < len(b) && rerr == nil {
			var m int
			m, rerr = src.Read(b[n:])
			n += m
		}
		if n > 0 {
			full <- b[:n]
		}
	}
	close(full)
	<-done
	if werr != nil {
		return written, werr
	}
	if rerr == io.EOF {
		rerr = nil
	}
	return written, rerr
}

// sleep waits for d, or returns ctx's error if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
