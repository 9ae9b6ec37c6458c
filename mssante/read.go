package mssante

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"mime"
	"mime/quotedprintable"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/mssante-go/sdk/internal/fold"
)

// ErrMalformed is wrapped by every error about a message that cannot be read.
var ErrMalformed = errors.New("mssante: malformed message")

// ReadOptions bound what ReadMessage accepts. Zero fields take the defaults.
type ReadOptions struct {
	MaxSize        int64 // whole message in bytes; default 64 MB
	MaxHeaderBytes int64 // top-level header block; default 256 KB
	MaxParts       int   // MIME parts; default 256
	MaxDepth       int   // multipart nesting; default 8
}

func (o *ReadOptions) withDefaults() ReadOptions {
	var r ReadOptions
	if o != nil {
		r = *o
	}
	if r.MaxSize <= 0 {
		r.MaxSize = 64 << 20
	}
	if r.MaxHeaderBytes <= 0 {
		r.MaxHeaderBytes = 256 << 10
	}
	if r.MaxParts <= 0 {
		r.MaxParts = 256
	}
	if r.MaxDepth <= 0 {
		r.MaxDepth = 8
	}
	return r
}

// limitReader fails (instead of ending quietly) past its limit. Its first error sticks: the
// source is not read again after it.
type limitReader struct {
	r    io.Reader
	n    int64
	over bool
	err  error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.read(p)
	l.err = err
	return n, err
}

