package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the concurrent writes of listen.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is what a run of the command printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// runOpts adjusts the app a test runs.
type runOpts struct {
	ctx   context.Context
	stdin string
	env   map[string]string
	now   func() time.Time
	ready func(addr string)
}

// runCmd runs the command with args the way main does, except for the
// given stdin, environment, clock and context.
func runCmd(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	a := &app{
		ctx:    o.ctx,
		stdin:  strings.NewReader(o.stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(k string) string { return o.env[k] },
		now:    o.now,
		ready:  o.ready,
	}
	if a.ctx == nil {
		a.ctx = t.Context()
	}
	if a.now == nil {
		a.now = time.Now
	}
	code := a.run(args)
	return result{code, stdout.String(), stderr.String()}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "usage: eachhook COMMAND"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"demo bad flag", []string{"demo", "-bogus"}, "flag provided but not defined: -bogus"},
		{"demo argument", []string{"demo", "extra"}, `unexpected argument "extra"`},
		{"listen no secret", []string{"listen"}, "-secret is required"},
		{"listen bad path", []string{"listen", "-secret", "s", "-path", "hooks"}, "-path must start with /"},
		{"send no url", []string{"send", "-secret", "s"}, "-url is required"},
		{"send no secret", []string{"send", "-url", "http://127.0.0.1:1/"}, "-secret is required"},
		{"send bad status", []string{"send", "-url", "http://127.0.0.1:1/", "-secret", "s", "-status", "done"}, "-status must be success or failed"},
		{"send bad scheme", []string{"send", "-url", "http://127.0.0.1:1/", "-secret", "s", "-scheme", "v2"}, "-scheme must be body, timestamp or secret, not \"v2\""},
		{"send bad retries", []string{"send", "-url", "http://127.0.0.1:1/", "-secret", "s", "-retries", "3"}, "-retries must be spec or none"},
		{"send zero scale", []string{"send", "-url", "http://127.0.0.1:1/", "-secret", "s", "-time-scale", "0"}, "-time-scale must be > 0"},
		{"send file and id", []string{"send", "-url", "http://127.0.0.1:1/", "-secret", "s", "-file", "x.json", "-id", "a"}, "cannot be combined with -file"},
		{"send bad float", []string{"send", "-time-scale", "fast"}, `invalid value "fast" for flag -time-scale`},
		{"sign no secret", []string{"sign"}, "-secret is required"},
		{"sign bad timestamp", []string{"sign", "-secret", "s", "-timestamp", "yesterday"}, "-timestamp must be a Unix time"},
		{"verify no signature", []string{"verify", "-secret", "s"}, "-signature is required"},
		{"verify bad tolerance", []string{"verify", "-tolerance", "soon"}, `invalid value "soon" for flag -tolerance`},
		{"history no key", []string{"history", "abc"}, "-api-key is required"},
		{"history no id", []string{"history", "-api-key", "k"}, "give one EXECUTION_ID, or -list"},
		{"history id and list", []string{"history", "-api-key", "k", "-list", "abc"}, "not both"},
		{"history bad limit", []string{"history", "-api-key", "k", "-list", "-limit", "500"}, "-limit must be between 1 and 100"},
		{"history bad url", []string{"history", "-api-key", "k", "-api-url", "ftp://x", "abc"}, "not an absolute http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, runOpts{}, tt.args...)
			require.Equal(t, 2, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tt.want)
			if tt.args == nil {
				require.Contains(t, r.stderr, "usage: eachhook")
			} else {
				// One line: the error and where the usage is.
				require.Equal(t, 1, strings.Count(r.stderr, "\n"), r.stderr)
				require.Contains(t, r.stderr, "run 'eachhook ")
				require.Contains(t, r.stderr, " -h'")
			}
			require.Empty(t, r.stdout)
		})
	}
}

func TestHelpExits0WithExamples(t *testing.T) {
	for _, cmd := range []string{"demo", "listen", "send", "sign", "verify", "history"} {
		t.Run(cmd, func(t *testing.T) {
			for _, args := range [][]string{{cmd, "-h"}, {"help", cmd}} {
				r := runCmd(t, runOpts{}, args...)
				require.Equal(t, 0, r.code)
				require.Contains(t, r.stdout, "usage: eachhook "+cmd)
				require.Contains(t, r.stdout, "flags:")
				require.Contains(t, r.stdout, "examples:\n  ")
				require.Empty(t, r.stderr)
			}
		})
	}
	r := runCmd(t, runOpts{}, "-h")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "commands:")
}

// TestRunEntryPoint runs run itself, as main does, with the real stdin
// and signal handling.
func TestRunEntryPoint(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"sign", "-nope"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "flag provided but not defined: -nope")

	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 0, run([]string{"sign", "-secret", "s", "-file", os.DevNull}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "X-Webhook-Signature: ")
	_, _ = io.Copy(io.Discard, &stderr)
}

// listen takes this machine's requests only, unless -addr says otherwise.
func TestListenBindsLoopbackByDefault(t *testing.T) {
	r := runCmd(t, runOpts{}, "listen", "-h")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, `-addr string`)
	require.Contains(t, r.stdout, `(default "127.0.0.1:8080")`)
}
