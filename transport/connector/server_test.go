package connector

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// startServer serves a's relay on a new loopback listener; the channel gives Serve's result.
func startServer(t *testing.T, a *node, implicitTLS ...bool) (*Server, string, chan error) {
	t.Helper()
	s, err := NewServer(&ServerOptions{Hostname: "mx.a.mssante.test", ImplicitTLS: len(implicitTLS) > 0 && implicitTLS[0],
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

// serveReturned waits for Serve's result, which must be ErrServerClosed.
func serveReturned(t *testing.T, ch chan error) {
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

// Serve, Shutdown and Close with one go-smtp server per connection: Shutdown closes a session
// idle between transactions at once with 421 4.3.2 (before, it waited for the peer or the
// idle timeout) and Close ends a session; Serve then returns ErrServerClosed, also when
// called after; the connection counters go back to zero.
func TestServerShutdownAndClose(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	start := func() (*Server, string, chan error) { return startServer(t, a) }
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
	served := func(ch chan error) { t.Helper(); serveReturned(t, ch) }
	conns := func(s *Server) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.limiter.Conns() + len(s.conns)
	}

	s, addr, ch := start()
	c := dial(addr)
	c.cmd("EHLO client.test", "250") // a pooled session, idle (read timeout: 5 min)
	fresh := dial(addr)              // greeted only
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with idle sessions open: %v", err)
	}
	if d := time.Since(began); d > 15*time.Second { // far below the idle timeout: it did not wait
		t.Fatalf("Shutdown took %v", d)
	}
	served(ch)
	for _, x := range []*rawSession{c, fresh} {
		x.expect("421 4.3.2")
		if r := x.reply(); r != "EOF" {
			t.Fatalf("after 421: %q, want the connection closed", r)
		}
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
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

// Shutdown lets a transaction in progress finish: a session mid-DATA gets its 250 (the message
// is queued) and then 421 4.3.2, while an idle pooled TLS session of the same peer is closed
// with 421 4.3.2 at once; Shutdown returns only after the transaction.
func TestServerShutdownDrainsTransaction(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	s, addr, ch := startServer(t, a)
	tc := clientTLS(b.server, testPKI(t))
	idle := rawDial(t, addr, tc)
	busy := rawDial(t, addr, tc)
	busy.cmd("MAIL FROM:<dr@b.mssante.test>", "250")
	busy.cmd("RCPT TO:<"+a.bal+">", "250")
	busy.cmd("DATA", "354")
	m := msg("dr@b.mssante.test", a.bal, "drain")
	busy.write(m[:len(m)/2])

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2")
	if r := idle.reply(); r != "EOF" {
		t.Fatalf("idle session after 421: %q", r)
	}
	serveReturned(t, ch)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a transaction in progress", err)
	default:
	}
	busy.write(m[len(m)/2:] + "\r\n.\r\n")
	busy.expect("250 2.0.0")
	busy.expect("421 4.3.2")
	if r := busy.reply(); r != "EOF" {
		t.Fatalf("session after its transaction at Shutdown: %q", r)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if ids := a.q.IDs(); len(ids) != 1 {
		t.Fatalf("queue holds %d messages, want the one of the drained transaction", len(ids))
	}
}

// On an implicit-TLS listener (465), Shutdown closes an idle session with 421 4.3.2 inside TLS,
// and a connection that never sent its ClientHello does not hold the stop for the read
// timeout (5 min).
func TestServerShutdownImplicitTLS(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	s, addr, ch := startServer(t, a, true)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientTLS(b.server, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	idle := &rawSession{t: t, c: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	idle.expect("220")
	idle.cmd("EHLO client.test", "250")
	silent, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "both connections served", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.conns) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(began); d > 30*time.Second { // far below the read timeout
		t.Fatalf("Shutdown took %v", d)
	}
	serveReturned(t, ch)
	idle.expect("421 4.3.2")
	if r := idle.reply(); r != "EOF" {
		t.Fatalf("after 421: %q", r)
	}
}

// blockScanner waits, in Scan, until its context is cancelled, and reports it.
type blockScanner struct{ started, cancelled chan struct{} }

func (b blockScanner) Scan(ctx context.Context, _ io.Reader) error {
	close(b.started)
	<-ctx.Done()
	close(b.cancelled)
	return ctx.Err()
}

// Close cancels what a session is waiting on (here a scanner that never answers): the stop
// does not hang on it, and the message is not acknowledged.
func TestServerCloseCancelsCalls(t *testing.T) {
	p := testPKI(t)
	scan := blockScanner{make(chan struct{}), make(chan struct{})}
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: scan})
	trust(a, b)
	c, err := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan string, 1)
	go func() {
		sent <- send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, msg("x@a.mssante.test", "dr@b.mssante.test", "s"), nil, nil)
	}()
	select {
	case <-scan.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the scanner was not called")
	}
	b.relay.Close()
	select {
	case <-scan.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not cancel the scan")
	}
	select {
	case got := <-sent:
		if got == "ok" {
			t.Fatal("message acknowledged after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client got no answer")
	}
	if ids := b.q.IDs(); len(ids) != 0 {
		t.Fatalf("queued after Close: %v", ids)
	}
}
