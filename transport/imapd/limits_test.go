package imapd

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// closedWithin reports whether the server closes c (EOF or reset) within d, after what it
// sent first (a greeting, a BYE), which is returned.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) (string, bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return string(b), false
	}
	return string(b), true
}

// Silent TCP connections to the implicit-TLS listener (no ClientHello) are closed at the
// handshake deadline; before login a connection has the login deadline in all.
func TestSilentConnectionsClosed(t *testing.T) {
	e := newEnvWith(t, func(o *Options) {
		o.HandshakeTimeout = 200 * time.Millisecond
		o.LoginTimeout = 400 * time.Millisecond
	})
	const n = 5
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", e.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	start := time.Now()
	for i, c := range conns {
		if _, ok := closedWithin(t, c, 2*time.Second); !ok {
			t.Fatalf("silent connection %d still open after %v", i, time.Since(start))
		}
	}
	// On the clear-text listener: greeting, then silence until the login deadline, then closed,
	// even though the client keeps sending bytes of a command.
	c, err := net.Dial("tcp", e.plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q, %v", l, err)
	}
	start = time.Now()
	go func() {
		for range 40 {
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if _, ok := closedWithin(t, c, 2*time.Second); !ok {
		t.Fatalf("connection without login still open after %v", time.Since(start))
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the login deadline", d)
	}
	waitConns(t, e.srv, 0)
}

// waitConns waits until the server holds n connections.
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for s.limiter.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d connections, want %d", s.limiter.Conns(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The caps refuse the connection beyond them, per address and in total, on both listeners
// together; a refused one gets a BYE on the clear-text listener.
func TestConnectionCaps(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.MaxConns = 3; o.MaxConnsPerAddr = 2 })
	greeted := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	dialFrom(t, "127.0.0.1", e.plainAddr)
	dialFrom(t, "127.0.0.1", e.tlsAddr) // counted from accept, before any handshake
	waitConns(t, e.srv, 2)
	c := dialFrom(t, "127.0.0.1", e.plainAddr)
	if l, ok := closedWithin(t, c, 2*time.Second); !ok || !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("third connection from one address: %q, closed %v", l, ok)
	}
	if l := greeted(dialFrom(t, "127.0.0.2", e.plainAddr)); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("connection from another address: %q", l)
	}
	c = dialFrom(t, "127.0.0.3", e.plainAddr)
	if l, ok := closedWithin(t, c, 2*time.Second); !ok || !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("fourth connection: %q, closed %v", l, ok)
	}
}

// A logged-in session that sends nothing is closed at the idle timeout; one that keeps
// sending commands, IDLE included, stays.
func TestIdleSessionClosed(t *testing.T) {
	// The login deadline leaves a loaded machine time for the handshake and EXTERNAL, and the
	// busy session outlives it, so that it no longer applies once logged in.
	e := newEnvWith(t, func(o *Options) { o.IdleTimeout = 400 * time.Millisecond; o.LoginTimeout = time.Second })
	busy := e.dialApp(t, nil)
	idle := e.dialApp(t, nil)
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		if err := busy.Noop().Wait(); err != nil {
			t.Fatalf("NOOP of an active session after %v: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-idle.Closed():
	case <-time.After(2 * time.Second):
		t.Fatal("idle session still open")
	}
	// IDLE re-armed: a client that re-issues IDLE within the timeout stays.
	for range 3 {
		cmd, err := busy.Idle()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		if err := cmd.Close(); err != nil {
			t.Fatalf("IDLE: %v", err)
		}
	}
	if _, err := busy.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}