func (l *limitReader) read(p []byte) (int, error) {
	if l.n <= 0 {
		// One byte more tells a message of exactly the limit from a longer one.
		var b [1]byte
		if n, _ := l.r.Read(b[:]); n > 0 {
			l.over = true
			return 0, ErrTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// KOSubjectPrefix starts the subject of an integration error (MDN with error or plain mail).
const KOSubjectPrefix = "[KO Intégration système !]"

// ReadMessage reads a message in one pass with bounded memory: the whole message is limited to
// MaxSize bytes, the top header to MaxHeaderBytes, the parts to MaxParts and the nesting to
// MaxDepth. Bodies are decoded (transfer encoding and charset); the XDM archive, PDF copies
// and other attachments are kept as bytes. Kind tells ordinary mail, DSN, MDN and
// integration error mail apart; DSN and MDN are parsed into m.DSN and m.MDN. A report
// wrapped in multipart/signed (RFC 1847, as AS2 software signs MDNs) is recognised too; its
// signature is kept as an attachment and not verified.
//
// A *bytes.Reader or *bytes.Buffer is read without copying its bytes into a buffer: large
// bodies are decoded straight from them (they are not modified). Other readers are
// streamed through a 64 KB buffer. When the source tells its length (those two, a Len
// method, a regular *os.File), a large attachment is decoded straight into a slice of the
// right size, never larger than MaxSize allows.
func ReadMessage(r io.Reader, opts *ReadOptions) (*Message, error) {
	o := opts.withDefaults()
	if m, err, ok := readInMemory(r, o); ok {
		return m, err
	}
	lr := &limitReader{r: r, n: o.MaxSize}
	rd := &reader{opts: o, m: &Message{}, early: true, srcLen: sourceLen(r, lr)}
	m, err := rd.read(lr)
	if lr.over {
		// go-message does not always wrap reader errors with %w: name the cause here.
		return nil, tooLarge(o)
	}
	return m, err
}

// sourceLen returns what tells the bytes left to read from r through lr, when r tells its
// length (Len) or is a regular file (its size less where it is read from); nil otherwise. It
// never says more than lr still lets through, so a presized slice is bounded by MaxSize
// whatever the source holds.
func sourceLen(r io.Reader, lr *limitReader) func() int {
	var left func() int64
	if l, ok := r.(interface{ Len() int }); ok {
		left = func() int64 { return int64(l.Len()) }
	} else if f, ok := r.(interface {
		Stat() (fs.FileInfo, error)
		io.Seeker
	}); ok {
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		pos, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil
		}
		size, limit := fi.Size()-pos, lr.n
		// The file may change as it is read: this is only a bound for presizing.
		left = func() int64 { return size - (limit - lr.n) }
	} else {
		return nil
	}
	return func() int { return int(max(0, min(left(), lr.n))) }
}

func tooLarge(o ReadOptions) error {
	return fmt.Errorf("%w: %w (%d bytes)", ErrMalformed, ErrTooLarge, o.MaxSize)
}

// memSource is a message held in memory. The top-level buffer reads it as any reader, and
// the top-level multipart reader reads long bodies straight from it (see part.fill).
type memSource struct {
	b    []byte
	off  int // where the next Read starts
	step int // bytes at most per Read and per window of part.fillDirect; multipartBufSize if 0 (tests make it small)
}

func (s *memSource) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	if s.step > 0 {
		p = p[:min(len(p), s.step)]
	}
	n := copy(p, s.b[s.off:])
	s.off += n
	return n, nil
}

func (s *memSource) window() int {
	if s.step > 0 {
		return s.step
	}
	return multipartBufSize
}

func (s *memSource) Len() int { return len(s.b) - s.off }

var errNotWhole = errors.New("mssante: WriteTo did not give the whole input")

// memWriter reads the message from the bytes WriteTo hands it.
type memWriter struct {
	want int // the whole rest of the source
	o    ReadOptions
	m    *Message
	err  error
}

// Write reads the message from b, which it neither keeps nor modifies (io.Writer). Bytes
// given in several writes are refused before any is read: ReadMessage then streams them.
func (w *memWriter) Write(b []byte) (int, error) {
	if len(b) != w.want {
		return 0, errNotWhole
	}
	w.m, w.err = readBytes(b, w.o, 0)
	return len(b), nil
}

// readBytes reads a message of at most o.MaxSize bytes held in b, which it does not modify;
// step is memSource.step.
func readBytes(b []byte, o ReadOptions, step int) (*Message, error) {
	src := &memSource{b: b, step: step}
	rd := &reader{opts: o, m: &Message{}, early: true, srcLen: src.Len, mem: src}
	return rd.read(src)
}

// readInMemory reads a message from a *bytes.Reader or *bytes.Buffer: their WriteTo gives
// the whole rest of their bytes in one Write. ok is false for other readers, and when the
// bytes did not come whole (nothing is consumed then).
func readInMemory(r io.Reader, o ReadOptions) (m *Message, err error, ok bool) {
	var src interface {
		io.WriterTo
		Len() int
	}
	switch s := r.(type) {
	case *bytes.Reader:
		src = s
	case *bytes.Buffer:
		src = s
	default:
		return nil, nil, false
	}
	n := src.Len()
	switch {
	case n == 0:
		return nil, nil, false
	case int64(n) > o.MaxSize:
		return nil, tooLarge(o), true
	}
	w := &memWriter{want: n, o: o}
	if _, err := src.WriteTo(w); err != nil {
		return nil, nil, false // errNotWhole: nothing consumed
	}
	return w.m, w.err, true
}

// read reads the message from src, which the caller bounds.
func (rd *reader) read(src io.Reader) (*Message, error) {
	o := rd.opts
	hl := &limitReader{r: src, n: o.MaxHeaderBytes}
	// A multipart buffer: the top-level multipart reader then uses this one. Nothing read
	// keeps pointing into it (headers and bodies are copies).
	br := bufPool.Get().(*bufio.Reader)
	br.Reset(hl)
	defer func() { br.Reset(nil); bufPool.Put(br) }()
	th, err := textproto.ReadHeader(br)
	if hl.over {
		return nil, fmt.Errorf("%w: header longer than %d bytes", ErrMalformed, o.MaxHeaderBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	hl.n = math.MaxInt64 // the body is bounded by the caller
	m := rd.m
	if err := m.readHeader(mail.Header{Header: message.Header{Header: th}}); err != nil {
		return nil, err
	}
	if err := rd.walk(th, br, 0); err != nil {
		return nil, err
	}
	// Drain what follows the last boundary, so a too-large message is always refused.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := rd.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Message) readHeader(h mail.Header) error {
	addrs := func(key string) ([]Address, error) {
		list, err := h.AddressList(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: not an address list", ErrMalformed, key) // no address text: it may hold an INS
		}
		out := make([]Address, 0, len(list))
		for _, a := range list {
			na, err := NewAddress(a.Name, a.Address)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, key, err)
			}
			out = append(out, na)
		}
		return out, nil
	}
	from, err := addrs("From")
	if err != nil {
		return err
	}
	if len(from) != 1 {
		return fmt.Errorf("%w: want one From address, got %d", ErrMalformed, len(from))
	}
	m.From = from[0]
	if m.To, err = addrs("To"); err != nil {
		return err
	}
	if m.Cc, err = addrs("Cc"); err != nil {
		return err
	}
	if m.ReplyTo, err = addrs("Reply-To"); err != nil {
		return err
	}
	if m.DispositionNotificationTo, err = addrs("Disposition-Notification-To"); err != nil {
		return err
	}
	m.WantMDN = len(m.DispositionNotificationTo) > 0
	if rp := h.Get("Return-Path"); rp != "" || h.Has("Return-Path") {
		m.HasReturnPath = true
		m.ReturnPath = strings.ToLower(strings.Trim(strings.TrimSpace(rp), "<>"))
	}
	if m.MessageID, err = h.MessageID(); err != nil {
		return fmt.Errorf("%w: Message-ID: %v", ErrMalformed, err)
	}
	if m.InReplyTo, err = h.MsgIDList("In-Reply-To"); err != nil {
		return fmt.Errorf("%w: In-Reply-To: %v", ErrMalformed, err)
	}
	if m.References, err = h.MsgIDList("References"); err != nil {
		return fmt.Errorf("%w: References: %v", ErrMalformed, err)
	}
	// An unreadable Date (comments, obsolete zones) is left zero: it decides nothing here.
	m.Date = parseDSNDate(h.Get("Date"))
	if m.Subject, err = h.Subject(); err != nil {
		return fmt.Errorf("%w: Subject: %v", ErrMalformed, err)
	}
	for _, c := range strings.Split(h.Get(HeaderCodeCDA), ",") {
		if c = strings.TrimSpace(c); c != "" {
			m.CodeCDA = append(m.CodeCDA, c)
		}
	}
	m.INSHeader = strings.TrimSpace(h.Get(HeaderINS))
	m.NIL = strings.TrimSpace(h.Get(HeaderNIL))
	m.EndOfMessaging = strings.EqualFold(strings.TrimSpace(h.Get(HeaderMES)), "FIN")
	if code, ok := koSubjectCode(m.Subject); ok {
		m.Kind = KindIntegrationError
		m.Integration = code
	}
	return nil
}

// koSubjectCode recognises "[KO Intégration système !][90x] …" (accents optional).
func koSubjectCode(subject string) (MDNCode, bool) {
	rest, ok := strings.CutPrefix(fold.Accents(subject), fold.Accents(KOSubjectPrefix))
	if !ok || len(rest) < 5 || rest[0] != '[' || rest[4] != ']' {
		return 0, false
	}
	code := MDNCode(atoi(rest[1:4]))
	if !allDigits(rest[1:4]) || !code.Valid() {
		return 0, false
	}
	return code, true
}

type reader struct {
	opts      ReadOptions
	srcLen    func() int // bytes left in the source, when it tells (bytes.Reader, …)
	mem       *memSource // the source, when it is in memory
	early     bool       // see presize
	m         *Message
	parts     int
	report    string // report-type of the top multipart/report
	signed    bool   // the top is multipart/signed (RFC 1847): its first part may be the report
	dsnFields []byte
	mdnFields []byte
}

func (rd *reader) walk(th textproto.Header, body io.Reader, depth int) error {
	rd.parts++
	if rd.parts > rd.opts.MaxParts {
		return fmt.Errorf("%w: more than %d parts", ErrMalformed, rd.opts.MaxParts)
	}
	if depth > rd.opts.MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, rd.opts.MaxDepth)
	}
	h := message.Header{Header: th}
	mt, params := "text/plain", map[string]string{}
	if h.Get("Content-Type") != "" {
		var err error
		if mt, params, err = h.ContentType(); err != nil {
			return fmt.Errorf("%w: Content-Type: %v", ErrMalformed, err)
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		if params["boundary"] == "" {
			return fmt.Errorf("%w: multipart without boundary", ErrMalformed)
		}
		// The report is the top multipart/report, or the first part of a top multipart/signed
		// (a signed MDN, as AS2 software sends; the signature is not verified here).
		if mt == "multipart/report" && (depth == 0 || depth == 1 && rd.signed && rd.parts == 2) {
			rd.report = strings.ToLower(params["report-type"])
		}
		rd.signed = rd.signed || depth == 0 && mt == "multipart/signed"
		mr, err := newMultipartReader(body, params["boundary"])
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if depth == 0 && !mr.pooled {
			mr.mem = rd.mem // mr.br is the top-level buffer, which reads rd.mem
		}
		defer mr.release()
		for {
			p, err := mr.nextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			if err := rd.walk(p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}
	data, err := decodeBody(h, mt, params, body, rd.bound(depth))
	if err != nil {
		return err
	}
	disp, dparams, _ := h.ContentDisposition()
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if name != "" {
		if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
			name = dec
		}
	}
	attached := strings.EqualFold(disp, "attachment") || name != ""
	switch {
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		rd.dsnFields = data
	case mt == "message/disposition-notification" || mt == "message/global-disposition-notification":
		rd.mdnFields = data
	case (mt == "message/rfc822" || mt == "text/rfc822-headers" || mt == "message/global" || mt == "message/global-headers") &&
		(rd.report != "" || rd.m.Kind == KindIntegrationError) && rd.m.Original == nil:
		// The returned message of a report or error mail; elsewhere a forwarded message is an
		// ordinary attachment.
		rd.m.Original = data
	case !attached && mt == "text/plain" && rd.m.Text == "":
		rd.m.Text = normalizeNewlines(data)
	case !attached && mt == "text/html" && rd.m.HTML == "":
		rd.m.HTML = normalizeNewlines(data)
	case strings.EqualFold(name, XDMFilename) && rd.m.XDM == nil:
		rd.m.XDM = data
	case mt == "application/pdf" || strings.HasSuffix(strings.ToLower(name), ".pdf"):
		rd.m.Documents = append(rd.m.Documents, Document{PDFName: name, PDF: data})
	default:
		rd.m.Attachments = append(rd.m.Attachments, Attachment{Filename: name, ContentType: mt, Data: data})
	}
	return nil
}

// decodeBody reads a leaf body and undoes its transfer encoding and, for text, its charset.
// Base64 goes through decodeBase64, not the stdlib streaming decoder, which filters line
// breaks a few bytes at a time and costs several times more (see BenchmarkRead5MB).
func decodeBody(h message.Header, mt string, params map[string]string, body io.Reader, bound *restBound) ([]byte, error) {
	var r io.Reader // nil when data already holds the decoded body
	var data []byte
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "base64":
		var err error
		if data, err = decodeBase64Within(body, bound); err != nil {
			return nil, err
		}
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "", "7bit", "8bit", "binary":
		r = body
	default:
		return nil, fmt.Errorf("%w: unknown transfer encoding %q", ErrMalformed, cte)
	}
	if cs := strings.ToLower(params["charset"]); strings.HasPrefix(mt, "text/") && cs != "" && cs != "utf-8" && cs != "us-ascii" {
		if r == nil {
			r = bytes.NewReader(data)
		}
		cr, err := charset.Reader(cs, r)
		if err != nil {
			return nil, fmt.Errorf("%w: charset %q: %v", ErrMalformed, cs, err)
		}
		r = cr
	}
	if r == nil {
		return data, nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	return data, nil
}

const (
	rawChunk = 64 << 10 // base64 read at a time
	outBlock = 1 << 20  // decoded bytes gathered per block before the final copy
)

var (
	rawPool   = sync.Pool{New: func() any { b := make([]byte, rawChunk); return &b }}
	blockPool = sync.Pool{New: func() any { b := make([]byte, 0, outBlock); return &b }}
)

// chunker hands out a body in pieces that stay valid until its next call (part.chunk).
type chunker interface {
	chunk() ([]byte, error)
}

// readChunker makes a chunker of any reader, through a pooled buffer.
type readChunker struct {
	r   io.Reader
	raw *[]byte
	eof bool
}

func (c *readChunker) chunk() ([]byte, error) {
	if c.eof {
		return nil, io.EOF
	}
	if c.raw == nil {
		c.raw = rawPool.Get().(*[]byte)
		if len(*c.raw) < rawChunk { // never read into nothing
			*c.raw = make([]byte, rawChunk)
		}
	}
	n, err := io.ReadFull(c.r, *c.raw)
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		c.eof = true
		if n == 0 {
			return nil, io.EOF
		}
	default:
		return nil, err
	}
	return (*c.raw)[:n], nil
}

