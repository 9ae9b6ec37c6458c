package connector

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// closed checks that the server closes the connection: at most a 421 then EOF, within a few
// seconds (a read that times out means the connection stayed open).
func (s *rawSession) closed() {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; ; i++ {
		line, err := s.r.ReadString('\n')
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			s.t.Fatal("the connection stayed open")
		case err != nil:
			return
		case i > 0 || !strings.HasPrefix(line, "421 "):
			s.t.Fatalf("unexpected reply %q before the close", line)
		}
	}
}

// A bare CR or LF in a command, before or after STARTTLS, gets 554 5.5.2 (or, for a command the
// session does not see, 421) and the connection is closed; what follows it is never executed.
func TestBareCRLFInCommands(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	cases := []struct {
		name, send string
		replies    []string // expected replies before the close
	}{
		{"bare LF in MAIL", "MAIL FROM:<x@a.mssante.test>\n", []string{"554 5.5.2"}},
		{"bare LF in AUTH", "AUTH PLAIN AGEAYg==\n", []string{"5"}},
		// go-smtp refuses the argument before the session sees it.
		{"bare CR in MAIL", "MAIL FROM:<x@a.mssante.test>\rRCPT TO:<dr@b.mssante.test>\r\n", []string{"5"}},
		// The whole read is refused: MAIL too, then RCPT and DATA have no transaction.
		{"bare LF in RCPT", "MAIL FROM:<x@a.mssante.test>\r\nRCPT TO:<dr@b.mssante.test>\nDATA\r\n", []string{"554 5.5.2", "5", "5"}},
		// A harmless command the session does not see is answered, what follows is refused.
		{"bare LF in NOOP, MAIL pipelined", "NOOP\nMAIL FROM:<x@a.mssante.test>\r\n", []string{"250", "554 5.5.2"}},
		{"bare CR in RSET", "RSET\rX\r\n", []string{"5"}},
		{"second EHLO", "EHLO client.test\n", []string{"250"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := rawDial(t, b.relayAddr, clientTLS(a.server, p))
			s.write(c.send)
			for _, want := range c.replies {
				s.expect(want)
			}
			s.closed()
		})
	}
	t.Run("before STARTTLS", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", b.relayAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s := &rawSession{t: t, c: conn, r: bufio.NewReader(conn)}
		t.Cleanup(func() { conn.Close() })
		s.expect("220")
		s.write("EHLO client.test\n")
		s.expect("554 5.5.2")
		s.closed()
	})
	t.Run("clean session still accepted", func(t *testing.T) {
		s := rawDial(t, b.relayAddr, clientTLS(a.server, p))
		s.cmd("NOOP", "250")
		s.cmd("MAIL FROM:<x@a.mssante.test>", "250")
		s.cmd("QUIT", "221")
	})
}

// The guard tracks CR/LF pairs across reads: a CRLF split between two TLS records passes, a
// "\r\n.\r" split over three records is refused.
func TestBareCRLFAcrossRecords(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	for _, c := range []struct {
		name  string
		parts []string
		want  string
	}{
		{"CRLF split", []string{"From: <x@a.mssante.test>\r\n\r\nhello\r", "\n.\r", "\n"}, "250"},
		{"smuggling split", []string{"From: <x@a.mssante.test>\r\n\r\nhello\r\n.", "\r", "MAIL FROM:<admin@a.mssante.test>\r\n.\r\n"}, "554 5.5.2"},
		{"bare CR at a record end", []string{"From: <x@a.mssante.test>\r\n\r\nhello\r", "x\r\n.\r\n"}, "554 5.5.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := b.q.Stats().Messages
			s := rawDial(t, b.relayAddr, clientTLS(a.server, p))
			s.cmd("MAIL FROM:<x@a.mssante.test>", "250")
			s.cmd("RCPT TO:<dr@b.mssante.test>", "250")
			s.cmd("DATA", "354")
			for _, part := range c.parts {
				s.write(part) // one TLS record each
				time.Sleep(20 * time.Millisecond)
			}
			s.expect(c.want)
			if c.want == "250" {
				s.cmd("QUIT", "221")
				return
			}
			s.closed()
			if b.q.Stats().Messages != before {
				t.Fatal("message queued")
			}
		})
	}
}

