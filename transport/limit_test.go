package transport

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// limited serves lim on a loopback listener and returns the server side of one connection
// and its client side.
func limited(t *testing.T, lim ConnLimits) (*LimitedConn, net.Conn) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewConnLimiter(lim).Listener(raw, nil)
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*LimitedConn), client
}

// trickle writes one byte every period until the connection fails.
func trickle(c net.Conn, period time.Duration) {
	go func() {
		for {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(period)
		}
	}()
}

// readUntilErr reads c until an error and returns it and when it came.
func readUntilErr(c net.Conn) (time.Duration, error) {
	start := time.Now()
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			return time.Since(start), err
		}
	}
}

func TestLimitedConnDeadlines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lim   ConnLimits
		setup func(*LimitedConn)
	}{
		{"handshake", ConnLimits{HandshakeTimeout: 200 * time.Millisecond}, nil},
		{"session", ConnLimits{SessionTimeout: 200 * time.Millisecond}, nil},
		{"phase", ConnLimits{}, func(c *LimitedConn) { c.SetPhaseDeadline(time.Now().Add(200 * time.Millisecond)) }},
		// The library's own deadline still applies, and a later one does not lengthen ours.
		{"library", ConnLimits{SessionTimeout: 200 * time.Millisecond}, func(c *LimitedConn) { c.SetReadDeadline(time.Now().Add(time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client := limited(t, tc.lim)
			if tc.setup != nil {
				tc.setup(c)
			}
			trickle(client, 20*time.Millisecond) // bytes keep coming: only a bound of the whole stops it
			d, err := readUntilErr(c)
			if !errors.Is(err, os.ErrDeadlineExceeded) || d > 2*time.Second {
				t.Fatalf("read ended after %v with %v", d, err)
			}
			// Timed out stays timed out, even with a new deadline from the library.
			c.SetReadDeadline(time.Now().Add(time.Hour))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read after the deadline: %v", err)
			}
		})
	}
}

// The idle timeout is re-armed by each read; EndHandshake and a zero phase lift their bounds.
func TestLimitedConnIdle(t *testing.T) {
	c, client := limited(t, ConnLimits{IdleTimeout: 150 * time.Millisecond, HandshakeTimeout: 100 * time.Millisecond})
	c.EndHandshake()
	c.SetPhaseDeadline(time.Now().Add(50 * time.Millisecond))
	c.SetPhaseDeadline(time.Time{})
	go func() {
		for range 10 {
			client.Write([]byte("x"))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	r := bufio.NewReader(c)
	for i := range 10 {
		if _, err := r.ReadByte(); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	if d, err := readUntilErr(c); !errors.Is(err, os.ErrDeadlineExceeded) || d < 100*time.Millisecond {
		t.Fatalf("silent peer: %v after %v", err, d)
	}
}

// The caps count connections of all the limiter's listeners, per address and in total, and
// a closed connection frees its place.
func TestConnLimiterCaps(t *testing.T) {
	cl := NewConnLimiter(ConnLimits{MaxConns: 3, MaxConnsPerAddr: 2})
	var addrs []string
	refused := make(chan string, 10)
	accepted := make(chan net.Conn, 10)
	for range 2 {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := cl.Listener(raw, func(c net.Conn) { refused <- c.RemoteAddr().String() })
		t.Cleanup(func() { l.Close() })
		addrs = append(addrs, raw.Addr().String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	dial := func(local, addr string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", local, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	wait := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); cl.Conns() != n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections, want %d", cl.Conns(), n)
			}
		}
	}
	dial("127.0.0.1", addrs[0])
	dial("127.0.0.1", addrs[1])
	wait(2)
	dial("127.0.0.1", addrs[0])
	select {
	case <-refused:
	case <-time.After(2 * time.Second):
		t.Fatal("third connection from one address not refused")
	}
	dial("127.0.0.2", addrs[1])
	wait(3)
	dial("127.0.0.3", addrs[0])
	select {
	case <-refused:
	case <-time.After(2 * time.Second):
		t.Fatal("fourth connection not refused")
	}
	c := <-accepted
	c.Close()
	c.Close() // frees its place once
	wait(2)
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
	wait(0)
}