func (c *readChunker) release() {
	if c.raw != nil {
		rawPool.Put(c.raw)
	}
}

// decodeBase64 decodes a base64 body as it streams in, a piece at a time (64 KB at most, in
// place in the multipart buffer or in the message's own bytes when r is a part). Lines of
// whole quanta (76 characters in mail) are decoded one decodeQuanta call each, straight from
// the piece: no copy, no line end met (encoding/base64 over the body with its line ends costs
// about twice as much; its streaming decoder, several times more). A line decodeQuanta refuses
// (the padded last one, bad characters) is given to encoding/base64. Other shapes (blanks,
// lines cut in quanta, a line cut by the end of a piece) go through a small buffer without
// line ends and blanks. The output is pooled blocks joined into one slice of the exact size
// at the end. Memory: the result plus about one block per MB. Data after the final padding
// is refused.
func decodeBase64(r io.Reader) ([]byte, error) {
	return decodeBase64Within(r, nil)
}

// decodeBase64Within is decodeBase64 given, when known, a bound on the body bytes left to
// read: once the body proves large against it (see presize), the blocks are left for one
// slice of the bound's size, which the rest is decoded straight into.
func decodeBase64Within(r io.Reader, bound *restBound) ([]byte, error) {
	c, ok := r.(chunker)
	if !ok {
		rc := &readChunker{r: r}
		defer rc.release()
		c = rc
	}
	pp := rawPool.Get().(*[]byte)
	pend := (*pp)[:0] // characters not decoded yet, without line ends and blanks
	defer func() {
		if cap(pend) >= rawChunk { // keep a grown buffer; pend is nil after an error
			*pp = pend[:cap(pend)]
		}
		rawPool.Put(pp)
	}()
	d := &b64{}
	defer d.release()
	for eof := false; !eof; {
		b, err := c.chunk()
		switch err {
		case nil:
		case io.EOF:
			eof = true
		default:
			return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
		}
		if d.out == nil && bound != nil && !eof {
			d.presize(bound.left()+int64(len(pend)), bound.early)
		}
		if len(pend) > 0 {
			// The end of the line begun in the previous piece.
			n := len(b)
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				n = i + 1
			}
			pend = appendBase64Chars(pend, b[:n])
			b = b[n:]
			if pend, err = d.decodeQuanta(pend, len(pend)%4 == 0); err != nil {
				return nil, err
			}
		}
		cut := false // b starts a line that the piece cuts
		if len(pend) == 0 && !d.ended {
			dst, w := d.room(base64.StdEncoding.DecodedLen(len(b))), 0
			for l := -1; len(b) > 0; {
				i := l // lines are expected to keep the length of the previous one
				if i < 0 || i >= len(b) || b[i] != '\n' {
					if i = bytes.IndexByte(b, '\n'); i < 0 {
						cut = true
						break
					}
				}
				line := b[:i]
				if i > 0 && line[i-1] == '\r' {
					line = line[:i-1]
				}
				if len(line)%4 != 0 {
					break // quanta across lines: below
				}
				n := len(line) / 4 * 3
				if !decodeQuanta(dst[w:], line) { // padding, blanks, bad characters
					if n, err = base64.StdEncoding.Decode(dst[w:], line); err != nil {
						break // blanks or bad characters: below
					}
				}
				w += n
				l = i
				b = b[i+1:]
				if len(line) > 0 && line[len(line)-1] == '=' {
					d.ended = true
					break
				}
			}
			d.wrote(w)
		}
		pend = appendBase64Chars(pend, b)
		if !cut || eof {
			if pend, err = d.decodeQuanta(pend, eof); err != nil {
				return nil, err
			}
		}
	}
	return d.finish()
}

