package node_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/peers"
)

// BenchmarkPostgresOneNodeVsTwo measures the messages accepted per second through SMTP
// submission (the 250, after the queue's commit) by one node, then by two nodes, on the same
// PostgreSQL, in alternated rounds (bench/pgnodes/run.sh sets N, C and ROUNDS through the
// environment). The nodes run in this process: on one machine they share its cores as
// separate processes would.
func BenchmarkPostgresOneNodeVsTwo(b *testing.B) {
	n, c, rounds := envInt("MSSANTE_BENCH_N", 1000), envInt("MSSANTE_BENCH_C", 8), envInt("MSSANTE_BENCH_ROUNDS", 3)
	pg := peers.StartPostgres(b, &peers.PostgresOptions{Fsync: true})
	s := newSpace(b, "a.mssante.test")
	a := s.ops[0]
	bnode := s.twin(b, a)
	for i, o := range []*operator{a, bnode} {
		o.store = fmt.Sprintf("[store]\nbackend = \"postgres\"\ndsn = %q\n[node]\nname = \"node-%d\"", pg.DSN(), i)
		o.extra = "[log]\nlevel = \"error\"\n"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.start(b, ctx, a, nil)
	s.start(b, ctx, bnode, nil)
	run := func(targets []*operator) float64 {
		var next atomic.Int64
		var failed atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for w := range c {
			wg.Go(func() {
				o := targets[w%len(targets)]
				cl, err := smtp.DialStartTLS(o.addr("submission"), s.clientTLS(o, o.app))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				defer cl.Close()
				if err := cl.Auth(sasl.NewExternalClient("")); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					msg := "From: " + o.appBAL() + "\r\nTo: " + o.appBAL() + "\r\nSubject: bench\r\nMessage-ID: <bench" +
						strconv.FormatInt(i, 10) + "@a>\r\n\r\n" + strings.Repeat(strings.Repeat("0123456789abcdef", 5)+"\r\n", 30)
					if err := cl.SendMail(o.appBAL(), []string{o.appBAL()}, strings.NewReader(msg)); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						return
					}
				}
			})
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d sessions failed, the first: %v", f, firstErr.Load())
		}
		return float64(n) / time.Since(start).Seconds()
	}
	var one, two []float64
	for r := range rounds {
		if r%2 == 0 {
			one = append(one, run([]*operator{a}))
			two = append(two, run([]*operator{a, bnode}))
		} else {
			two = append(two, run([]*operator{a, bnode}))
			one = append(one, run([]*operator{a}))
		}
		fmt.Printf("round %d: one node %.0f msg/s, two nodes %.0f msg/s\n", r+1, one[r], two[r])
	}
	m1, m2 := medianRate(one), medianRate(two)
	fmt.Printf("accepted msg/s through submission, %d messages of 2.4 KB, %d sessions, medians of %d rounds:\n", n, c, rounds)
	fmt.Printf("one node %.0f, two nodes %.0f, two/one %.2fx\n", m1, m2, m2/m1)
}

func medianRate(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
