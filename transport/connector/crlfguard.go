package connector

import (
	"bytes"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// crlfGuard refuses a bare CR or a bare LF anywhere in a session, in commands and in DATA: the
// ambiguity SMTP smuggling exploits (SEC Consult, December 2023; Postfix
// smtpd_forbid_bare_newline). It has to see the bytes as read from the client, before go-smtp's
// line reader (which takes a bare LF as a line end) and its dot-unstuffing (which drops the ".\r"
// of the "\r\n.\r" payload), and after TLS. go-smtp builds the *tls.Conn of STARTTLS itself and
// reads it directly, so the only place that sees the decrypted bytes is go-smtp's Debug writer,
// fed with every chunk go-smtp reads (and every reply it writes). Each connection therefore gets
// its own go-smtp server whose Debug writer is its guard (Debug is a field of the server and its
// writes do not say which connection they come from). TestGoSMTPReadsTLSItself pins this
// behaviour of go-smtp: a net.Conn wrapper sees only TLS records after STARTTLS.
//
// The Debug writer does not say which way a chunk goes; the guardConn below the TLS layer does:
// a reply is written to the socket just before it reaches Write, with no socket read in between,
// whereas a chunk read always follows a socket read or comes from data TLS already holds. A reply
// is checked on its own (go-smtp never writes a bare CR or LF). Known limit: with TLS 1.3
// enabled (AllowTLS13), a client's KeyUpdate answered in the middle of a read can make the next
// record look like a reply; that record is still checked on its own, only a CR/LF pair split
// around it is not (the per-message check of Data still sees the message). TLS 1.2, the Réf. #2
// default, writes nothing while reading.
//
// The first offending chunk still goes to go-smtp so that the command or message it belongs to
// gets 554 5.5.2 (the session asks bad()); after it the socket and the guard fail every read, so
// go-smtp answers 421 and closes the connection.
type crlfGuard struct {
	rawRead, rawWrite atomic.Bool // set by guardConn, consumed by Write
	violated          atomic.Bool

	// The rest is touched only by go-smtp's goroutine of the connection, which does all reads.
	prevCR bool // the last byte of the command and DATA stream was a CR
	// BDAT chunks (RFC 3030) are counted, not lines: their content is checked as one stream
	// across chunks, so that a CRLF split between two chunks passes.
	mode      guardMode
	left      uint64 // BDAT bytes still to come in the current chunk
	last      bool   // the current chunk is the LAST one
	contentCR bool   // the last BDAT content byte was a CR
	line      []byte // start of the current line, to recognise DATA, BDAT, "." and STARTTLS
	lineLen   int
	startTLS  bool          // a STARTTLS command line was read: a handshake follows
	clock     *sessionClock // nil: no deadlines from the guard
}

type guardMode uint8

const (
	modeCommand guardMode = iota
	modeData              // after a DATA command until the "." line
	modeBDAT              // inside a BDAT chunk
)

// maxGuardLine is how much of a line the guard keeps: enough for "BDAT 4294967295 LAST".
const maxGuardLine = 40

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
	if !g.input(p) {
		g.violated.Store(true)
	}
	g.clock.update(g.mode, g.lineLen > 0, g.startTLS)
	g.startTLS = false
	return len(p), nil
}

