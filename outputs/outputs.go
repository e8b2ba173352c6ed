// Package outputs saves the output files of a successful prediction before
// their URLs go away, as a wrapper around an OnSuccess callback:
//
//	saver, err := outputs.New(outputs.Dir("/var/lib/outputs"))
//	if err != nil { ... }
//	h.OnSuccess(saver.Wrap(func(ctx context.Context, s *eachhook.Success, saved []outputs.Saved) error {
//		... saved[i].Location is where output i was saved
//	}))
//
// # What is saved
//
// [Saver.Save] takes a [eachhook.Success]'s Output as one output, or, when
// it is a JSON array, as one output per element. An output that is a JSON
// string holding an http or https URL with a host is downloaded; any other
// (text, a number, an object) is passed through in [Saved.Value] and not
// fetched. Output i of prediction id is saved under the name
// "<id>-<i><ext>": ext is the URL path's extension (letters and digits
// only, else none), and every byte of id other than an ASCII letter, a
// digit, '-', '_' or a '.' that does not begin the name is written %XX. The
// files are downloaded one after the other; the first failure ends Save.
//
// # Safe by default
//
// Only https URLs are fetched ([WithAllowHTTP] allows http), and only
// hosts of [WithAllowedHosts] when it is set. Every address is checked when
// it is dialled, after DNS resolution, so a rebinding DNS answer cannot
// pass: a loopback, private, link-local, unspecified, multicast, shared
// (100.64.0.0/10), "this network" (0.0.0.0/8) or reserved (240.0.0.0/4)
// address is refused before any packet is sent ([WithAllowPrivate] allows
// them). At most 5 redirects are followed, each checked again. No proxy is
// used. Each refusal matches its own sentinel error with [errors.Is].
//
// # Bounded
//
// A file may have at most [WithMaxBytes] bytes: a Content-Length above it
// is refused before the body is read, and a body is cut and refused once
// it passes it. A body shorter than its Content-Length is refused; one
// longer is ended at the declared length by HTTP/1.1 and refused under
// HTTP/2. Each attempt at a file has [WithTimeout]; timeouts, connection
// errors, 429 and 5xx answers are tried again ([WithRetry]), other answers
// are not. The callback's context cancels all of it.
//
// # Idempotent
//
// A [Destination] records each file's size and SHA-256 when it commits it;
// a name already saved completely is not downloaded again, whatever its
// URL, so a retried callback fetches only what is missing. Saves of one
// name through one Saver run one at a time. [Saver.Wrap] makes a failed
// save fail the callback's attempt, so the Handler's retries and dead
// letters apply unchanged.
package outputs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook"
)

// Refusals: every error of [Saver.Save] that refuses an output matches one
// of these.
var (
	// ErrInsecureScheme: an http URL (or redirect) without [WithAllowHTTP].
	ErrInsecureScheme = errors.New("outputs: not https")
	// ErrHostNotAllowed: a host (or a redirect's) not in [WithAllowedHosts].
	ErrHostNotAllowed = errors.New("outputs: host not allowed")
	// ErrBlockedAddress: a host resolved to an address that is not public.
	ErrBlockedAddress = errors.New("outputs: address not public")
	// ErrTooManyRedirects: more than 5 redirects.
	ErrTooManyRedirects = errors.New("outputs: too many redirects")
	// ErrTooLarge: a Content-Length or a body above [WithMaxBytes].
	ErrTooLarge = errors.New("outputs: file too large")
	// ErrBodyLength: a body shorter or longer than its Content-Length.
	ErrBodyLength = errors.New("outputs: body length differs from Content-Length")
	// ErrStatus: an answer other than 200 OK; the message has its status.
	ErrStatus = errors.New("outputs: unexpected HTTP status")
)

// Saved is one output of a prediction: a file saved, or a value passed
// through. It is also what a [Destination] records beside a file.
type Saved struct {
	URL         string          `json:"url,omitempty"`          // the URL fetched; empty for a value
	Location    string          `json:"-"`                      // where the Destination saved it
	Size        int64           `json:"size"`                   // bytes
	SHA256      string          `json:"sha256,omitempty"`       // lower-case hex
	ContentType string          `json:"content_type,omitempty"` // as the server sent it
	Value       json.RawMessage `json:"-"`                      // the output as sent, when it is not a URL
}