// On the implicit-TLS submission listener (port 465) the guard sees the decrypted stream too.
func TestSmugglingImplicitTLS(t *testing.T) {
	p := testPKI(t)
	a, l := implicitSubmission(t)
	for _, end := range []string{"\r\n.\r\n", "\r\n.\r", "\n.\r\n"} {
		t.Run(strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(end), func(t *testing.T) {
			before := a.q.Stats().Messages
			conn, err := tls.Dial("tcp", l.Addr().String(), clientTLS(a.balCert, p))
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			rs := &rawSession{t: t, c: conn, r: bufio.NewReader(conn)}
			t.Cleanup(func() { conn.Close() })
			rs.expect("220")
			rs.cmd("EHLO client.test", "250")
			rs.cmd("AUTH EXTERNAL =", "235")
			rs.cmd("MAIL FROM:<"+a.bal+">", "250")
			rs.cmd("RCPT TO:<dr@b.mssante.test>", "250")
			rs.cmd("DATA", "354")
			rs.write("From: <" + a.bal + ">\r\n\r\nhello" + end + "MAIL FROM:<" + a.bal + ">\r\n.\r\n")
			if end == "\r\n.\r\n" { // clean: the message ends there, MAIL and "." are commands
				rs.expect("250")
				rs.expect("250")
				rs.expect("501")
				rs.cmd("QUIT", "221")
				return
			}
			rs.expect("554 5.5.2")
			rs.closed()
			if a.q.Stats().Messages != before {
				t.Fatal("message queued")
			}
		})
	}
}

func TestScanCRLF(t *testing.T) {
	for _, c := range []struct {
		prev     bool
		in       string
		endCR    bool
		okResult bool
	}{
		{false, "", false, true},
		{true, "", true, true},
		{false, "a\r\nb\r\n", false, true},
		{false, "a\r", true, true},
		{true, "\nb", false, true},
		{true, "b", false, false},
		{false, "\n", false, false},
		{false, "a\nb", false, false},
		{false, "a\r\r\n", false, false},
		{false, "\r\n.\rX", false, false},
	} {
		endCR, ok := scanCRLF(c.prev, []byte(c.in))
		if ok != c.okResult || ok && endCR != c.endCR {
			t.Errorf("scanCRLF(%v, %q) = %v, %v; want %v, %v", c.prev, c.in, endCR, ok, c.endCR, c.okResult)
		}
	}
}

// naiveBareCRLF is the reference: a byte loop over the whole stream; a CR at the end counts as
// bare (nothing follows it).
func naiveBareCRLF(p []byte) bool {
	for i, c := range p {
		if c == '\r' && (i+1 == len(p) || p[i+1] != '\n') || c == '\n' && (i == 0 || p[i-1] != '\r') {
			return true
		}
	}
	return false
}

// FuzzCRLFGuard feeds a stream cut into reads, with a reply between them, into the guard: its
// verdict and state are those of the whole stream read at once, and without BDAT chunks (whose
// content is checked across chunks) the verdict is that of a byte loop over the whole stream.
func FuzzCRLFGuard(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\n"), []byte{3, 9})
	f.Add([]byte("hello\r\n.\rMAIL FROM:<a@b>\r\n"), []byte{7, 8})
	f.Add([]byte("a\r\nb\n"), []byte{2})
	f.Add([]byte("DATA\r\nBDAT 3\r\nab\r\n.\r\nBDAT 3\r\nab\rBDAT 1 LAST\r\n\n"), []byte{20, 2, 5})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		state := func(g *crlfGuard) string {
			return fmt.Sprint(g.bad(), g.prevCR, g.contentCR, g.mode, g.left)
		}
		whole := &crlfGuard{}
		whole.rawRead.Store(true)
		whole.Write(stream)
		g := &crlfGuard{}
		rest := stream
		for _, c := range cuts {
			if len(rest) == 0 {
				break
			}
			n := min(int(c), len(rest))
			g.rawRead.Store(true)
			if _, err := g.Write(rest[:n]); err != nil && !g.bad() {
				t.Fatal("error without a violation")
			}
			rest = rest[n:]
			g.rawWrite.Store(true)
			g.Write([]byte("250 2.0.0 Ok\r\n"))
		}
		if len(rest) > 0 {
			g.rawRead.Store(true)
			g.Write(rest)
		}
		if g.bad() != whole.bad() || !g.bad() && state(g) != state(whole) {
			t.Fatalf("cut into reads: %s, at once: %s, for %q", state(g), state(whole), stream)
		}
		if bytes.Contains(bytes.ToUpper(stream), []byte("BDAT")) {
			return
		}
		if got, want := g.bad() || g.prevCR, naiveBareCRLF(stream); got != want {
			t.Fatalf("guard says bad=%v (pending CR %v), whole stream says %v for %q", g.bad(), g.prevCR, want, stream)
		}
	})
}

