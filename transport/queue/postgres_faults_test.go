package queue_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/queue"
)

// The lease of the nodes of the fault tests: short, so that a takeover is seen quickly.
const faultLease = 2 * time.Second

// The peer of the fault tests: a table where a delivery is recorded (committed) before the
// deliverer answers, as a remote MTA's 250 follows its own commit.
const deliveriesTable = `CREATE TABLE IF NOT EXISTS test_deliveries (
	msg_id text NOT NULL, rcpt text NOT NULL, about text NOT NULL, node text NOT NULL, at timestamptz NOT NULL DEFAULT now())`

// recordingDeliverer records every recipient it is given in test_deliveries, with the
// envelope's EnvID (for a DSN, the message it reports on) and the node.
func recordingDeliverer(pool *pgxpool.Pool, node string) queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		rs := make([]queue.Result, len(j.Rcpts))
		for i, r := range j.Rcpts {
			if _, err := pool.Exec(ctx, `INSERT INTO test_deliveries (msg_id, rcpt, about, node) VALUES ($1, $2, $3, $4)`,
				j.Env.ID, r.Addr, j.Env.EnvID, node); err != nil {
				rs[i] = queue.Result{Err: err, Status: "451 4.3.0 peer unavailable"}
				continue
			}
			rs[i] = queue.Result{Status: "250 2.0.0 ok"}
		}
		return rs
	})
}

// dsnNotifier enqueues one notice message per recipient with a RedeliveryKey of the message,
// recipient and kind, as the connector's DSN notifier does: a notice raised again after a
// crash finds its first copy and is not queued twice.
func dsnNotifier(q queue.Spool) queue.Notifier {
	return queue.NotifierFunc(func(ctx context.Context, env *queue.Envelope, kind queue.NoticeKind, rcpts []*queue.Recipient) error {
		for _, r := range rcpts {
			_, err := q.Enqueue(ctx, &queue.Envelope{From: "", Source: "dsn", EnvID: env.ID,
				RedeliveryKey: "dsn\x00" + env.ID + "\x00" + string(kind) + "\x00" + r.Addr,
				Rcpts:         []*queue.Recipient{{Addr: env.From}}}, strings.NewReader("DSN "+string(kind)+"\r\n"))
			if err != nil && !errors.Is(err, queue.ErrRedelivered) {
				return err
			}
		}
		return nil
	})
}