// quantumTable[k][c] is the base64 character c as the k-th of the four in a quantum: its 6
// bits in their place in the quantum's 24; a character outside the standard alphabet has
// bit 24 set instead.
var quantumTable = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for k := range t {
		for c := range t[k] {
			t[k][c] = 1 << 24
		}
		for v := range len(alphabet) {
			t[k][alphabet[v]] = uint32(v) << (18 - 6*k)
		}
	}
	return t
}()

// decodeQuanta decodes s, whole quanta of the standard alphabet, into d, which has room for
// len(s)/4*3 bytes, and tells whether s was that. Otherwise (padding, blanks, line ends, other
// bytes, s cut in a quantum) it returns false and d holds garbage. It gives what
// base64.StdEncoding.Decode gives but in about half the time: a quantum is four lookups in
// 4 KB of tables, ORed (FuzzDecodeBase64 checks it against the stdlib).
func decodeQuanta(d, s []byte) bool {
	t := &quantumTable
	var bad uint32
	for len(s) >= 8 && len(d) >= 8 {
		x := t[0][s[0]] | t[1][s[1]] | t[2][s[2]] | t[3][s[3]]
		y := t[0][s[4]] | t[1][s[5]] | t[2][s[6]] | t[3][s[7]]
		bad |= x | y
		binary.BigEndian.PutUint64(d, uint64(x)<<40|uint64(y)<<16) // 6 bytes and 2 of room
		s, d = s[8:], d[6:]
	}
	for len(s) >= 4 && len(d) >= 3 {
		x := t[0][s[0]] | t[1][s[1]] | t[2][s[2]] | t[3][s[3]]
		bad |= x
		d[0], d[1], d[2] = byte(x>>16), byte(x>>8), byte(x)
		s, d = s[4:], d[3:]
	}
	return len(s) == 0 && bad < 1<<24
}

