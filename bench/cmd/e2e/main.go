// Command e2e measures eachhook end to end over loopback: it starts each
// receiver as a child process on 127.0.0.1, loads it from this process with
// pre-signed deliveries, and prints Markdown tables of requests per second
// and latency. Receivers alternate (eachhook, bare, eachhook, bare...) so
// that a change in the machine's load hits both alike.
//
//	e2e [-duration 3s] [-pairs 3] [-concurrency 16]
//
// With -serve it is the receiver instead: it prints its URL, serves until
// SIGTERM, drains the callbacks and prints their counts as JSON.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/eachhook/eachhook/bench"
)

const secret = "whsec_e2e_benchmark_secret"

func main() {
	serve := flag.String("serve", "", "run as receiver: eachhook or bare")
	sleep := flag.Duration("sleep", 0, "receiver: how long each callback sleeps")
	workers := flag.Int("workers", 0, "receiver: eachhook.WithWorkers (0: default)")
	queue := flag.Int("queue", 0, "receiver: eachhook.WithQueueSize (0: default)")
	track := flag.Bool("track", false, "receiver: count distinct callback ids")
	cpuprofile := flag.String("cpuprofile", "", "receiver: write a CPU profile of the run to this file")

	duration := flag.Duration("duration", 3*time.Second, "length of each load run")
	pairs := flag.Int("pairs", 3, "eachhook/bare run pairs per scenario")
	profile := flag.String("profile", "", "write CPU profiles of the eachhook receivers to this file name prefix")
	conc := flag.Int("concurrency", 16, "requests in flight")
	size := flag.Int("size", 300, "body size in bytes")
	only := flag.String("only", "noop,slow,dup", "scenarios to run, of noop, slow and dup")
	flag.Parse()
	log.SetFlags(0)

	if *serve != "" {
		cfg := bench.ReceiverConfig{Secret: secret, Sleep: *sleep, Workers: *workers, QueueSize: *queue, TrackIDs: *track}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				log.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Fatal(err)
			}
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		if err := runServer(*serve, cfg); err != nil {
			log.Fatal(err)
		}
		return
	}
	profilePrefix = *profile
	if err := runAll(*duration, *pairs, *conc, *size, strings.Split(*only, ",")); err != nil {
		log.Fatal(err)
	}
}

// runServer serves one receiver on 127.0.0.1 until SIGTERM.
func runServer(mode string, cfg bench.ReceiverConfig) error {
	var h http.Handler
	var rcv *bench.Receiver
	switch mode {
	case "eachhook":
		var err error
		if rcv, err = bench.NewReceiver(cfg); err != nil {
			return err
		}
		h = rcv
	case "bare":
		h = bench.Bare()
	default:
		return fmt.Errorf("unknown receiver %q", mode)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("http://%s%s\n", ln.Addr(), bench.Path)

	select {
	case <-stop:
	case err := <-served:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return err
	}
	var st bench.Stats
	if rcv != nil {
		if st, err = rcv.Shutdown(ctx); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(st)
}

// child is a receiver running in its own process.
type child struct {
	cmd *exec.Cmd
	out *bufio.Scanner
	url string
}

func startChild(args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, out: bufio.NewScanner(stdout)}
	if !c.out.Scan() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("receiver %v printed no URL", args)
	}
	c.url = c.out.Text()
	return c, nil
}

// stop ends the receiver and returns its callback counts.
func (c *child) stop() (bench.Stats, error) {
	var st bench.Stats
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return st, err
	}
	var line string
	if c.out.Scan() {
		line = c.out.Text()
	}
	if err := c.cmd.Wait(); err != nil {
		return st, fmt.Errorf("receiver: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		return st, fmt.Errorf("receiver stats %q: %w", line, err)
	}
	return st, nil
}

// run is one load run against one receiver.
type run struct {
	receiver string
	res      bench.LoadResult
	stats    bench.Stats
	cpu      time.Duration // user and system CPU time of the receiver process
}

// cpuPerReq is the receiver's CPU time per answered request, which
// contention from other processes changes much less than req/s.
func (r run) cpuPerReq() time.Duration { return r.cpu / time.Duration(r.res.Sent) }

// profilePrefix, when set, names the CPU profiles of the eachhook receivers.
var profilePrefix string

// profiles counts the profiles written so far.
var profiles int

func loadOnce(label string, args []string, ds []bench.Delivery, d time.Duration, conc int) (run, error) {
	if profilePrefix != "" && label == "eachhook" {
		profiles++
		args = append(slices.Clip(args), fmt.Sprintf("-cpuprofile=%s%d.pprof", profilePrefix, profiles))
	}
	c, err := startChild(args...)
	if err != nil {
		return run{}, err
	}
	res, lerr := bench.Load(context.Background(), bench.LoadConfig{URL: c.url, Deliveries: ds, Concurrency: conc, Duration: d})
	st, serr := c.stop()
	if err := errors.Join(lerr, serr); err != nil {
		return run{}, fmt.Errorf("%s: %w", label, err)
	}
	if res.Exhausted {
		return run{}, fmt.Errorf("%s: the %d pre-signed deliveries ran out before %v", label, len(ds), d)
	}
	ps := c.cmd.ProcessState
	return run{receiver: label, res: res, stats: st, cpu: ps.UserTime() + ps.SystemTime()}, nil
}

type scenario struct {
	key     string // name for -only
	title   string
	eachArg []string
	bare    bool // alternate with the bare server
}

