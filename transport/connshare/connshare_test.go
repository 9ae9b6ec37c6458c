package connshare_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connshare"
)

// node is one node's listener, bounded by a ConnLimiter that shares its counts.
type node struct {
	share *connshare.Share
	pool  *pgxpool.Pool
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn // accepted, held open
}

func startNode(t *testing.T, pg *peers.Postgres, name string, perAddr int, o connshare.Options) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	o.Node = name
	share, err := connshare.Open(ctx, pool, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { share.Close() })
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := transport.NewConnLimiter(transport.ConnLimits{MaxConnsPerAddr: perAddr, Share: share.Scope("imap")})
	n := &node{share: share, pool: pool, ln: lim.Listener(raw, nil)}
	t.Cleanup(func() {
		n.ln.Close()
		n.mu.Lock()
		for _, c := range n.conns {
			c.Close()
		}
		n.mu.Unlock()
	})
	go func() {
		for {
			c, err := n.ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("+"))
			n.mu.Lock()
			n.conns = append(n.conns, c)
			n.mu.Unlock()
		}
	}()
	return n
}

// dial connects to n and reports whether the connection was accepted (the server writes "+")
// or closed at accept.
func dial(t *testing.T, n *node) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", n.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	_, err = c.Read(b)
	return c, err == nil
}

// closeServerSide closes the connections n accepted, oldest first, k of them.
func (n *node) closeServerSide(k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns[:k] {
		c.Close()
	}
	n.conns = n.conns[k:]
}

func waitOthers(t *testing.T, n *node, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.share.Others("imap", "127.0.0.1") != want {
		if time.Now().After(deadline) {
			t.Fatalf("others hold %d connections, want %d", n.share.Others("imap", "127.0.0.1"), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two nodes over one PostgreSQL, 3 connections per address: those held on node A count on
// node B once published; closing them frees B; a node that stops heartbeating is ignored
// after its lease, and itself forgets the others' counts; a node that closes is forgotten at
// once.
func TestTwoNodesShareTheLimit(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	o := connshare.Options{Delay: 20 * time.Millisecond, Interval: 100 * time.Millisecond, Lease: 2 * time.Second}
	a := startNode(t, pg, "node-a", 3, o)
	b := startNode(t, pg, "node-b", 3, o)
	for i := range 2 {
		if _, ok := dial(t, a); !ok {
			t.Fatalf("connection %d to A refused", i+1)
		}
	}
	waitOthers(t, b, 2)
	if _, ok := dial(t, b); !ok {
		t.Fatal("third connection, on B, refused")
	}
	waitOthers(t, a, 1)
	if _, ok := dial(t, b); ok {
		t.Fatal("fourth connection, on B, accepted: 2 on A + 1 on B")
	}
	if _, ok := dial(t, a); ok {
		t.Fatal("fourth connection, on A, accepted")
	}

	// A closes one: B may take one more.
	a.closeServerSide(1)
	waitOthers(t, b, 1)
	if _, ok := dial(t, b); !ok {
		t.Fatal("B refused after A closed one")
	}

	// A dies (it can no longer reach the database): B ignores its count after the lease,
	// and A, which can no longer read B's, bounds the address by its own count only.
	waitOthers(t, a, 2)
	a.pool.Close()
	waitOthers(t, b, 0)
	waitOthers(t, a, 0)
	if _, ok := dial(t, b); !ok {
		t.Fatal("B refused after A's lease ended")
	}

	// A third node sees B's three; when B closes (a clean stop) they are gone at once.
	c := startNode(t, pg, "node-c", 3, o)
	waitOthers(t, c, 3)
	if _, ok := dial(t, c); ok {
		t.Fatal("C accepted a fourth")
	}
	if err := b.share.Close(); err != nil {
		t.Fatal(err)
	}
	waitOthers(t, c, 0)
}

// Bounded: the other nodes' counts kept are at most MaxAddrs, the busiest addresses first.
func TestMaxAddrs(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	o := connshare.Options{Delay: 10 * time.Millisecond, Interval: 50 * time.Millisecond, MaxAddrs: 2}
	a := startNode(t, pg, "node-a", 0, o)
	b := startNode(t, pg, "node-b", 0, o)
	s := a.share.Scope("relay")
	for i, addr := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		s.Set(addr, i+1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.share.Others("relay", "192.0.2.3") != 3 || b.share.Others("relay", "192.0.2.2") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("B never read A's counts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := b.share.Others("relay", "192.0.2.1"); n != 0 {
		t.Fatalf("B keeps %d for the third address, over MaxAddrs", n)
	}
	if n := b.share.Others("imap", "192.0.2.3"); n != 0 {
		t.Fatalf("another scope counted: %d", n)
	}
}

// The counts survive the database: a change made while PostgreSQL is down is published once
// it is back, and a node whose row was swept (a partition longer than ten leases) comes back
// with all its counts.
func TestDatabaseRestartAndSweep(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	o := connshare.Options{Delay: 20 * time.Millisecond, Interval: 100 * time.Millisecond, Lease: 5 * time.Second}
	a := startNode(t, pg, "node-a", 10, o)
	b := startNode(t, pg, "node-b", 10, o)
	if _, ok := dial(t, a); !ok {
		t.Fatal("refused")
	}
	waitOthers(t, b, 1)
	pg.Stop()
	if _, ok := dial(t, a); !ok {
		t.Fatal("refused with the database down")
	}
	pg.Start(t)
	waitOthers(t, b, 2)

	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `DELETE FROM connshare_nodes WHERE node = 'node-a'`); err != nil {
		t.Fatal(err)
	}
	var n int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := b.pool.QueryRow(ctx, `SELECT n FROM connshare_conns WHERE node = 'node-a'`).Scan(&n)
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-a's row 10 s after its sweep: %d, %v", n, err)
		}
	}
	waitOthers(t, b, 2)
}

// The lag of a count from one node to another with the default Delay and Interval: the
// time from Set on node A until node B's limit check sees it.
// go test -run '^$' -bench Lag -benchtime 20x ./transport/connshare/
func BenchmarkLag(b *testing.B) {
	pg := peers.StartPostgres(b, nil)
	ctx := context.Background()
	open := func(name string) *connshare.Share {
		pool, err := pgxpool.New(ctx, pg.DSN())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		s, err := connshare.Open(ctx, pool, &connshare.Options{Node: name})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	a, other := open("node-a").Scope("imap"), open("node-b")
	i := 0
	for b.Loop() {
		i++
		a.Set("192.0.2.1", i)
		for other.Others("imap", "192.0.2.1") != i {
			time.Sleep(time.Millisecond)
		}
	}
}
