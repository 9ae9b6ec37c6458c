package mssante

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// The multipart reader of ReadMessage (RFC 2046 §5.1.1). go-message's reader copies every body
// through a 4 KB buffer and looks for "\r\n--boundary" with bytes.Index, which stops at every
// line end of a base64 body; this one keeps a 64 KB buffer, looks for "--boundary" (base64 has
// no '-', so the search runs at memory speed) and hands leaf bodies out in place in that buffer
// (part.chunk), which decodeBase64 decodes without a copy. When the message is in memory
// (mem), a body that goes on past the buffer is read from there on straight from the
// message's bytes, 64 KB at a time (part.direct): the buffer is then only filled for
// delimiters and part headers. Headers are still read by
// go-message's textproto.ReadHeader. Where go-message accepts a body this reader returns the
// same parts (FuzzMultipartReader checks it), with these readings of the RFC:
//   - a delimiter is CRLF "--" boundary followed by transport padding (spaces, tabs) and CRLF;
//     the close delimiter has "--" after the boundary and may end the input without CRLF;
//   - lines end in CRLF, or in LF alone when the first delimiter line does (seen in practice);
//     the mode holds for the whole multipart;
//   - the CRLF before a delimiter belongs to the delimiter; a body that starts with the
//     delimiter is empty (the blank line ending the part header was its CRLF);
//   - the preamble and the epilogue are skipped; a line of the preamble or a delimiter line
//     may not exceed the buffer (64 KB);
//   - an input that ends before the close delimiter is an error (errNoCloseDelimiter).

const multipartBufSize = 64 << 10

var errNoCloseDelimiter = errors.New("multipart: input ends before the close delimiter")

var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, multipartBufSize) }}

type multipartReader struct {
	br      *bufio.Reader
	pooled  bool       // br comes from bufPool
	nl      []byte     // "\r\n", or "\n" in LF mode
	dash    []byte     // "--boundary"
	readErr error      // first error of br (io.EOF at the end): br is not read again
	mem     *memSource // what br reads, when it reads the message in memory with nothing between
	parts   int
	cur     *part
	done    bool // close delimiter seen
}

// newMultipartReader reads the multipart body r. If r is a *bufio.Reader of multipartBufSize
// or more (the top-level reader of ReadMessage) it is used as is, else r is buffered with a
// pooled buffer given back by release.
func newMultipartReader(r io.Reader, boundary string) (*multipartReader, error) {
	if boundary == "" {
		return nil, errors.New("multipart: empty boundary")
	}
	mr := &multipartReader{nl: []byte("\r\n"), dash: []byte("--" + boundary)}
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= multipartBufSize {
		mr.br = br
	} else {
		mr.br = bufPool.Get().(*bufio.Reader)
		mr.br.Reset(r)
		mr.pooled = true
	}
	return mr, nil
}

func (mr *multipartReader) release() {
	if mr.pooled {
		mr.br.Reset(nil)
		bufPool.Put(mr.br)
		mr.pooled = false
		mr.br = nil
	}
}

// more reads more input into the buffer; false once the input has ended or failed.
func (mr *multipartReader) more(have int) bool {
	if mr.readErr != nil {
		return false
	}
	if _, err := mr.br.Peek(have + 1); err != nil && err != bufio.ErrBufferFull {
		mr.readErr = err
	}
	return true
}

// nextPart skips what is left of the current part and reads the header of the next one. It
// returns io.EOF after the close delimiter.
func (mr *multipartReader) nextPart() (*part, error) {
	if mr.done {
		return nil, io.EOF
	}
	if mr.cur != nil {
		for {
			if _, err := mr.cur.chunk(); err == io.EOF {
				break
			} else if err != nil {
				return nil, err
			}
		}
		mr.cur = nil
	}
	expectDelimiter := false // the CRLF of the delimiter has been read
	for {
		line, err := mr.br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			return nil, fmt.Errorf("multipart: line longer than %d bytes", multipartBufSize)
		case err != nil && err != io.EOF:
			return nil, err
		case err == io.EOF && !mr.isClose(line):
			return nil, errNoCloseDelimiter
		}
		if mr.isDelimiter(line) {
			mr.parts++
			h, err := textproto.ReadHeader(mr.br)
			if err != nil {
				return nil, fmt.Errorf("multipart: part header: %w", err)
			}
			mr.cur = &part{mr: mr, Header: h}
			return mr.cur, nil
		}
		if mr.isClose(line) {
			mr.done = true
			return nil, io.EOF
		}
		switch {
		case expectDelimiter:
			return nil, errors.New("multipart: no delimiter after a part")
		case mr.parts == 0: // preamble
		case bytes.Equal(line, mr.nl):
			expectDelimiter = true
		default:
			return nil, errors.New("multipart: unexpected line after a part")
		}
	}
}

// isDelimiter tells a delimiter line: "--boundary", transport padding, line end. The first one
// sets LF mode if it ends in a bare LF.
func (mr *multipartReader) isDelimiter(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, mr.dash)
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if mr.parts == 0 && len(rest) == 1 && rest[0] == '\n' {
		mr.nl = mr.nl[1:]
	}
	return bytes.Equal(rest, mr.nl)
}