// TestPostgresNodeProcess is a node of TestPostgresNodesKilled: it enqueues its share of the
// messages, printing "accepted ID" once each Commit has returned (the 250), and delivers
// beside the other nodes until it is stopped or killed. It does nothing in a normal run.
func TestPostgresNodeProcess(t *testing.T) {
	dsn := os.Getenv("MSSANTE_PGQ_DSN")
	if dsn == "" {
		t.Skip("helper process of TestPostgresNodesKilled")
	}
	node := os.Getenv("MSSANTE_PGQ_NODE")
	n, _ := strconv.Atoi(os.Getenv("MSSANTE_PGQ_COUNT"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	q, err := queue.OpenPostgres(ctx, dsn, &queue.PostgresOptions{Node: node, Lease: faultLease, Poll: 50 * time.Millisecond, MaxConns: 8,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- q.Run(ctx, recordingDeliverer(pool, node), &queue.RunOptions{Workers: 8, Notifier: dsnNotifier(q)})
	}()
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		id, err := q.Enqueue(ctx, &queue.Envelope{From: "s@a.mssante.fr", Source: "test",
			Rcpts: []*queue.Recipient{{Addr: "r@b.mssante.fr", Notify: []string{queue.NotifySuccess, queue.NotifyFailure}}}},
			strings.NewReader(fmt.Sprintf("Subject: %s %d\r\n\r\nbody\r\n", node, i)))
		if err != nil {
			fmt.Fprintf(out, "refused %v\n", err)
			out.Flush()
			continue
		}
		fmt.Fprintf(out, "accepted %s\n", id)
		out.Flush()
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Fprintln(out, "enqueued")
	out.Flush()
	<-done
	q.Close()
	pool.Close()
}

// Three node processes over one database accept 2,000 messages between them while one of
// them is killed with SIGKILL and restarted, twice. Every accepted message is delivered, and
// twice only when a killed node had delivered it without storing the outcome; each gets
// exactly one delivery notice across the nodes; the messages the dead node held are taken
// over by the others within the lease.
func TestPostgresNodesKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("three node processes and 4,000 deliveries")
	}
	pg := peers.StartPostgres(t, &peers.PostgresOptions{Settings: []string{"max_connections = 200"}})
	dsn := pgDatabase(t, pg)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, deliveriesTable); err != nil {
		t.Fatal(err)
	}
	const total = 2000
	var (
		mu       sync.Mutex
		accepted = map[string]string{} // message → node instance
		byNode   = map[string]int{}
		readers  sync.WaitGroup
	)
	logPath := t.TempDir() + "/nodes.log"
	logf, _ := os.Create(logPath)
	defer logf.Close()
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("nodes' log:\n%s", tailLines(string(b), 40))
		}
	}()
	start := func(name string, n int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresNodeProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "MSSANTE_PGQ_DSN="+dsn, "MSSANTE_PGQ_NODE="+name, "MSSANTE_PGQ_COUNT="+strconv.Itoa(n))
		cmd.Stderr = logf
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if id, ok := strings.CutPrefix(sc.Text(), "accepted "); ok {
					mu.Lock()
					accepted[id] = name
					byNode[name]++
					mu.Unlock()
				}
			}
		}()
		return cmd
	}
	countOf := func(name string) int { mu.Lock(); defer mu.Unlock(); return byNode[name] }
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()
	cmds = append(cmds, start("n1", 700), start("n2", 700))
	victim := start("n3-a", 600)
	left := 600
	var killed []string
	var takeovers []time.Duration
	for round, next := range []string{"n3-b", "n3-c"} {
		name := []string{"n3-a", "n3-b"}[round]
		for deadline := time.Now().Add(60 * time.Second); countOf(name) < 150; {
			if time.Now().After(deadline) {
				t.Fatalf("%s accepted %d messages in 60 s", name, countOf(name))
			}
			time.Sleep(10 * time.Millisecond)
		}
		victim.Process.Kill() // SIGKILL: no lease released, no outcome stored
		victim.Wait()
		killedAt := time.Now()
		killed = append(killed, name)
		left -= countOf(name)
		// What the dead node held: the other nodes take it once the leases expire.
		rows, _ := pool.Query(ctx, `SELECT id FROM queue_messages WHERE lease_owner = $1 AND lease_until > now()`, name)
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for deadline := killedAt.Add(30 * time.Second); ; {
			var still int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM queue_messages WHERE id = ANY($1) AND lease_owner = $2`,
				held, name).Scan(&still); err != nil {
				t.Fatal(err)
			}
			if still == 0 {
				takeovers = append(takeovers, time.Since(killedAt))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d messages of the killed node %s still its own 30 s later", still, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s killed after %d acceptances holding %d leases; taken over in %v", name, countOf(name), len(held), takeovers[round])
		if takeovers[round] > faultLease+time.Second {
			t.Errorf("leases of %s taken over after %v, lease %v", name, takeovers[round], faultLease)
		}
		victim = start(next, left)
	}
	cmds = append(cmds, victim)
	// Every message accepted, then every message and notice delivered.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		var queued int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM queue_messages`).Scan(&queued); err != nil {
			t.Fatal(err)
		}
		if n >= total && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d accepted, %d still queued", n, queued)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deliveries := map[string][]string{} // message → nodes that delivered it
	notices := map[string]map[string]bool{}
	rows, err := pool.Query(ctx, `SELECT msg_id, rcpt, about, node FROM test_deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, rcpt, about, node string
		if err := rows.Scan(&id, &rcpt, &about, &node); err != nil {
			t.Fatal(err)
		}
		if rcpt == "r@b.mssante.fr" {
			deliveries[id] = append(deliveries[id], node)
		} else {
			if notices[about] == nil {
				notices[about] = map[string]bool{}
			}
			notices[about][id] = true
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	isKilled := func(node string) bool {
		for _, k := range killed {
			if k == node {
				return true
			}
		}
		return false
	}
	twice := 0
	for id := range accepted {
		ds := deliveries[id]
		switch {
		case len(ds) == 0:
			t.Errorf("accepted message %s never delivered", id)
		case len(ds) > 1:
			twice++
			if len(ds) > 2 || !(isKilled(ds[0]) || isKilled(ds[1])) {
				t.Errorf("message %s delivered by %v", id, ds)
			}
		}
		if len(notices[id]) != 1 {
			t.Errorf("message %s: %d delivery notices, want 1", id, len(notices[id]))
		}
	}
	// A message committed by a node killed before it printed "accepted" is delivered too.
	extra := 0
	for id := range deliveries {
		if _, ok := accepted[id]; !ok {
			extra++
		}
	}
	t.Logf("%d accepted (%v), %d delivered twice (by a killed node, then again), %d committed but killed before the 250; takeovers %v",
		len(accepted), byNode, twice, extra, takeovers)
	if extra > len(killed) {
		t.Errorf("%d messages delivered that no node accepted", extra)
	}
}

// PostgreSQL restarted under load: a commit that fails is an error (the SMTP server answers
// 4xx), a commit that returned nil is never lost, and the queue reconnects by itself and
// delivers everything.
func TestPostgresRestartUnderLoad(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	ctx := context.Background()
	q, err := queue.OpenPostgres(ctx, dsn, &queue.PostgresOptions{Lease: faultLease, Poll: 50 * time.Millisecond, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var (
		mu        sync.Mutex
		ok        []string
		failed    atomic.Int64
		delivered = map[string]int{}
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	d := queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		mu.Lock()
		delivered[j.Env.ID]++
		mu.Unlock()
		return make([]queue.Result, len(j.Rcpts))
	})
	rctx, cancel := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); q.Run(rctx, d, &queue.RunOptions{Workers: 4}) }()
	defer func() { cancel(); <-runDone }()
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				id, err := q.Enqueue(cctx, &queue.Envelope{From: "s@a.mssante.fr", Rcpts: []*queue.Recipient{{Addr: "r@b.mssante.fr"}}},
					strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
				ccancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				ok = append(ok, id)
				mu.Unlock()
			}
		})
	}
	okCount := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
	waitFor(t, "commits before the restart", func() bool { return okCount() >= 200 })
	pg.Stop()
	before := okCount()
	time.Sleep(300 * time.Millisecond)
	pg.Start(t)
	waitFor(t, "commits after the restart", func() bool { return okCount() >= before+200 })
	stop.Store(true)
	wg.Wait()
	if failed.Load() == 0 {
		t.Errorf("no commit failed while PostgreSQL was down")
	}
	waitFor(t, "every committed message delivered", func() bool { return q.Stats().Messages == 0 })
	mu.Lock()
	defer mu.Unlock()
	lost, twice := 0, 0
	for _, id := range ok {
		switch delivered[id] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	t.Logf("%d committed, %d refused while PostgreSQL restarted, %d delivered twice", len(ok), failed.Load(), twice)
	if lost > 0 {
		t.Errorf("%d committed messages never delivered", lost)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
