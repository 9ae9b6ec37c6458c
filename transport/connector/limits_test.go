package connector

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

// trickleUntilClosed sends data one byte every period on c and returns how long the server
// kept the connection and what it answered, or fails the test if it is still open after max.
func trickleUntilClosed(t *testing.T, c net.Conn, r *bufio.Reader, data string, period, max time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i = (i + 1) % len(data) {
			if _, err := c.Write([]byte{data[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(period):
			}
		}
	}()
	c.SetReadDeadline(start.Add(max))
	b, err := io.ReadAll(r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read %q)", max, b)
	}
	return time.Since(start), string(b)
}

// A client that sends a command line one byte at a time is cut when the command-line bound
// expires, though each byte comes well within the read timeout; a normal session on the same
// server still works.
func TestSlowCommandLine(t *testing.T) {
	n := newNode(t, "a.mssante.test", &nodeOpts{noRun: true, timeout: 5 * time.Second, limits: func(o *ServerOptions) {
		o.CommandTimeout = 300 * time.Millisecond
	}})
	trust(n)
	c, err := net.Dial("tcp", n.relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	// "NOOP" and then spaces: any prefix is a valid command, so a line cut by the deadline and
	// taken as a command would get 250 and re-arm the deadline.
	d, got := trickleUntilClosed(t, c, r, "NOOP"+strings.Repeat(" ", 1000), 50*time.Millisecond, 3*time.Second)
	if d < 250*time.Millisecond || !strings.Contains(got, "421 4.4.2") {
		t.Fatalf("closed after %v with %q", d, got)
	}
	if got := submit(t, n, []string{"dr@" + n.domain}, msg(n.bal, "dr@"+n.domain, "normal"), nil); got != "ok" {
		t.Fatalf("normal session: %s", got)
	}
}

// A client that keeps a session busy with quick commands is cut at the session bound.
func TestSessionTimeout(t *testing.T) {
	n := newNode(t, "a.mssante.test", &nodeOpts{noRun: true, timeout: 5 * time.Second, limits: func(o *ServerOptions) {
		o.SessionTimeout = 600 * time.Millisecond
	}})
	c, err := net.Dial("tcp", n.relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	start := time.Now()
	go func() {
		for {
			if _, err := io.WriteString(c, "NOOP\r\n"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(start.Add(3 * time.Second))
	b, err := io.ReadAll(r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session still open after 3 s (%d replies)", strings.Count(string(b), "250 "))
	}
	if d := time.Since(start); d < 500*time.Millisecond || !strings.Contains(string(b), "250 ") {
		t.Fatalf("closed after %v with %q", d, b)
	}
}

// A message sent one byte at a time is cut at the DATA bound, and not queued.
func TestSlowData(t *testing.T) {
	n := newNode(t, "a.mssante.test", &nodeOpts{noRun: true, timeout: 5 * time.Second, limits: func(o *ServerOptions) {
		o.DataTimeout = 400 * time.Millisecond
	}})
	trust(n)
	s := rawDial(t, n.subAddr, clientTLS(n.balCert, testPKI(t)))
	s.cmd("AUTH EXTERNAL =", "235")
	s.cmd("MAIL FROM:<"+n.bal+">", "250")
	s.cmd("RCPT TO:<dr@"+n.domain+">", "250")
	s.cmd("DATA", "354")
	d, got := trickleUntilClosed(t, s.c, s.r, "From: <"+n.bal+">\r\n\r\n"+strings.Repeat("x", 998)+"\r\n", 20*time.Millisecond, 3*time.Second)
	if d < 350*time.Millisecond || strings.Contains(got, "250 ") {
		t.Fatalf("closed after %v with %q", d, got)
	}
	if m := n.q.Stats().Messages; m != 0 {
		t.Fatalf("%d messages queued", m)
	}
}