// BDAT chunks (RFC 3030) are framed by size: a CRLF split between two chunks passes, a bare LF
// in a chunk or a message ending in a bare CR is refused.
func TestBareCRLFInBDAT(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	hdr := "From: <x@a.mssante.test>\r\n\r\n"
	for _, c := range []struct {
		name   string
		chunks []string
		want   string
	}{
		{"CRLF split between chunks", []string{hdr + "hello\r", "\nbye\r\n"}, "250"},
		{"bare LF in a chunk", []string{hdr + "hello\n", "bye\r\n"}, "554 5.5.2"},
		{"ends in a bare CR", []string{hdr + "hello\r"}, "554 5.5.2"},
		{"ends in a bare CR, empty LAST", []string{hdr + "hello\r", ""}, "554 5.5.2"},
		{"bare CR then the next chunk", []string{hdr + "hello\r", "x\r\n"}, "554 5.5.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := b.q.Stats().Messages
			s := rawDial(t, b.relayAddr, clientTLS(a.server, p))
			s.cmd("MAIL FROM:<x@a.mssante.test>", "250")
			s.cmd("RCPT TO:<dr@b.mssante.test>", "250")
			var got string
			for i, ch := range c.chunks {
				last := ""
				if i == len(c.chunks)-1 {
					last = " LAST"
				}
				s.write(fmt.Sprintf("BDAT %d%s\r\n%s", len(ch), last, ch))
				if got = s.reply(); last == "" && !strings.HasPrefix(got, "250") {
					break
				}
			}
			if !strings.HasPrefix(got, c.want) {
				t.Fatalf("reply %q, want %s", got, c.want)
			}
			if c.want == "250" {
				s.cmd("QUIT", "221")
				if b.q.Stats().Messages != before+1 {
					t.Fatal("message not queued")
				}
				return
			}
			s.closed()
			if b.q.Stats().Messages != before {
				t.Fatal("message queued")
			}
		})
	}
}

// BenchmarkCRLFGuard is the guard's cost per byte read: DATA and a 10 KiB message of 78-byte
// lines in 4 KiB reads (go-smtp's buffer size), with a reply between messages.
func BenchmarkCRLFGuard(b *testing.B) {
	line := strings.Repeat("x", 76) + "\r\n"
	msg := []byte("DATA\r\n" + strings.Repeat(line, 10240/len(line)) + ".\r\n")
	b.SetBytes(int64(len(msg)))
	g := &crlfGuard{}
	reply := []byte("250 2.0.0 Ok: queued as 0123456789\r\n")
	for b.Loop() {
		for p := msg; len(p) > 0; {
			n := min(4096, len(p))
			g.rawRead.Store(true)
			g.Write(p[:n])
			p = p[n:]
		}
		g.rawWrite.Store(true)
		g.Write(reply)
	}
	if g.bad() {
		b.Fatal("clean stream refused")
	}
}

// readRecorder is a net.Conn that keeps what is read from it: where a connection wrapper
// would put the guard.
type readRecorder struct {
	net.Conn
	read testenv.Buffer
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.read.Write(p[:n])
	return n, err
}

// TestGoSMTPReadsTLSItself pins the go-smtp behaviour that keeps crlfGuard on the Debug writer
// (and so one go-smtp Server per connection, Debug being a field of the Server with no
// connection attached to its writes): at STARTTLS go-smtp wraps the net.Conn it was given in
// its own *tls.Conn and reads the commands from it, so a wrapper of that net.Conn sees only
// TLS records, never a command after STARTTLS; only the Debug writer gets the decrypted bytes.
// go-smtp itself takes a bare LF as a line end, so those bytes must be checked before its
// reader. If go-smtp ever offers a hook on the decrypted connection, this test fails and the
// guard can move to a net.Conn.
func TestGoSMTPReadsTLSItself(t *testing.T) {
	p := testPKI(t)
	leaf := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
	debug := &testenv.Buffer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nullSession{}, nil }))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	srv.Debug = debug
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer srv.Close()
	recs := make(chan *readRecorder, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		rec := &readRecorder{Conn: c}
		recs <- rec
		one := &oneConn{c: rec, closed: make(chan struct{})}
		srv.Serve(one)
	}()

	conn, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("got %q, want %q", line, prefix)
			}
			if len(line) < 4 || line[3] == ' ' {
				return
			}
		}
	}
	expect("220 ")
	fmt.Fprint(conn, "NOOP\n") // a bare LF: go-smtp answers it as a command
	expect("250 ")
	fmt.Fprint(conn, "EHLO client\r\n")
	expect("250")
	fmt.Fprint(conn, "STARTTLS\r\n")
	expect("220 ")
	tc := tls.Client(conn, &tls.Config{RootCAs: p.Roots(), ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r = bufio.NewReader(tc)
	conn = tc
	const secret = "EHLO after-starttls-7f3c\r\n"
	fmt.Fprint(conn, secret)
	expect("250")
	fmt.Fprint(conn, "QUIT\r\n")
	expect("221 ")

	raw := (<-recs).read.Bytes()
	if !bytes.Contains(raw, []byte("STARTTLS\r\n")) {
		t.Fatalf("the wrapper did not see the plaintext commands: %q", raw)
	}
	if bytes.Contains(raw, []byte("after-starttls")) {
		t.Fatal("a net.Conn wrapper sees the commands after STARTTLS: the guard can move to the connection")
	}
	if !strings.Contains(debug.String(), secret) {
		t.Fatalf("go-smtp's Debug writer did not get the decrypted command:\n%s", debug.String())
	}
}