// Saver downloads outputs to a [Destination]. Its methods are safe for
// concurrent use.
type Saver struct {
	dest     Destination
	fetcher  fetcher
	attempts int
	backoff  time.Duration
	locks    nameLocks
}

// An Option configures a [Saver].
type Option func(*Saver) error

// New returns a Saver that saves to dest; a [Dir] must be an existing
// directory.
func New(dest Destination, opts ...Option) (*Saver, error) {
	if dest == nil {
		return nil, errors.New("outputs: nil destination")
	}
	if err := checkDest(dest); err != nil {
		return nil, err
	}
	s := &Saver{
		dest:     dest,
		attempts: 3,
		backoff:  time.Second,
		fetcher:  fetcher{maxBytes: 512 << 20, timeout: 5 * time.Minute, sleep: sleep},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.fetcher.client = s.fetcher.newClient()
	return s, nil
}

// WithAllowHTTP allows http URLs and redirects, for tests and private
// setups. Default: https only.
func WithAllowHTTP() Option {
	return func(s *Saver) error { s.fetcher.allowHTTP = true; return nil }
}

// WithAllowPrivate allows every address, loopback and private ones
// included, for tests and private setups. Default: public addresses only.
func WithAllowPrivate() Option {
	return func(s *Saver) error { s.fetcher.allowPrivate = true; return nil }
}

// WithAllowedHosts fetches only from these hosts (and redirects only to
// them), compared without case; "*.example.com" allows every subdomain of
// example.com. Default: any host.
func WithAllowedHosts(hosts ...string) Option {
	return func(s *Saver) error {
		if len(hosts) == 0 {
			return errors.New("outputs: WithAllowedHosts needs at least one host")
		}
		for _, h := range hosts {
			s.fetcher.hosts = append(s.fetcher.hosts, strings.ToLower(h))
		}
		return nil
	}
}

// WithMaxBytes sets the largest file saved, in bytes (at least 1).
// Default 512 MiB.
func WithMaxBytes(n int64) Option {
	return func(s *Saver) error {
		if n < 1 {
			return errors.New("outputs: WithMaxBytes must be at least 1")
		}
		s.fetcher.maxBytes = n
		return nil
	}
}

// WithTimeout sets how long one attempt at one file may take, from the
// request to the last byte saved; it must be positive. Default 5 minutes:
// raise the Handler's WithCallbackTimeout (1 minute by default) to match.
func WithTimeout(d time.Duration) Option {
	return func(s *Saver) error {
		if d <= 0 {
			return errors.New("outputs: WithTimeout must be positive")
		}
		s.fetcher.timeout = d
		return nil
	}
}

// WithRetry sets how many attempts a file gets (at least 1) and the wait
// before the second (backoff, doubling, capped at one minute). Default 3
// attempts, 1s.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(s *Saver) error {
		if attempts < 1 || backoff < 0 {
			return errors.New("outputs: WithRetry needs at least 1 attempt and a backoff of 0 or more")
		}
		s.attempts, s.backoff = attempts, backoff
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the downloads (a copy is
// kept), for example to trust a private CA. Default: the system's roots.
func WithTLSConfig(c *tls.Config) Option {
	return func(s *Saver) error {
		if c == nil {
			return errors.New("outputs: nil TLS config")
		}
		s.fetcher.tls = c.Clone()
		return nil
	}
}

// Wrap returns an OnSuccess callback that saves the outputs and then calls
// fn with them, in Output's order. When a save fails, fn is not called and
// the callback returns the error.
func (s *Saver) Wrap(fn func(context.Context, *eachhook.Success, []Saved) error) func(context.Context, *eachhook.Success) error {
	return func(ctx context.Context, p *eachhook.Success) error {
		saved, err := s.Save(ctx, p)
		if err != nil {
			return err
		}
		return fn(ctx, p, saved)
	}
}

// Save saves p's outputs and returns them in Output's order: none for a
// null or absent Output.
func (s *Saver) Save(ctx context.Context, p *eachhook.Success) ([]Saved, error) {
	var items []json.RawMessage
	if len(p.Output) > 0 && p.Output[0] == '[' {
		if err := json.Unmarshal(p.Output, &items); err != nil {
			return nil, fmt.Errorf("outputs: %w: %v", eachhook.ErrOutputShape, err)
		}
	} else if len(p.Output) > 0 && string(p.Output) != "null" {
		items = []json.RawMessage{p.Output}
	}
	out := make([]Saved, len(items))
	for i, raw := range items {
		u := outputURL(raw)
		if u == nil {
			out[i] = Saved{Value: raw}
			continue
		}
		saved, err := s.saveURL(ctx, u, fileName(p.ID, i, u))
		if err != nil {
			return nil, fmt.Errorf("outputs: output %d (%s://%s%s): %w", i, u.Scheme, u.Host, u.Path, err)
		}
		out[i] = saved
	}
	return out, nil
}

// saveURL saves u under name unless the destination has it already.
func (s *Saver) saveURL(ctx context.Context, u *url.URL, name string) (Saved, error) {
	if err := s.fetcher.check(u); err != nil {
		return Saved{}, err
	}
	unlock, err := s.locks.lock(ctx, name)
	if err != nil {
		return Saved{}, err
	}
	defer unlock()
	if saved, found, err := s.dest.Stat(ctx, name); err != nil || found {
		return saved, err
	}
	backoff := s.backoff
	for attempt := 1; ; attempt++ {
		saved, err := s.fetch(ctx, u, name)
		var t temporary
		if err == nil || !errors.As(err, &t) || attempt == s.attempts {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return saved, err
		}
		if err := s.fetcher.sleep(ctx, backoff); err != nil {
			return Saved{}, fmt.Errorf("%w, after attempt %d: %w", err, attempt, t.err)
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// fetch makes one attempt: it downloads u into a new file of the
// destination, and commits it only when the body is complete.
func (s *Saver) fetch(ctx context.Context, u *url.URL, name string) (Saved, error) {
	ctx, cancel := context.WithTimeout(ctx, s.fetcher.timeout)
	defer cancel()
	resp, err := s.fetcher.get(ctx, u)
	if err != nil {
		return Saved{}, err
	}
	defer resp.Body.Close()
	w, err := s.dest.Create(ctx, name)
	if err != nil {
		return Saved{}, err
	}
	h := sha256.New()
	n, err := s.fetcher.copyBody(io.MultiWriter(w, h), resp)
	if err == nil && ctx.Err() != nil {
		// net/http may return a response that arrived as the request was
		// being cancelled: the attempt timed out all the same.
		err = temporary{ctx.Err()}
	}
	if err != nil {
		return Saved{}, errors.Join(err, w.Abort())
	}
	saved := Saved{URL: u.String(), Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: resp.Header.Get("Content-Type")}
	saved.Location, err = w.Commit(saved)
	return saved, err
}

// outputURL returns the URL an output holds, or nil when it holds no http
// or https URL with a host.
func outputURL(raw json.RawMessage) *url.URL {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil
	}
	if u.Scheme = strings.ToLower(u.Scheme); u.Scheme != "https" && u.Scheme != "http" {
		return nil
	}
	return u
}

// fileName returns the name output i of prediction id is saved under, as the
// package documentation describes.
func fileName(id string, i int, u *url.URL) string {
	var b strings.Builder
	for j := 0; j < len(id); j++ {
		c := id[j]
		if isAlnum(c) || c == '-' || c == '_' || c == '.' && j > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	b.WriteByte('-')
	b.WriteString(strconv.Itoa(i))
	if ext := path.Ext(u.Path); len(ext) > 1 && strings.IndexFunc(ext[1:], func(r rune) bool { return r > 127 || !isAlnum(byte(r)) }) < 0 {
		b.WriteString(ext)
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// nameLocks lets one save of a name run at a time.
type nameLocks struct {
	mu    sync.Mutex
	names map[string]*nameLock
}

type nameLock struct {
	ch    chan struct{} // holds a value while the name is locked
	users int           // goroutines holding or waiting for it
}

// lock waits until name is free or ctx ends; unlock frees it.
func (l *nameLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	l.mu.Lock()
	if l.names == nil {
		l.names = make(map[string]*nameLock)
	}
	nl := l.names[name]
	if nl == nil {
		nl = &nameLock{ch: make(chan struct{}, 1)}
		l.names[name] = nl
	}
	nl.users++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if nl.users--; nl.users == 0 {
			delete(l.names, name)
		}
		l.mu.Unlock()
	}
	select {
	case nl.ch <- struct{}{}:
		return func() { <-nl.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