func runAll(d time.Duration, pairs, conc, size int, only []string) error {
	// Enough deliveries for 100,000 requests per second, which loopback on
	// this kind of machine does not reach.
	n := int(100_000 * d.Seconds())
	now := time.Now()
	unique := bench.Deliveries(n, size, secret, 0, now)
	dups := bench.Deliveries(n, size, secret, 0.1, now)

	scenarios := []scenario{
		{key: "noop", title: "No-op callbacks", eachArg: []string{"-serve=eachhook"}, bare: true},
		{key: "slow", title: "Every callback sleeps 50 ms (eachhook with 1024 workers, queue 262144)",
			eachArg: []string{"-serve=eachhook", "-sleep=50ms", "-workers=1024", "-queue=262144"}, bare: true},
	}
	fmt.Printf("Each run: %v of load, %d requests in flight (one keep-alive connection each), %d-byte pre-signed bodies with distinct ids, load generator and receiver in separate processes on 127.0.0.1.\n\n", d, conc, size)
	for _, sc := range scenarios {
		if !slices.Contains(only, sc.key) {
			continue
		}
		var runs []run
		for range pairs {
			r, err := loadOnce("eachhook", sc.eachArg, unique, d, conc)
			if err != nil {
				return err
			}
			runs = append(runs, r)
			r, err = loadOnce("bare", []string{"-serve=bare"}, unique, d, conc)
			if err != nil {
				return err
			}
			runs = append(runs, r)
		}
		printRuns(sc, runs)
	}

	if !slices.Contains(only, "dup") {
		return nil
	}
	// Duplicates: the callbacks must equal the distinct ids acknowledged.
	var runs []run
	for range pairs {
		r, err := loadOnce("eachhook", []string{"-serve=eachhook", "-track"}, dups, d, conc)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	fmt.Printf("### 10%% duplicate deliveries\n\n")
	fmt.Printf("| run | requests | 200s | distinct ids acknowledged | callbacks | distinct ids called back | most calls of one id | callbacks == distinct ids |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---|\n")
	allOK := true
	for i, r := range runs {
		ok := r.stats.Callbacks == int64(r.res.AckedIDs) && r.stats.Distinct == r.res.AckedIDs && r.stats.MaxPerID == 1
		allOK = allOK && ok
		fmt.Printf("| %d | %d | %d | %d | %d | %d | %d | %s |\n", i+1, r.res.Sent, r.res.Status[http.StatusOK],
			r.res.AckedIDs, r.stats.Callbacks, r.stats.Distinct, r.stats.MaxPerID, yesNo(ok))
	}
	fmt.Printf("\n- callbacks == distinct ids acknowledged, each id called back once, in every run: %s\n\n", verdict(allOK))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**NO**"
}

func printRuns(sc scenario, runs []run) {
	fmt.Printf("### %s\n\n", sc.title)
	fmt.Printf("| run | receiver | req/s | p50 | p99 | receiver CPU per request | non-200 | errors |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for i, r := range runs {
		non200 := r.res.Sent - r.res.Status[http.StatusOK]
		fmt.Printf("| %d | %s | %.0f | %s | %s | %s | %d | %d |\n", i+1, r.receiver, r.res.RPS,
			ms(r.res.P50), ms(r.res.P99), us(r.cpuPerReq()), non200, r.res.Errors)
	}
	med := func(recv string, f func(run) float64) float64 {
		var xs []float64
		for _, r := range runs {
			if r.receiver == recv {
				xs = append(xs, f(r))
			}
		}
		slices.Sort(xs)
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	rps := func(r run) float64 { return r.res.RPS }
	p50 := func(r run) float64 { return float64(r.res.P50) }
	p99 := func(r run) float64 { return float64(r.res.P99) }
	cpu := func(r run) float64 { return float64(r.cpuPerReq()) }
	e, b := med("eachhook", rps), med("bare", rps)
	fmt.Printf("\n| median | eachhook | bare | eachhook / bare |\n|---|---:|---:|---:|\n")
	fmt.Printf("| req/s | %.0f | %.0f | %.2fx |\n", e, b, e/b)
	fmt.Printf("| p50 | %s | %s | %.2fx |\n", ms(time.Duration(med("eachhook", p50))), ms(time.Duration(med("bare", p50))), med("eachhook", p50)/med("bare", p50))
	fmt.Printf("| p99 | %s | %s | %.2fx |\n", ms(time.Duration(med("eachhook", p99))), ms(time.Duration(med("bare", p99))), med("eachhook", p99)/med("bare", p99))
	fmt.Printf("| receiver CPU per request | %s | %s | %.2fx |\n\n", us(time.Duration(med("eachhook", cpu))), us(time.Duration(med("bare", cpu))), med("eachhook", cpu)/med("bare", cpu))
	refused := 0
	for _, r := range runs {
		refused += r.res.Sent - r.res.Status[http.StatusOK] + r.res.Errors
	}
	switch sc.key {
	case "noop":
		fmt.Printf("- eachhook at least 0.9x the bare server's req/s: %s (%.2fx)\n", verdict(e >= 0.9*b), e/b)
	case "slow":
		r := med("eachhook", p99) / med("bare", p99)
		fmt.Printf("- eachhook's p99 at most 2x the bare server's while every callback sleeps 50 ms: %s (%.2fx)\n", verdict(r <= 2), r)
	}
	fmt.Printf("- every request answered 200: %s (%d not)\n\n", verdict(refused == 0), refused)
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