// appendBase64Chars appends src without its line ends and blanks.
func appendBase64Chars(dst, src []byte) []byte {
	for len(src) > 0 {
		i := bytes.IndexAny(src, "\r\n \t")
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		src = src[i+1:]
	}
	return dst
}

// decodeQuanta decodes the whole quanta of q (all of q if all) and returns what is left,
// moved to the front of q.
func (d *b64) decodeQuanta(q []byte, all bool) ([]byte, error) {
	use := len(q)
	if !all {
		use -= use % 4
	}
	if err := d.decode(q[:use]); err != nil {
		return nil, err
	}
	return q[:copy(q, q[use:])], nil
}

// b64 holds the decoded blocks of decodeBase64, or once presized the decoded bytes in out.
type b64 struct {
	blocks []*[]byte
	out    []byte
	total  int
	ended  bool // padding seen
}

// A body is decoded straight into one slice sized to the bound on what is left once it is at
// least 1/presizeRatio of that bound: this caps the memory allocated and left unused at
// presizeRatio times the body, however the input is cut in parts. Besides, the first body of
// a message to pass earlyMin bytes takes the bound at once (the usual message: one large
// attachment), which costs at most one allocation of 3/4 of the message.
const (
	presizeRatio = 8
	earlyMin     = 32 << 10
)

