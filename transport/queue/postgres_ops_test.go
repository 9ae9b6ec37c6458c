package queue_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/queue"
)

// PostgreSQL restarted while a node delivers a message: the outcome of that attempt cannot be
// stored nor its lease released, yet once the database is back the node gives its lease
// back at once and attempts the message again within seconds, not after the lease's minute.
func TestPostgresRestartMidDelivery(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	q, err := queue.OpenPostgres(context.Background(), dsn, &queue.PostgresOptions{Node: "a", Lease: time.Minute,
		Poll: 100 * time.Millisecond, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	id := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
	started, cont := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var again atomic.Int64 // when the second attempt came, in Unix nanoseconds
	runNode(t, q, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		if calls.Add(1) == 1 {
			close(started)
			<-cont
		} else {
			again.CompareAndSwap(0, time.Now().UnixNano())
		}
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}), nil)
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("the message was not attempted")
	}
	pg.Stop() // the attempt's outcome and its lease release will fail
	close(cont)
	time.Sleep(500 * time.Millisecond)
	pg.Start(t)
	back := time.Now()
	waitFor(t, "a second attempt", func() bool { return again.Load() != 0 })
	took := time.Unix(0, again.Load()).Sub(back)
	t.Logf("attempted again %v after the database came back (lease 1m)", took)
	if took > 10*time.Second {
		t.Errorf("attempted again after %v: the lease was left to expire", took)
	}
	waitFor(t, "the message done", func() bool { _, err := q.Get(id); return err != nil })
}

// deadPeer is a destination that accepts TCP connections and closes them without a greeting
// (no SMTP session: unreachable) until up is set, then greets. It counts the connections.
type deadPeer struct {
	ln    net.Listener
	up    atomic.Bool
	dials atomic.Int64
}

func startDeadPeer(t *testing.T) *deadPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &deadPeer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.dials.Add(1)
			if p.up.Load() {
				c.Write([]byte("220 peer ready\r\n"))
			}
			c.Close()
		}
	}()
	return p
}

// deliverer opens a session with the peer for each attempt: a greeting is a delivery.
func (p *deadPeer) deliverer() queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		res := queue.Result{Status: "250 2.0.0 ok"}
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", p.ln.Addr().String())
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 64))
			c.Close()
		}
		if err != nil {
			res = queue.Result{Err: err, Status: "451 4.4.1 no greeting", Unreachable: true}
		}
		rs := make([]queue.Result, len(j.Rcpts))
		for i := range rs {
			rs[i] = res
		}
		return rs
	})
}

// Two nodes, forty messages for a dead destination: its suspension is shared through the
// database, so the cluster probes it one attempt at a time, every Backoff(1), rather than
// each node on its own count. Once it answers, the probe delivers, and the messages that
// either node deferred without an attempt are made due at once and delivered.
func TestPostgresSharedSuspension(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	const interval = 300 * time.Millisecond
	sched := queue.Schedule{First: interval, Factor: 1, Max: interval, Jitter: -1, SuspendAfter: 2}
	open := func(node string) *queue.Postgres {
		q, err := queue.OpenPostgres(context.Background(), dsn, &queue.PostgresOptions{Node: node, Schedule: sched,
			Poll: 50 * time.Millisecond, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	a, b := open("a"), open("b")
	peer := startDeadPeer(t)
	var ids []string
	for i := range 40 {
		ids = append(ids, enqueue(t, []*queue.Postgres{a, b}[i%2], "s@a.mssante.fr", "x\r\n", "r@dead.mssante.fr"))
	}
	const workers = 2
	for _, q := range []*queue.Postgres{a, b} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); q.Run(ctx, peer.deliverer(), &queue.RunOptions{Workers: workers}) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	const period = 4 * time.Second
	time.Sleep(period)
	dials := peer.dials.Load()
	// What one node alone would send: its first attempts at once, until the suspension,
	// then a probe every interval (plus the round trips of a loaded machine). Two nodes each
	// on their own count would send about twice the probes.
	bound := int64(2*workers+sched.SuspendAfter) + int64(period/interval)*5/4
	t.Logf("%d connections to the dead destination in %v from two nodes (one probe every %v; bound %d)", dials, period, interval, bound)
	if dials > bound {
		t.Errorf("%d connections in %v, more than one probe every %v from the cluster (%d)", dials, period, interval, bound)
	}
	if s := a.Stats(); s.Suspended != 1 {
		t.Errorf("Stats.Suspended on a = %d", s.Suspended)
	}
	peer.up.Store(true)
	// A probe refused just before counts among the dials before the destination came back.
	dials = peer.dials.Load()
	start := time.Now()
	waitFor(t, "every message delivered", func() bool { return a.Stats().Messages == 0 })
	t.Logf("all 40 delivered %v after the destination came back", time.Since(start))
	if d := peer.dials.Load() - dials; d > int64(len(ids)) {
		t.Errorf("%d connections to deliver %d messages", d, len(ids))
	}
}
