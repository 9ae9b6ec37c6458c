package bal

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// These tests pin the two behaviours of go-smtp's client that make openSMTP run STARTTLS
// itself (startTLS) and hand go-smtp the TLS connection with the greeting it read in clear
// (flushConn.greeting). If one of them fails after a go-smtp upgrade, the fake greeting may
// be replaceable by the library's own API.

// A Client made by smtp.NewClient reads a 220 greeting before it sends anything, and has no
// option to start past it: over a connection whose greeting was already read (before
// STARTTLS, RFC 3207 §4.2: the client then sends EHLO first), Hello would wait for a 220
// that never comes.
func TestGoSMTPClientWaitsForGreeting(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	c := smtp.NewClient(cli)
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Hello("dpi.example") }()

	br := bufio.NewReader(srv)
	srv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if line, err := br.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("go-smtp sent %q (%v) before any greeting: openSMTP could give it the TLS connection without one", line, err)
	}
	srv.SetReadDeadline(time.Time{})
	if _, err := srv.Write([]byte("220 ready\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "EHLO dpi.example\r\n" {
		t.Fatalf("after the greeting: %q, %v", line, err)
	}
	if _, err := srv.Write([]byte("250 ok\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// go-smtp's own STARTTLS (NewClientStartTLS) wraps the connection it is given in a tls.Conn
// it keeps: what the caller passes sits below TLS, so bal could neither gather go-smtp's
// 4 KiB writes into large TLS records (flushConn) nor write the message to the TLS
// connection itself (dotStuffer), and the clear-text reply to STARTTLS would be read by a
// buffer bal cannot inspect for injected bytes (CVE-2011-0411).
func TestGoSMTPStartTLSKeepsTheTLSConn(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := smtp.NewClientStartTLS(cli, &tls.Config{ServerName: "mss.example"})
		if err != nil {
			return
		}
		c.Hello("dpi.example") // fails once the server closes: only its first bytes matter
		c.Close()
	}()
	br := bufio.NewReader(srv)
	script := []struct{ send, want string }{
		{"220 ready\r\n", "EHLO localhost\r\n"},
		{"250-mss.example\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
	}
	for _, s := range script {
		if _, err := srv.Write([]byte(s.send)); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || !strings.EqualFold(line, s.want) {
			t.Fatalf("got %q, %v; want %q", line, err, s.want)
		}
	}
	if _, err := srv.Write([]byte("220 go ahead\r\n")); err != nil {
		t.Fatal(err)
	}
	// The next bytes on the caller's connection are a TLS handshake record (type 22): the
	// tls.Conn is above it, inside go-smtp.
	if b, err := br.ReadByte(); err != nil || b != 22 {
		t.Fatalf("first byte after STARTTLS: %#x, %v; want a TLS handshake record", b, err)
	}
	srv.Close()
	cli.Close()
	<-done
}
