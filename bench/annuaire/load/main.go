// Command load measures the extraction backend on one file: the time to load and index it,
// the process's peak memory, the time of an address lookup and of name-prefix searches. It
// prints one line of key=value pairs for run.sh: load -file /tmp/extraction.txt
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/mssante-go/sdk/annuaire"
)

// allEntries returns the entry of every data line of file, parsed once: the values of the
// peers, Go maps.
func allEntries(file string) []annuaire.Entry {
	r, err := annuaire.OpenFile(file)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, annuaire.MaxLineSize), annuaire.MaxLineSize+2)
	var entries []annuaire.Entry
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		f, err := annuaire.ParseLine(strings.TrimSuffix(sc.Text(), "\r"))
		if err != nil {
			panic(err)
		}
		if e := f.Entry(); e.Address != "" {
			entries = append(entries, e)
		}
	}
	if err := sc.Err(); err != nil {
		panic(err)
	}
	return entries
}

// memoryLatency returns the time of one dependent access to memory far larger than the
// caches (a pointer chase over a random cycle of the cache lines of 128 MB on huge pages, as
// the index is): the floor of each lookup's memory accesses on this machine, now.
func memoryLatency() float64 {
	const size, line = 128 << 20, 64
	n := size / line
	buf := make([]uint64, (size+2<<20)/8)
	skip := (2<<20 - int(uintptr(unsafe.Pointer(&buf[0])))%(2<<20)) % (2 << 20) / 8
	b := buf[skip : skip+size/8]
	syscall.Madvise(unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), size), 14) // MADV_HUGEPAGE
	perm := rand.New(rand.NewPCG(3, 4)).Perm(n)
	for i := range n {
		b[perm[i]*line/8] = uint64(perm[(i+1)%n] * line / 8)
	}
	p := uint64(0)
	const steps = 1 << 21
	for range steps / 4 { // warm-up: the TLB, the page tables
		p = b[p]
	}
	start := time.Now()
	for range steps {
		p = b[p]
	}
	ns := float64(time.Since(start).Nanoseconds()) / steps
	if p == 1 { // never: a cycle of multiples of 8; keeps the chase from being optimised away
		fmt.Print("")
	}
	return ns
}

// sample returns the address and the name key of every (len(entries)/n)-th entry: n lines
// spread over the whole file, as a relay's recipients would be. The addresses are the caller's
// own strings, not the index's memory (reading them would fetch the very line a lookup is about
// to read).
func sample(entries []annuaire.Entry, n int) (addrs, prefixes []string) {
	step := max(len(entries)/n, 1)
	for i := 0; i < len(entries) && len(addrs) < n; i += step {
		e := &entries[i]
		addrs = append(addrs, e.Address)
		if k := annuaire.NameKey(e); len(k) >= 4 {
			prefixes = append(prefixes, k[:4])
		}
	}
	if len(addrs) == 0 {
		panic("sampling the file: no address")
	}
	// In random order, as recipients come; each set of strings in one block of memory, as a
	// caller's own would be (clones made among the lines read would each be in a page of its
	// own, and reading them would cost a miss of their own).
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	compact(addrs)
	compact(prefixes)
	return addrs, prefixes
}

// compact moves the strings of s into one block of memory.
func compact(s []string) {
	all := strings.Join(s, "")
	for i, v := range s {
		s[i], all = all[:len(v)], all[len(v):]
	}
}

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
		m := measure(x, *file)
		fmt.Printf(" lookup_ns=%.0f lookup_cpu_ns=%.0f typeof_ns=%.0f typeof_cpu_ns=%.0f prefix_p50_us=%.2f map_ns=%.0f map_entry_ns=%.0f memory_ns=%.0f",
			m.lookupNs, m.lookupCPUns, m.typeOfNs, m.typeOfCPUns, m.prefixP50us, m.mapNs, m.mapEntryNs, memoryLatency())
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
	mapNs, mapEntryNs     float64 // the peers: a Go map of every address to its line, to its Entry
}

// measure returns the mean wall and CPU time of Lookup and of TypeOf over 20,000 addresses of
// the file, spread over the whole file (every n-th line), and the median time of a Search by a
// 4-letter name prefix (limit 20) over the names of those lines. The CPU time is the cost of a
// lookup when the machine is shared: wall time then also counts the waits for a core.
func measure(x *annuaire.Extraction, file string) (m measures) {
	ctx := context.Background()
	entries := allEntries(file) // read once: the sample, then the peers' values
	addrs, prefixes := sample(entries, 20000)
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
	// The peers: a Go map of every address (lower-cased, as the index hashes them; the keys
	// compact, the peer at its best) to its line, for the existence check TypeOf makes; and
	// the same map to entries parsed beforehand (some 600 MB: no memory goal could hold them)
	// copied out as Lookup returns them. The same addresses in the same order.
	peer := make(map[string]int32, len(entries))
	for i := range entries {
		peer[strings.Clone(strings.ToLower(entries[i].Address))] = int32(i)
	}
	runtime.GC()
	n = 0
	start = time.Now()
	for range rounds {
		for _, a := range addrs {
			if _, ok := peer[a]; ok {
				n++
			}
		}
	}
	m.mapNs = float64(time.Since(start).Nanoseconds()) / float64(rounds*len(addrs))
	start = time.Now()
	for range rounds {
		for _, a := range addrs {
			if i, ok := peer[a]; ok {
				buf = append(buf[:0], entries[i])
				n += len(buf)
			}
		}
	}
	m.mapEntryNs = float64(time.Since(start).Nanoseconds()) / float64(rounds*len(addrs))
	if n != 2*rounds*len(addrs) {
		panic("the map lost addresses")
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
