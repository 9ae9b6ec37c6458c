package connector

import (
	"bytes"
	"sync/atomic"
)

// crlfGuard refuses a bare CR or a bare LF anywhere in a session, in commands and in DATA: the
// ambiguity SMTP smuggling exploits (SEC Consult, December 2023; Postfix
// smtpd_forbid_bare_newline). It has to see the bytes as read from the client, before go-smtp's
// line reader (which takes a bare LF as a line end) and its dot-unstuffing (which drops the ".\r"
// of the "\r\n.\r" payload), and after TLS. go-smtp builds the *tls.Conn of STARTTLS itself and
// reads it directly, so the only place that sees the decrypted bytes is go-smtp's Debug writer,
// fed with every chunk go-smtp reads (and every reply it writes). Each connection therefore gets
// its own go-smtp server whose Debug writer is its guard.
//
// The Debug writer does not say which way a chunk goes; the guardConn below the TLS layer does:
// a reply is written to the socket just before it reaches Write, with no socket read in between,
// whereas a chunk read always follows a socket read or comes from data TLS already holds. A reply
// is checked on its own (go-smtp never writes a bare CR or LF). (UNCONFIRMED corner: with TLS 1.3
// enabled, a client's KeyUpdate answered in the middle of a read can make the next record look
// like a reply; that record is still checked on its own, only a CR/LF pair split around it is
// not. TLS 1.2, the Réf. #2 default, has no such write.)
//
// The first offending chunk still goes to go-smtp so that the command or message it belongs to
// gets 554 5.5.2 (the session asks bad()); after it the socket and the guard fail every read, so
// go-smtp answers 421 and closes the connection.
type crlfGuard struct {
	rawRead, rawWrite atomic.Bool // set by guardConn, consumed by Write
	violated          atomic.Bool
	prevCR            bool // last byte read was a CR (only go-smtp's goroutine of the connection reads)
}

// bad reports whether a bare CR or LF has been read on the connection.
func (g *crlfGuard) bad() bool { return g.violated.Load() }

// Write implements io.Writer for go-smtp's Server.Debug.
func (g *crlfGuard) Write(p []byte) (int, error) {
	read, wrote := g.rawRead.Swap(false), g.rawWrite.Swap(false)
	if wrote && !read { // our reply, already on the wire
		if prevCR, ok := scanCRLF(false, p); !ok || prevCR {
			g.violated.Store(true)
		}
		return len(p), nil
	}
	if g.violated.Load() {
		return 0, errBareLF
	}
	var ok bool
	if g.prevCR, ok = scanCRLF(g.prevCR, p); !ok {
		g.violated.Store(true)
	}
	return len(p), nil
}

// scanCRLF checks that every CR of p is followed by LF and every LF preceded by CR, given
// whether the byte before p was a CR; it returns whether the last byte of p is a CR. Every LF
// must follow a CR, and then the CRs are those LFs' plus at most a last one.
func scanCRLF(prevCR bool, p []byte) (endCR, ok bool) {
	if len(p) == 0 {
		return prevCR, true
	}
	if prevCR {
		if p[0] != '\n' {
			return false, false
		}
		p = p[1:]
	}
	lfs := 0
	for i := 0; ; i++ {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		if i += j; i == 0 || p[i-1] != '\r' {
			return false, false
		}
		lfs++
	}
	endCR = len(p) > 0 && p[len(p)-1] == '\r'
	crs := bytes.Count(p, []byte{'\r'})
	if endCR {
		crs--
	}
	return endCR, crs == lfs
}