// input follows the client's bytes: lines of commands and DATA, counted BDAT chunks. Commands
// are recognised as go-smtp parses them. The DATA mode starts at the DATA command even if
// go-smtp then refuses it: a client sending data before 354 gets the line check, never a skipped
// byte. After a BDAT command with a size go-smtp parses, that many bytes follow (go-smtp reads
// them whether it accepts the chunk or not).
func (g *crlfGuard) input(p []byte) bool {
	for len(p) > 0 {
		if g.mode == modeBDAT {
			n := min(uint64(len(p)), g.left)
			var ok bool
			if g.contentCR, ok = scanCRLF(g.contentCR, p[:n]); !ok {
				return false
			}
			p, g.left = p[n:], g.left-n
			if g.left == 0 {
				g.mode = modeCommand
				if g.last {
					if g.contentCR { // a message ending in a bare CR
						return false
					}
					g.contentCR = false
				}
			}
			continue
		}
		if g.mode == modeData && g.lineLen == 0 && !bytes.HasPrefix(p, []byte(".\r\n")) {
			// At a line start in DATA: the lines up to the end marker, or up to the last
			// complete line of p, in one pass; the lines with the marker or cut by the read
			// go through the line path below.
			end := bytes.Index(p, []byte("\n.\r\n"))
			if end < 0 {
				end = bytes.LastIndexByte(p, '\n')
			}
			if end >= 0 {
				var ok bool
				if g.prevCR, ok = scanCRLF(g.prevCR, p[:end+1]); !ok {
					return false
				}
				p = p[end+1:]
				continue
			}
		}
		seg, rest, eol := p, []byte(nil), false
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			seg, rest, eol = p[:i+1], p[i+1:], true
		}
		var ok bool
		if g.prevCR, ok = scanCRLF(g.prevCR, seg); !ok {
			return false
		}
		if room := maxGuardLine - len(g.line); room > 0 {
			g.line = append(g.line, seg[:min(room, len(seg))]...)
		}
		g.lineLen += len(seg)
		if eol {
			g.endLine()
		}
		p = rest
	}
	return true
}

// endLine acts on a complete line (its CRLF checked).
func (g *crlfGuard) endLine() {
	var l []byte
	if g.lineLen == len(g.line) {
		l = g.line[:len(g.line)-2] // without CRLF
	}
	g.line, g.lineLen = g.line[:0], 0
	if l == nil {
		return // a long line: neither a DATA, BDAT nor "." line
	}
	switch g.mode {
	case modeData:
		if string(l) == "." {
			g.mode = modeCommand
		}
	case modeCommand:
		// As go-smtp's parseCmd and handleData/handleBdat read a command.
		if len(l) < 4 || len(l) == 5 || len(l) > 5 && l[4] != ' ' {
			return
		}
		var arg []byte
		if len(l) > 5 {
			arg = bytes.TrimSpace(l[5:])
		}
		switch {
		case bytes.EqualFold(l, []byte("STARTTLS")):
			g.startTLS = true
		case bytes.EqualFold(l[:4], []byte("DATA")):
			if len(arg) == 0 {
				g.mode = modeData
			}
		case bytes.EqualFold(l[:4], []byte("BDAT")):
			args := strings.Fields(string(arg))
			if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
				return
			}
			size, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return
			}
			g.last = len(args) == 2
			if g.left = size; size > 0 {
				g.mode = modeBDAT
			} else if g.last && g.contentCR {
				g.violated.Store(true)
			}
		}
	}
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

// sessionClock turns what the guard reads into the read deadline of the connection's current
// unit, so that it is bounded from its start however the bytes are spaced (RFC 5321 §4.5.3.2
// sets the timeouts of a client; a server that only bounds the gap between two bytes lets one
// byte every few seconds hold a connection for hours): a command line from its first byte, a
// message from its DATA command (or a BDAT chunk from its command), a STARTTLS handshake from
// the command. Between units, only the connection's idle and session bounds apply.
type sessionClock struct {
	c                    *transport.LimitedConn
	cmd, data, handshake time.Duration
	state                clockState
}

type clockState uint8

const (
	clockIdle clockState = iota
	clockLine
	clockData
	clockHandshake
)

// update follows the state of the stream after a chunk read: mode, whether a command line is
// begun and not ended, and whether the last line was STARTTLS.
func (k *sessionClock) update(mode guardMode, midLine, startTLS bool) {
	if k == nil {
		return
	}
	st := clockIdle
	switch {
	case startTLS:
		st = clockHandshake
	case mode != modeCommand:
		st = clockData
	case midLine:
		st = clockLine
	}
	if st == k.state {
		return
	}
	k.state = st
	var d time.Duration
	switch st {
	case clockLine:
		d = k.cmd
	case clockData:
		d = k.data
	case clockHandshake:
		d = k.handshake
	}
	if d == 0 {
		k.c.SetPhaseDeadline(time.Time{})
		return
	}
	k.c.SetPhaseDeadline(time.Now().Add(d))
}

// handshakeDone ends the bound of a STARTTLS handshake (go-smtp calls Logout after it).
func (k *sessionClock) handshakeDone() {
	if k != nil && k.state == clockHandshake {
		k.update(modeCommand, false, false)
	}
}
