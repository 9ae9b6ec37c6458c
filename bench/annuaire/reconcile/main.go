// Command reconcile measures the reconciliation of an operator's BALs with the extraction: the
// time to load and index the file, then (unless -load-only) the time of annuaire.Reconcile of
// -locals registry BALs against it, and the process's peak memory. The registry is drawn from
// the file: the BALs of five domains (pro, chirurgien-dentiste, masseur-kinesitherapeute,
// infirmier, pharmacien: some 122,000 lines of the generated file) in file order, every tenth
// left out (published, no longer served: stale) and one in fifty with another structure
// (different), then 5% new addresses (missing). It prints one line of key=value pairs for
// reconcile.sh: reconcile -file /tmp/extraction.txt [-load-only]. The registry is read
// before the extraction is loaded, as a connector's store would hand it over.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mssante-go/sdk/annuaire"
)

var domains = []string{"pro.mssante.fr", "chirurgien-dentiste.mssante.fr", "masseur-kinesitherapeute.mssante.fr",
	"infirmier.mssante.fr", "pharmacien.mssante.fr"}

func main() {
	file := flag.String("file", "", "the extraction")
	n := flag.Int("locals", 100000, "registry BALs")
	loadOnly := flag.Bool("load-only", false, "load the extraction only")
	noReconcile := flag.Bool("no-reconcile", false, "read the registry and load the extraction, no reconciliation")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the reconciliation here")
	flag.Parse()
	var local []annuaire.Local
	if !*loadOnly {
		local = registry(*file, *n)
	}
	start, cpu0 := time.Now(), cpuTime()
	x, err := annuaire.LoadFile(*file, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	load, loadCPU := time.Since(start), cpuTime()-cpu0
	out := fmt.Sprintf("load_s=%.3f load_cpu_s=%.3f", load.Seconds(), loadCPU.Seconds())
	if !*loadOnly && !*noReconcile {
		now := time.Now()
		if *profile != "" {
			f, err := os.Create(*profile)
			if err == nil {
				pprof.StartCPUProfile(f)
				defer pprof.StopCPUProfile()
			}
		}
		start, cpu0 = time.Now(), cpuTime()
		rec, err := annuaire.Reconcile(context.Background(), local, x, &annuaire.ReconcileOptions{Domains: domains,
			ExtractionTime: now, Now: func() time.Time { return now }})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		d, dCPU := time.Since(start), cpuTime()-cpu0
		out += fmt.Sprintf(" reconcile_s=%.3f reconcile_cpu_s=%.3f locals=%d ok=%d missing=%d stale=%d different=%d", d.Seconds(), dCPU.Seconds(), len(local),
			rec.Counts[annuaire.StatusOK], rec.Counts[annuaire.StatusMissing], rec.Counts[annuaire.StatusStale], rec.Counts[annuaire.StatusDifferent])
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("%s maxrss_kb=%d\n", out, ru.Maxrss)
}

// registry reads n registry BALs from the extraction file (see the command's doc), as a
// connector's store would hand them over: before the extraction is loaded.
func registry(file string, n int) []annuaire.Local {
	r, err := annuaire.OpenFile(file)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, annuaire.MaxLineSize), annuaire.MaxLineSize+2)
	fresh := n / 20
	local := make([]annuaire.Local, 0, n)
	seen := 0
	for first := true; sc.Scan() && len(local) < n-fresh; first = false {
		line := sc.Text()
		if first || !inDomains(line) {
			continue
		}
		f, err := annuaire.ParseLine(strings.TrimSuffix(line, "\r"))
		if err != nil {
			continue
		}
		if seen++; seen%10 == 0 {
			continue // stale
		}
		e := f.Entry()
		l := annuaire.Local{Address: e.Address, Type: e.Type, Owner: e.Person.NationalID, StructureID: e.Structure.ID}
		if seen%50 == 1 {
			l.StructureID = "1999999999" // different
		}
		local = append(local, l)
	}
	for i := 0; len(local) < n; i++ {
		local = append(local, annuaire.Local{Address: fmt.Sprintf("nouveau.%d@%s", i, domains[i%len(domains)]), Type: annuaire.PER})
	}
	// Sorted by address, as the mailbox store lists its BALs.
	slices.SortFunc(local, func(a, b annuaire.Local) int { return strings.Compare(a.Address, b.Address) })
	return local
}

// inDomains reports whether the address column of line is in one of the domains.
func inDomains(line string) bool {
	_, rest, _ := strings.Cut(line, "|")
	addr, _, _ := strings.Cut(rest, "|")
	for _, d := range domains {
		if strings.HasSuffix(addr, "@"+d) {
			return true
		}
	}
	return false
}

// cpuTime is the CPU time (user and system) of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
