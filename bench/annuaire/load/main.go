// Command load measures the extraction backend on one file: the time to load and index it,
// the process's peak memory, the time of an address lookup and of name-prefix searches. It
// prints one line of key=value pairs for run.sh: load -file /tmp/extraction.txt
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mssante-go/sdk/annuaire"
)

func main() {
	file := flag.String("file", "", "extraction file (TXT or ZIP)")
	queries := flag.Bool("queries", true, "also measure lookups and name searches")
	flag.Parse()
	start := time.Now()
	x, err := annuaire.LoadFile(*file, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	load := time.Since(start)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("lines=%d load_s=%.3f maxrss_kb=%d", x.Len(), load.Seconds(), ru.Maxrss)
	if *queries {
		runtime.GC() // the queries are measured in steady state, not during the load's collection
		m := measure(x)
		fmt.Printf(" lookup_ns=%.0f lookup_cpu_ns=%.0f typeof_ns=%.0f typeof_cpu_ns=%.0f prefix_p50_us=%.2f",
			m.lookupNs, m.lookupCPUns, m.typeOfNs, m.typeOfCPUns, m.prefixP50us)
	}
	fmt.Println()
}

// cpuTime is the CPU time the process used so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type measures struct {
	lookupNs, lookupCPUns float64 // Lookup, the full entry
	typeOfNs, typeOfCPUns float64 // TypeOf, the existence and BAL type check
	prefixP50us           float64
}

// measure returns the mean wall and CPU time of Lookup and of TypeOf over 20,000 addresses of
// the file (spread over the whole file), and the median time of a Search by a 4-letter name
// prefix (limit 20) over prefixes taken from the file. The CPU time is the cost of a lookup
// when the machine is shared: wall time then also counts the waits for a core.
func measure(x *annuaire.Extraction) (m measures) {
	ctx := context.Background()
	all, err := x.Search(ctx, annuaire.Query{Limit: 20000})
	if err != nil {
		panic(err)
	}
	var addrs, prefixes []string
	for _, e := range all.Entries {
		// A copy: a caller's address is its own string, not one in the index's memory (reading
		// it would fetch the very line the lookup is about to read).
		addrs = append(addrs, strings.Clone(e.Address))
		if k := annuaire.NameKey(&e); len(k) >= 4 {
			prefixes = append(prefixes, k[:4])
		}
	}
	// The search above built 536,000 entries to sort them: collect them now, or the lookups
	// would be timed during that collection (write barriers, and the collector's CPU time).
	all = nil
	runtime.GC()
	const rounds = 50
	n := 0
	var buf []annuaire.Entry
	start, cpu := time.Now(), cpuTime()
	for range rounds {
		for _, a := range addrs {
			buf = x.Lookup(buf[:0], a)
			n += len(buf)
		}
	}
	m.lookupNs = float64(time.Since(start).Nanoseconds()) / float64(rounds*len(addrs))
	m.lookupCPUns = float64((cpuTime() - cpu).Nanoseconds()) / float64(rounds*len(addrs))
	if n < rounds*len(addrs) {
		panic("lookup lost addresses")
	}
	n = 0
	start, cpu = time.Now(), cpuTime()
	for range rounds {
		for _, a := range addrs {
			if typ, ok := x.TypeOf(a); ok && typ != "" {
				n++
			}
		}
	}
	m.typeOfNs = float64(time.Since(start).Nanoseconds()) / float64(rounds*len(addrs))
	m.typeOfCPUns = float64((cpuTime() - cpu).Nanoseconds()) / float64(rounds*len(addrs))
	if n != rounds*len(addrs) {
		panic("TypeOf lost addresses")
	}
	times := make([]time.Duration, 0, len(prefixes))
	for _, p := range prefixes {
		t := time.Now()
		r, err := x.Search(ctx, annuaire.Query{Name: p, Limit: 20})
		times = append(times, time.Since(t))
		if err != nil || len(r.Entries) == 0 {
			panic(fmt.Sprint("name search failed: ", err))
		}
	}
	slices.Sort(times)
	m.prefixP50us = float64(times[len(times)/2].Nanoseconds()) / 1e3
	return m
}