// presize leaves the blocks for one slice holding the decoded bytes and room for all that the
// rest raw bytes left can decode to, when the body is large enough against it or early is
// still true (it is then set to false).
func (d *b64) presize(rest int64, early *bool) {
	if rest < 0 || rest > math.MaxInt/2 {
		return
	}
	if rest > int64(presizeRatio)*int64(d.total) {
		if early == nil || !*early || d.total < earlyMin {
			return
		}
		*early = false
	}
	out := make([]byte, d.total, d.total+int(rest)/4*3+3)
	w := 0
	for _, b := range d.blocks {
		w += copy(out[w:], *b)
	}
	d.release()
	d.blocks = nil
	d.out = out
}

func (d *b64) release() {
	for _, b := range d.blocks {
		*b = (*b)[:0]
		blockPool.Put(b)
	}
}

func (d *b64) decode(q []byte) error {
	if len(q) == 0 {
		return nil
	}
	if d.ended {
		return fmt.Errorf("%w: base64: data after the final padding", ErrMalformed)
	}
	n, err := base64.StdEncoding.Decode(d.room(base64.StdEncoding.DecodedLen(len(q))), q)
	if err != nil {
		return fmt.Errorf("%w: base64: %v", ErrMalformed, err)
	}
	d.wrote(n)
	d.ended = q[len(q)-1] == '='
	return nil
}

