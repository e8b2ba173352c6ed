// Command testsummary reads the output of `go test -json` on standard input
// and prints what a person needs from it: each package's result line, the
// output of every failed test and of every build failure, the tests that
// skipped and why, and then the summary line
//
//	eachhook: 812 passed, 0 failed, 3 skipped
//
// followed by one line saying which skips were for want of Redis or
// Postgres (and, given -since UNIXSECONDS, how long the run took). Every test, subtest, example and fuzz seed run counts once;
// a package that failed outside any test (a build failure, a panic in
// TestMain) counts as one failure. It exits 1 if anything failed.
// test.sh runs it; it lives under .ci so that ./... patterns skip it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action     string
	Package    string
	ImportPath string // of build-output events
	Test       string
	Output     string
	Elapsed    float64
}

// key names one test run of one package.
type key struct{ pkg, test string }

func main() {
	s := newSummary(os.Stdout)
	if len(os.Args) == 3 && os.Args[1] == "-since" {
		// The Unix time the run began, for the duration on the last line.
		if sec, err := strconv.ParseInt(os.Args[2], 10, 64); err == nil {
			s.since = time.Unix(sec, 0)
		}
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		s.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stdout, "testsummary:", err)
		s.failed++
	}
	if !s.finish() {
		os.Exit(1)
	}
}

type summary struct {
	w                      io.Writer
	out                    map[key][]string // output of tests not finished yet
	build                  map[string][]string
	failedTests            map[string]bool // packages with a failed test
	passed, failed         int
	skipped                int
	redis, postgres, other int
	others                 []string
	since                  time.Time
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, out: map[key][]string{}, build: map[string][]string{}, failedTests: map[string]bool{}}
}

func (s *summary) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintf(s.w, "%s\n", b) // not an event: go's own message
		return
	}
	k := key{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		s.build[e.ImportPath] = append(s.build[e.ImportPath], e.Output)
	case "output":
		if e.Test == "" {
			// The package's own lines: keep its result line, and anything
			// printed outside a test (a panic in TestMain, for instance).
			if isResultLine(e.Output) {
				fmt.Fprint(s.w, e.Output)
			} else {
				s.out[k] = append(s.out[k], e.Output)
			}
			return
		}
		s.out[k] = append(s.out[k], e.Output)
	case "pass":
		if e.Test != "" {
			s.passed++
		}
		delete(s.out, k)
	case "skip":
		if e.Test != "" {
			s.skip(e, s.out[k])
		}
		delete(s.out, k)
	case "fail":
		if e.Test != "" {
			s.failed++
			s.failedTests[e.Package] = true
			fmt.Fprint(s.w, strings.Join(s.out[k], ""))
		} else if !s.failedTests[e.Package] {
			// Failed outside any test: a build failure, or a crash.
			s.failed++
			for p, lines := range s.build {
				if p == e.Package || strings.HasPrefix(p, e.Package+" ") {
					fmt.Fprint(s.w, strings.Join(lines, ""))
				}
			}
			fmt.Fprint(s.w, strings.Join(s.out[k], ""))
		}
		delete(s.out, k)
	}
}

// isResultLine reports whether a package-level output line is go test's
// result for the package ("ok", "FAIL", "?" lines) or a PASS/FAIL marker.
func isResultLine(l string) bool {
	for _, p := range []string{"ok  \t", "FAIL\t", "?   \t"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// skip counts a skipped test under the server it wanted, judged by its
// skip message (the adapters' tests name the variable to set).
func (s *summary) skip(e event, out []string) {
	s.skipped++
	// The skip message, without go test's own lines, which name the test.
	var kept []string
	for _, l := range out {
		if t := strings.TrimSpace(l); !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
			kept = append(kept, l)
		}
	}
	msg := strings.Join(kept, "")
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(msg, "EACHHOOK_REDIS_ADDR") || strings.Contains(lower, "redis"):
		s.redis++
	case strings.Contains(msg, "EACHHOOK_POSTGRES_DSN") || strings.Contains(lower, "postgres"):
		s.postgres++
	default:
		s.other++
		reason := ""
		for _, l := range out {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
				reason = l
				break
			}
		}
		name := e.Package + " " + e.Test
		if reason != "" {
			name += " (" + reason + ")"
		}
		if !slices.Contains(s.others, name) {
			s.others = append(s.others, name)
		}
	}
}

// finish prints what is left and the summary, and reports whether nothing
// failed.
func (s *summary) finish() bool {
	for k, lines := range s.out {
		// A test that never finished: the binary died while it ran.
		if k.test != "" && len(lines) > 0 {
			fmt.Fprintf(s.w, "unfinished: %s %s\n%s", k.pkg, k.test, strings.Join(lines, ""))
		}
	}
	if len(s.others) > 0 {
		fmt.Fprintln(s.w, "skipped for other reasons:")
		slices.Sort(s.others)
		for _, o := range s.others {
			fmt.Fprintln(s.w, "  "+o)
		}
	}
	if s.passed+s.failed == 0 {
		fmt.Fprintln(s.w, "testsummary: no test ran")
		s.failed++
	}
	fmt.Fprintf(s.w, "eachhook: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	took := ""
	if !s.since.IsZero() {
		took = fmt.Sprintf(", in %v", time.Since(s.since).Round(time.Second))
	}
	fmt.Fprintf(s.w, "skipped for want of: redis %d, postgres %d, other %d (tests and subtests each count once%s)\n", s.redis, s.postgres, s.other, took)
	return s.failed == 0
}
