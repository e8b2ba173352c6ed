// Command report turns benchstat's CSV output (its default one-column
// layout: one row per benchmark, the median and its confidence interval per
// unit) into the Markdown tables of RESULTS.md, with the ratios the targets
// are stated in.
//
//	benchstat -format csv raw.txt | report verify|receive|memory
package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"regexp"
	"strconv"
)

// stat is a benchstat median and its confidence interval (as printed).
type stat struct {
	median float64
	ci     string
}

// results maps a benchmark name (without the GOMAXPROCS suffix) and a unit
// to its stat.
type results map[string]map[string]stat

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(r io.Reader) (results, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	res := results{}
	unit := ""
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		switch {
		case len(rec) < 2:
			continue
		case rec[0] == "" && len(rec) >= 3 && rec[2] == "CI":
			unit = rec[1]
		case rec[0] == "" || rec[0] == "geomean" || unit == "":
			continue
		default:
			v, err := strconv.ParseFloat(rec[1], 64)
			if err != nil {
				continue
			}
			name := procSuffix.ReplaceAllString(rec[0], "")
			if res[name] == nil {
				res[name] = map[string]stat{}
			}
			ci := ""
			if len(rec) > 2 {
				ci = rec[2]
			}
			res[name][unit] = stat{v, ci}
		}
	}
}

func (r results) get(name, unit string) (stat, bool) {
	s, ok := r[name][unit]
	return s, ok
}

func (r results) must(name, unit string) float64 {
	s, ok := r.get(name, unit)
	if !ok {
		log.Fatalf("report: no %s for %s in benchstat's output", unit, name)
	}
	return s.median
}

func main() {
	log.SetFlags(0)
	if len(os.Args) != 2 {
		log.Fatal("usage: benchstat -format csv raw.txt | report verify|receive|memory")
	}
	res, err := parse(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	switch os.Args[1] {
	case "verify":
		verify(res)
	case "receive":
		receive(res)
	case "memory":
		memory(res)
	default:
		log.Fatalf("report: unknown table %q", os.Args[1])
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// ns formats seconds as nanoseconds or microseconds.
func ns(sec float64) string {
	if sec >= 1e-5 {
		return fmt.Sprintf("%.2f µs", sec*1e6)
	}
	return fmt.Sprintf("%.0f ns", sec*1e9)
}

// ci formats benchstat's relative confidence interval, such as "2%".
func ci(s stat) string {
	if s.ci == "" {
		return ""
	}
	return "± " + s.ci
}

var sizes = []string{"300B", "4KiB", "64KiB"}

var libs = []string{"eachhook", "eachhook-body", "go-github", "stripe-go", "svix", "standard-webhooks", "floor"}

// peers are the other libraries that eachhook must beat.
var peers = []string{"go-github", "stripe-go", "svix", "standard-webhooks"}

func verify(r results) {
	name := func(size, lib string) string { return "Verify/size=" + size + "/lib=" + lib }
	fastest, nearFloor, nearFloorBody := true, true, true
	fmt.Println("| size | library | median CPU time/op | 95% CI | × floor | × eachhook | median wall time/op | B/op | allocs/op |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, size := range sizes {
		floor := r.must(name(size, "floor"), "cpu-sec/op")
		each := r.must(name(size, "eachhook"), "cpu-sec/op")
		for _, lib := range libs {
			n := name(size, lib)
			c, _ := r.get(n, "cpu-sec/op")
			fmt.Printf("| %s | %s | %s | %s | %.2fx | %.2fx | %s | %.0f | %.0f |\n", size, lib, ns(c.median), ci(c),
				c.median/floor, c.median/each, ns(r.must(n, "sec/op")), r.must(n, "B/op"), r.must(n, "allocs/op"))
		}
		for _, p := range peers {
			if r.must(name(size, p), "cpu-sec/op") <= each {
				fastest = false
			}
		}
		nearFloor = nearFloor && each <= 1.2*floor
		nearFloorBody = nearFloorBody && r.must(name(size, "eachhook-body"), "cpu-sec/op") <= 1.2*floor
	}
	fmt.Println()
	fmt.Printf("- eachhook (timestamped scheme) faster than every peer library at every size: %s\n", verdict(fastest))
	fmt.Printf("- eachhook within 1.2x of the floor at every size, timestamped scheme: %s; body-only scheme (the floor's own work): %s\n",
		verdict(nearFloor), verdict(nearFloorBody))
}

func receive(r results) {
	handlers := []string{"eachhook", "hand-written", "bare"}
	name := func(h string) string { return "Receive/handler=" + h }
	hw := r.must(name("hand-written"), "sec/op")
	hwCPU := r.must(name("hand-written"), "cpu-sec/op")
	hwAllocs := r.must(name("hand-written"), "allocs/op")
	fmt.Println("| handler | median time/op | 95% CI | × hand-written | CPU/op, all goroutines | × hand-written | B/op | allocs/op | × hand-written | 503 retries/op |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, h := range handlers {
		n := name(h)
		t, _ := r.get(n, "sec/op")
		cpu := r.must(n, "cpu-sec/op")
		allocs := r.must(n, "allocs/op")
		retries, _ := r.get(n, "retries/op")
		fmt.Printf("| %s | %s | %s | %.2fx | %s | %.2fx | %.0f | %.0f | %.2fx | %.4f |\n", h, ns(t.median), ci(t), t.median/hw,
			ns(cpu), cpu/hwCPU, r.must(n, "B/op"), allocs, allocs/hwAllocs, retries.median)
	}
	each := r.must(name("eachhook"), "sec/op")
	eachCPU := r.must(name("eachhook"), "cpu-sec/op")
	eachAllocs := r.must(name("eachhook"), "allocs/op")
	fmt.Println()
	fmt.Printf("- eachhook at most 1.0x the hand-written handler in time/op: %s (%.2fx; CPU time %.2fx)\n", verdict(each <= hw), each/hw, eachCPU/hwCPU)
	fmt.Printf("- eachhook at most 1.0x the hand-written handler in allocs/op: %s (%.2fx)\n", verdict(eachAllocs <= hwAllocs), eachAllocs/hwAllocs)
}

func memory(r results) {
	sets := []string{"eachhook.MemoryStore", "map[string]int64", "sync.Map"}
	name := func(s string) string { return "DedupeMemory/set=" + s }
	fmt.Println("| set | heap per id (1,000,000 ids, after GC) | heap left after expiry and sweep | bytes left |")
	fmt.Println("|---|---:|---:|---:|")
	for _, s := range sets {
		n := name(s)
		fmt.Printf("| %s | %.1f B | %.2f%% of the start | %.0f |\n", s, r.must(n, "B/id"), r.must(n, "%heap-left"), r.must(n, "B-left"))
	}
	perID := r.must(name("eachhook.MemoryStore"), "B/id")
	left := r.must(name("eachhook.MemoryStore"), "%heap-left")
	fmt.Println()
	fmt.Printf("- eachhook.MemoryStore at most 64 B per id: %s (%.1f B)\n", verdict(perID <= 64), perID)
	fmt.Printf("- heap back within 10%% of the start after expiry: %s (%+.2f%%)\n", verdict(math.Abs(left) <= 10), left)
}
