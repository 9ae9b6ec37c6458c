package connector

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/queue"
)

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// listen serves n's relay server on a counting loopback listener as well.
func (n *node) listen(t *testing.T) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	go n.relay.Serve(cl)
	return cl
}

// testClock is an injected clock that the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func enqueueN(t *testing.T, q *queue.Queue, from, to string, n int) {
	t.Helper()
	for i := range n {
		e := &queue.Envelope{From: from, Rcpts: []*queue.Recipient{{Addr: to}}}
		if _, err := q.Enqueue(context.Background(), e, strings.NewReader(msg(from, to, fmt.Sprint("m", i, "-", time.Now().UnixNano())))); err != nil {
			t.Fatal(err)
		}
	}
}

// Several messages travel over one SMTP session (RSET between them), at most
// MaxMessagesPerConn a session; a connection idle past IdleTimeout is closed and the next
// message opens a new one. Counted on the accepting side, our relay server's listener.
func TestDeliveryReusesConnections(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	cl := b.listen(t)
	d, err := NewDelivery(&DeliveryOptions{Hostname: "mx." + a.domain, Policy: a.policy,
		TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
		Routes: map[string]string{b.domain: cl.Addr().String()}, MaxPerDestination: 1, MaxMessagesPerConn: 4,
		IdleTimeout: 500 * time.Millisecond, ConnectTimeout: 5 * time.Second, CommandTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	qdir := t.TempDir()
	q, err := queue.Open(&queue.Options{Dir: qdir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx, d, &queue.RunOptions{Workers: 4}) }()
	defer func() { cancel(); <-done }()

	enqueueN(t, q, a.bal, "dr@b.mssante.test", 10)
	waitFor(t, "ten messages at b", func() bool { return b.q.Stats().Messages == 10 })
	if n := cl.n.Load(); n != 3 {
		t.Fatalf("10 messages, at most 4 a connection: %d connections, want 3", n)
	}
	// The reaper closes the idle connection; the next message opens a fourth.
	waitFor(t, "the idle connection closed", func() bool { return b.relay.limiter.Conns() == 0 })
	enqueueN(t, q, a.bal, "dr@b.mssante.test", 1)
	waitFor(t, "eleven messages at b", func() bool { return b.q.Stats().Messages == 11 }, func() string { ms, _ := queue.Inspect(qdir); return fmt.Sprintf("%+v %v", q.Stats(), ms[0].Rcpts[0]) })
	if n := cl.n.Load(); n != 4 {
		t.Fatalf("after the idle timeout: %d connections, want 4", n)
	}
}

// One destination down (connection refused) and another up: the dead one is dialled
// SuspendAfter times, then its messages are deferred as "delivery temporarily suspended"
// without a dial while the other destination gets its mail; once it listens again, the next
// probe reaches it and every message it deferred is delivered.
func TestDeadDestinationSuspended(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	c := newNode(t, "c.mssante.test", &nodeOpts{noRun: true})
	trust(a, b, c)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // refused from now on
	var refused atomic.Int32
	var nd net.Dialer
	d, err := NewDelivery(&DeliveryOptions{Hostname: "mx." + a.domain, Policy: a.policy,
		TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
		Routes: map[string]string{b.domain: b.relayAddr, c.domain: deadAddr},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := nd.DialContext(ctx, network, addr)
			if err != nil && addr == deadAddr {
				refused.Add(1)
			}
			return conn, err
		},
		ConnectTimeout: 5 * time.Second, CommandTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	clk := &testClock{t: time.Now()}
	dir := t.TempDir()
	q, err := queue.Open(&queue.Options{Dir: dir, Now: clk.Now, Schedule: queue.Schedule{First: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	enqueueN(t, q, a.bal, "dr@c.mssante.test", 8)
	enqueueN(t, q, a.bal, "dr@b.mssante.test", 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx, d, &queue.RunOptions{Workers: 4}) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "b's mail delivered and c's deferred", func() bool {
		return b.q.Stats().Messages == 8 && q.Stats().Messages == 8 && q.Stats().InFlight == 0
	})
	if n := refused.Load(); n != 3 {
		t.Fatalf("%d dials to the dead destination, want 3 (Schedule.SuspendAfter)", n)
	}
	if s := q.Stats(); s.Suspended != 1 {
		t.Fatalf("stats %+v", s)
	}
	ms, err := queue.Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	suspended := 0
	for _, m := range ms {
		if strings.Contains(m.Rcpts[0].LastStatus, "delivery temporarily suspended: connection to the recipient's server failed") {
			suspended++
		}
	}
	if suspended != 5 {
		t.Fatalf("%d of 8 deferred as suspended, want 5", suspended)
	}

	// c comes back on the same address; once the suspension ends, one probe reaches it.
	l, err := net.Listen("tcp", deadAddr)
	if err != nil {
		t.Fatalf("the dead address was taken meanwhile: %v", err)
	}
	go c.relay.Serve(l)
	clk.Add(75 * time.Second) // past the suspension (1 min) and every deferral (1 min ±20 %)
	q.Kick()
	waitFor(t, "c's mail delivered", func() bool { return c.q.Stats().Messages == 8 && q.Stats().Messages == 0 },
		func() string { return fmt.Sprintf("%+v %+v %d", q.Stats(), c.q.Stats(), refused.Load()) })
	if n := refused.Load(); n != 3 {
		t.Fatalf("%d refused dials", n)
	}
}
