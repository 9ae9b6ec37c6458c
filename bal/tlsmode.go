package bal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// A Security that does not match the port is the commonest set-up mistake, and neither side
// says so: with StartTLS on an implicit-TLS port both ends wait for the other to speak
// until one gives up, and with ImplicitTLS on a STARTTLS port crypto/tls only sees a record
// that "does not look like a TLS handshake". The client tells both apart from a server
// that is slow or down, and names the fix.

// greetingProbeDelay is how long a STARTTLS client waits for the greeting before it asks,
// on a second connection, whether the port expects implicit TLS. A server's greeting comes
// at once unless it is loaded, and the question costs the server one aborted handshake;
// the first connection keeps waiting (up to Options.DialTimeout) unless the answer is TLS,
// so a slow server is not failed.
var greetingProbeDelay = 2 * time.Second

// protocol names the two services, for messages and for the port to suggest.
type protocol struct {
	name          string // "SMTP" or "IMAP"
	service       string // "submission", "IMAP"
	plain, secure string // the usual STARTTLS and implicit-TLS ports
}

var (
	protoSMTP = protocol{name: "SMTP", service: "submission", plain: "587", secure: "465"}
	protoIMAP = protocol{name: "IMAP", service: "IMAP", plain: "143", secure: "993"}
)

// TLSModeError is the error for an endpoint whose Security does not fit what its port
// speaks. It wraps ErrTLS: no retry cures it. A program that takes the mode from its own
// settings reads Service and Want to name its setting in its message.
type TLSModeError struct {
	Service  string   // "submission" or "IMAP"
	Addr     string   // the endpoint's host:port
	Want     Security // what the port speaks
	Answered string   // the start of the plain-text greeting, when Want is StartTLS
	Port     string   // the usual port of the configured Security, to suggest instead
	proto    string   // "SMTP" or "IMAP"
}

func (e *TLSModeError) Error() string {
	what := e.Service + " server"
	if e.Want == StartTLS {
		return fmt.Sprintf("%v: %s %s speaks plain %s first (it answered %q…, not TLS): use StartTLS for this port, or ImplicitTLS on port %s",
			ErrTLS, what, e.Addr, e.proto, e.Answered, e.Port)
	}
	return fmt.Sprintf("%v: %s %s expects implicit TLS (it answered with TLS, not an %s greeting): use ImplicitTLS for this port, or StartTLS on port %s",
		ErrTLS, what, e.Addr, e.proto, e.Port)
}

// Unwrap returns ErrTLS.
func (e *TLSModeError) Unwrap() error { return ErrTLS }

func tlsModeError(p protocol, ep Endpoint, answered string) error {
	if ep.Security == ImplicitTLS {
		return &TLSModeError{Service: p.service, Addr: ep.Addr, Want: StartTLS, Answered: answered, Port: p.secure, proto: p.name}
	}
	return &TLSModeError{Service: p.service, Addr: ep.Addr, Want: ImplicitTLS, Port: p.plain, proto: p.name}
}

// isTLSRecord reports whether b starts like a TLS record a server sends first: a handshake
// (ServerHello) or an alert, of a 3.x protocol version.
func isTLSRecord(b []byte) bool {
	return len(b) >= 2 && (b[0] == 0x16 || b[0] == 0x15) && b[1] == 0x03
}

// isText reports whether b is printable ASCII (with CR, LF, tab): a line of a text protocol.
func isText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

// plainAnswer returns the start of the clear-text line a server sent when the TLS handshake
// expected a record, or "" when err is another failure.
func plainAnswer(err error) string {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && isText(rhe.RecordHeader[:]) {
		return string(rhe.RecordHeader[:])
	}
	return ""
}

// awaitGreeting reads the first bytes of a STARTTLS session, where the server speaks first,
// and returns conn with them put back for the protocol's reader. Bytes that begin a TLS
// record, or a second connection answering a ClientHello with TLS while this one waits
// (or after it closed or timed out with nothing said), mean the port expects implicit TLS:
// a tlsModeError. The wait is bounded by Options.DialTimeout.
func (c *Client) awaitGreeting(ctx context.Context, conn net.Conn, ep Endpoint, cfg *tls.Config, p protocol) (net.Conn, error) {
	probeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	probed := make(chan bool, 1)
	timer := time.AfterFunc(greetingProbeDelay, func() {
		tlsPort := c.speaksTLS(probeCtx, ep.Addr, cfg)
		if tlsPort {
			conn.SetReadDeadline(time.Now()) // no greeting is coming: stop waiting
		}
		probed <- tlsPort
	})
	conn.SetReadDeadline(time.Now().Add(c.opts.DialTimeout))
	buf := make([]byte, 512)
	n, err := io.ReadAtLeast(conn, buf, 2)
	cancel()
	ran, tlsPort := !timer.Stop(), false
	if ran {
		tlsPort = <-probed
	}
	conn.SetReadDeadline(time.Time{})
	switch {
	case isTLSRecord(buf[:n]) || tlsPort:
		return nil, tlsModeError(p, ep, "")
	case n > 0:
		return &replayConn{Conn: conn, pending: buf[:n]}, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	// Nothing was said: an implicit-TLS server that gave up waiting for our handshake, or a
	// server that is down or overloaded. Ask, unless it was asked already.
	if !ran && c.speaksTLS(ctx, ep.Addr, cfg) {
		return nil, tlsModeError(p, ep, "")
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("bal: no %s greeting from %s within %s: %w", p.name, ep.Addr, c.opts.DialTimeout, err)
	}
	return nil, fmt.Errorf("bal: %s %s closed the connection before its greeting: %w", p.service+" server", ep.Addr, err)
}

// speaksTLS reports whether addr answers a TLS ClientHello with a TLS record. It stops at the
// first bytes of the answer: the handshake is not completed, no client certificate is sent.
func (c *Client) speaksTLS(ctx context.Context, addr string, cfg *tls.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	fb := &firstBytes{Conn: conn}
	_ = tls.Client(fb, cfg).HandshakeContext(ctx) // fails by design once fb has its bytes
	return isTLSRecord(fb.b)
}

// errProbed ends a probe handshake once the answer's first bytes are known.
var errProbed = errors.New("bal: probe done")

// firstBytes keeps the first bytes read from a connection, then refuses to read more.
type firstBytes struct {
	net.Conn
	b []byte
}

func (f *firstBytes) Read(p []byte) (int, error) {
	if len(f.b) >= 2 {
		return 0, errProbed
	}
	n, err := f.Conn.Read(p)
	f.b = append(f.b, p[:n]...)
	return n, err
}

// replayConn gives back, to the first reads, the bytes awaitGreeting read.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
