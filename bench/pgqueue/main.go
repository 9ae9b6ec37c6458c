// Command pgqueue is the helper of bench/pgqueue/run.sh: the queue kept in PostgreSQL against
// the file queue, same run, same load.
//
//	pgqueue -dsn DSN -dir DIR -n N -c C -rounds R
//
// Each round, for each queue in turn (alternated): N messages of 2.4 KB accepted by C
// goroutines (Begin, Write, Commit: what the SMTP server does before its 250), timed; then
// Run with a deliverer that accepts every recipient at once, timed until the queue is empty.
// It prints the msg/s of each round and the ratio of the medians, PostgreSQL over files.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/transport/queue"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL connection string (a database the bench may fill)")
	dir := flag.String("dir", "", "folder for the file queue's spools")
	n := flag.Int("n", 2000, "messages a round")
	c := flag.Int("c", 16, "concurrent committers")
	rounds := flag.Int("rounds", 3, "rounds")
	only := flag.String("only", "", "run one queue alone: file or postgres (profiling)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the rounds to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pgqueue:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *dsn == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: pgqueue -dsn DSN -dir DIR [-n N] [-c C] [-rounds R]")
		os.Exit(2)
	}
	body := []byte("Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 37))
	ctx := context.Background()
	rates := map[string][2][]float64{}
	for r := range *rounds {
		for _, kind := range []string{"file", "postgres"} {
			if *only != "" && kind != *only {
				continue
			}
			var q queue.Spool
			var err error
			if kind == "file" {
				q, err = queue.Open(&queue.Options{Dir: filepath.Join(*dir, fmt.Sprintf("spool%d", r))})
			} else {
				err = reset(ctx, *dsn)
				if err == nil {
					q, err = queue.OpenPostgres(ctx, *dsn, &queue.PostgresOptions{MaxConns: int32(*c) + 8})
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "pgqueue:", err)
				os.Exit(1)
			}
			acc, del, err := round(ctx, q, body, *n, *c)
			q.Close()
			if err != nil {
				fmt.Fprintln(os.Stderr, "pgqueue:", err)
				os.Exit(1)
			}
			v := rates[kind]
			v[0], v[1] = append(v[0], acc), append(v[1], del)
			rates[kind] = v
			fmt.Printf("round %d %-8s accepted %7.0f msg/s  delivered %7.0f msg/s\n", r+1, kind, acc, del)
		}
	}
	if *only != "" {
		return
	}
	for i, what := range []string{"accepted", "delivered"} {
		f, p := median(rates["file"][i]), median(rates["postgres"][i])
		fmt.Printf("%-9s median: file %.0f msg/s, postgres %.0f msg/s, postgres/file %.2f×\n", what, f, p, p/f)
	}
}

// reset drops the queue's tables, so that each round starts from an empty database.
func reset(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DROP TABLE IF EXISTS queue_rcpts, queue_bodies, queue_messages, queue_keys, mssante_schema`)
	return err
}

func round(ctx context.Context, q queue.Spool, body []byte, n, c int) (accepted, delivered float64, err error) {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				w, err := q.BeginMessage()
				if err == nil {
					_, err = w.Write(body)
				}
				if err == nil {
					_, err = w.Commit(ctx, &queue.Envelope{From: "bal@a.mssante.test", Source: "relay",
						Rcpts: []*queue.Recipient{{Addr: "dr@x.mssante.test"}}})
				}
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, 0, first
	}
	accepted = float64(n) / time.Since(start).Seconds()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	start = time.Now()
	var handed atomic.Int64
	go func() {
		defer close(done)
		q.Run(rctx, queue.DelivererFunc(func(_ context.Context, j *queue.Job) []queue.Result {
			handed.Add(1)
			return make([]queue.Result, len(j.Rcpts))
		}), &queue.RunOptions{Workers: c, ControlPoll: -1})
	}()
	// Stats is asked only once every message was handed over: asked all along, its counts
	// would load the database that it measures.
	for handed.Load() < int64(n) || q.Stats().Messages > 0 {
		if time.Since(start) > 10*time.Minute {
			return 0, 0, fmt.Errorf("queue not empty after 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	delivered = float64(n) / time.Since(start).Seconds()
	return accepted, delivered, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
