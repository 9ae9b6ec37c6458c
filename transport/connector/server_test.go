package connector

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// Serve, Shutdown and Close with one go-smtp server per connection: Shutdown waits for the
// session in progress (which keeps working) and Close ends it; Serve then returns
// ErrServerClosed, also when called after; the connection counters go back to zero.
func TestServerShutdownAndClose(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	start := func() (*Server, string, chan error) {
		s, err := NewServer(&ServerOptions{Hostname: "mx.a.mssante.test",
			TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
			Policy: a.policy, LocalDomains: []string{a.domain}, Local: a.maildir, Queue: a.q})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		return s, l.Addr().String(), served
	}
	dial := func(addr string) *rawSession {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		t.Cleanup(func() { conn.Close() })
		s := &rawSession{t: t, c: conn, r: bufio.NewReader(conn)}
		s.expect("220")
		return s
	}
	served := func(ch chan error) {
		t.Helper()
		select {
		case err := <-ch:
			if !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	conns := func(s *Server) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.total + len(s.conns)
	}

	s, addr, ch := start()
	c := dial(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a session open: %v", err)
	}
	served(ch)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
	c.cmd("EHLO client.test", "250") // the session goes on
	c.cmd("QUIT", "221")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := s.Shutdown(ctx2); err != nil {
		t.Fatalf("Shutdown after the session ended: %v", err)
	}
	if n := conns(s); n != 0 {
		t.Fatalf("%d connections counted after Shutdown", n)
	}
	if err := s.Serve(nil); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}

	s, addr, ch = start()
	c = dial(addr)
	c.cmd("EHLO client.test", "250")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	served(ch)
	if r := c.reply(); r != "EOF" && !strings.HasPrefix(r, "421") {
		t.Fatalf("after Close: %q", r)
	}
	waitFor(t, "connections released", func() bool { return conns(s) == 0 })
}