// room returns the free space after the bytes decoded so far, n bytes at least.
func (d *b64) room(n int) []byte {
	if d.out != nil {
		// The bound holds unless the reader's Len lied: then grow.
		d.out = slices.Grow(d.out, n)
		return d.out[len(d.out):cap(d.out)]
	}
	if len(d.blocks) == 0 || cap(*d.blocks[len(d.blocks)-1])-len(*d.blocks[len(d.blocks)-1]) < n {
		b := blockPool.Get().(*[]byte)
		if cap(*b) < n {
			*b = make([]byte, 0, n)
		}
		d.blocks = append(d.blocks, b)
	}
	b := *d.blocks[len(d.blocks)-1]
	return b[len(b):cap(b)]
}

// wrote counts n bytes written into room.
func (d *b64) wrote(n int) {
	if d.out != nil {
		d.out = d.out[:len(d.out)+n]
	} else {
		b := d.blocks[len(d.blocks)-1]
		*b = (*b)[:len(*b)+n]
	}
	d.total += n
}

func (d *b64) finish() ([]byte, error) {
	if d.out != nil {
		if len(d.out) >= cap(d.out)/2 {
			return d.out[:len(d.out):len(d.out)], nil
		}
		return bytes.Clone(d.out), nil // most of the room unused: do not keep it
	}
	if d.total == 0 {
		return []byte{}, nil // not nil: the part was there
	}
	// bytes.Join does not clear the memory it fills.
	parts := make([][]byte, len(d.blocks))
	for i, b := range d.blocks {
		parts[i] = *b
	}
	return bytes.Join(parts, nil), nil
}

// normalizeNewlines turns CRLF into LF, the form in which texts are given to WriteTo.
func normalizeNewlines(b []byte) string {
	return string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
}

func (rd *reader) finish() error {
	m := rd.m
	if len(m.CodeCDA) == len(m.Documents) {
		for i := range m.Documents {
			m.Documents[i].Code = m.CodeCDA[i]
		}
	}
	switch rd.report {
	case "delivery-status":
		if rd.dsnFields == nil {
			return fmt.Errorf("%w: delivery-status report without message/delivery-status part", ErrMalformed)
		}
		d, err := parseDSNFields(rd.dsnFields)
		if err != nil {
			return err
		}
		m.Kind, m.DSN = KindDSN, d
	case "disposition-notification":
		if rd.mdnFields == nil {
			return fmt.Errorf("%w: disposition-notification report without its part", ErrMalformed)
		}
		n, err := parseMDNFields(rd.mdnFields)
		if err != nil {
			return err
		}
		m.Kind, m.MDN = KindMDN, n
		m.Integration = n.Error
	}
	return nil
}

// readFieldBlocks reads header-like blocks separated by blank lines (the bodies of
// message/delivery-status and message/disposition-notification).
func readFieldBlocks(b []byte, max int) ([]textproto.Header, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	var blocks []textproto.Header
	for {
		// skip blank lines between blocks
		for {
			c, err := br.Peek(1)
			if err == io.EOF {
				return blocks, nil
			}
			if err != nil {
				return nil, err
			}
			if c[0] != '\r' && c[0] != '\n' {
				break
			}
			br.ReadByte()
		}
		if len(blocks) == max {
			return nil, fmt.Errorf("%w: more than %d field blocks", ErrMalformed, max)
		}
		h, err := textproto.ReadHeader(br)
		if err != nil && !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		blocks = append(blocks, h)
		if err != nil {
			return blocks, nil
		}
	}
}

// restBound bounds the bytes left to read of a body.
type restBound struct {
	left  func() int64
	early *bool // the message's early presize is still free
}

// bound is the restBound of a body at depth, or nil when the source does not tell its
// length: what the source holds plus what the buffers (the top one and one per nested
// multipart) may hold.
func (rd *reader) bound(depth int) *restBound {
	if rd.srcLen == nil {
		return nil
	}
	return &restBound{
		left:  func() int64 { return int64(rd.srcLen()) + int64(depth+1)*multipartBufSize + 1 },
		early: &rd.early,
	}
}