// isClose tells the close delimiter line: "--boundary--", transport padding, then a line end
// or the end of the input.
func (mr *multipartReader) isClose(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, mr.dash)
	if !ok {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("--")); !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	return len(rest) == 0 || bytes.Equal(rest, mr.nl)
}

// scan returns how many bytes at the start of buf are body for sure, and whether the
// delimiter follows them. start tells that buf starts the body; eof that no input follows buf.
func (mr *multipartReader) scan(buf []byte, start, eof bool) (int, bool) {
	for from := 0; ; {
		i := bytes.Index(buf[from:], mr.dash)
		if i < 0 {
			break
		}
		i += from
		from = i + 1
		at := i - len(mr.nl) // where the delimiter starts, its line end included
		if start && i == 0 {
			at = 0 // the line end was the blank line after the part header
		} else if at < 0 || !bytes.Equal(buf[at:i], mr.nl) {
			continue // "--boundary" inside a line
		}
		after := i + len(mr.dash)
		if after == len(buf) {
			if eof {
				return at, true
			}
			return at, false // the next byte decides
		}
		switch buf[after] {
		case ' ', '\t', '\r', '\n', '-':
			return at, true
		}
		// "--boundaryX": a longer boundary, body
	}
	// A tail that may start a delimiter waits for more input.
	if !eof {
		if j := bytes.LastIndexByte(buf, mr.nl[0]); j >= 0 && bytes.HasPrefix(mr.lineDash(), buf[j:]) {
			return j, false
		}
		if start && bytes.HasPrefix(mr.dash, buf) {
			return 0, false
		}
	}
	return len(buf), false
}

func (mr *multipartReader) lineDash() []byte {
	return append(append(make([]byte, 0, 2+len(mr.dash)), mr.nl...), mr.dash...)
}

// part is the body of one part, up to (not including) the CRLF of the next delimiter.
type part struct {
	Header textproto.Header
	mr     *multipartReader
	n      int   // body bytes known to be at the front of the buffer (of mr.mem if direct)
	total  int64 // body bytes consumed
	end    bool  // at the delimiter
	direct bool  // the rest of the body is read straight from mr.mem
}

// fill makes p.n > 0, or returns io.EOF at the delimiter, or the input's error.
func (p *part) fill() error {
	mr := p.mr
	for p.n == 0 {
		if p.end {
			return io.EOF
		}
		if p.direct {
			if err := p.fillDirect(); err != nil {
				return err
			}
			continue
		}
		buf, _ := mr.br.Peek(mr.br.Buffered())
		eof := mr.readErr != nil
		n, end := mr.scan(buf, p.total == 0, eof)
		p.n, p.end = n, end
		if n > 0 || end {
			continue
		}
		if mr.mem != nil && mr.mem.off < len(mr.mem.b) {
			// The body goes on past the buffer: give the buffered bytes back to the source
			// and read the rest of the body from there. br holds no error: the source
			// gives io.EOF only at its end.
			mr.mem.off -= len(buf)
			mr.br.Discard(len(buf))
			p.direct = true
			continue
		}
		if !mr.more(len(buf)) {
			if mr.readErr == io.EOF {
				return errNoCloseDelimiter
			}
			return mr.readErr
		}
	}
	return nil
}

// fillDirect is fill on mr.mem: scan a window of 64 KB (in cache when the body is decoded),
// wider if all of it may start the delimiter.
func (p *part) fillDirect() error {
	rest := p.mr.mem.b[p.mr.mem.off:]
	for w := p.mr.mem.window(); ; w *= 2 {
		w = min(w, len(rest))
		eof := w == len(rest)
		if p.n, p.end = p.mr.scan(rest[:w], p.total == 0, eof); p.n > 0 || p.end {
			return nil
		}
		if eof { // nothing left
			return errNoCloseDelimiter
		}
	}
}

// Read copies body bytes out of the buffer.
func (p *part) Read(d []byte) (int, error) {
	if err := p.fill(); err != nil {
		return 0, err
	}
	var n int
	if p.direct {
		mem := p.mr.mem
		n = copy(d, mem.b[mem.off:mem.off+p.n])
		mem.off += n
	} else {
		n, _ = p.mr.br.Read(d[:min(len(d), p.n)])
	}
	p.n -= n
	p.total += int64(n)
	return n, nil
}

// chunk returns the next body bytes in place: they stay valid until the next call on p or
// its reader, and must not be modified (they may be the caller's message). io.EOF at the
// delimiter.
func (p *part) chunk() ([]byte, error) {
	if err := p.fill(); err != nil {
		return nil, err
	}
	var b []byte
	if p.direct {
		mem := p.mr.mem
		b = mem.b[mem.off : mem.off+p.n : mem.off+p.n]
		mem.off += p.n
	} else {
		b, _ = p.mr.br.Peek(p.n)
		p.mr.br.Discard(p.n)
	}
	p.total += int64(p.n)
	p.n = 0
	return b, nil
}
