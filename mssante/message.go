package mssante

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/mssante-go/sdk/internal/fold"
)

// Compose errors.
var (
	ErrInvalidMessage  = errors.New("mssante: invalid message")
	ErrHeaderInjection = errors.New("mssante: control character in a header field")
	ErrTooLarge        = errors.New("mssante: message exceeds the size limit")
	ErrOnePatient      = errors.New("mssante: documents of more than one patient")
)

// XDMFilename is the name of the IHE XDM attachment. The ANS texts write both IHE_XDM.ZIP and
// IHE_XDM.zip and do not say which is canonical; readers compare without regard to case.
const XDMFilename = "IHE_XDM.ZIP"

// DefaultMaxSize is the size limit used when an option leaves it at zero: 25 MB, the limit of
// Mon espace santé (the strictest published one; operators set their own).
const DefaultMaxSize = 25 << 20

// SubjectPrefix starts the subject of every mail carrying health documents (ECO.2.1.3).
const SubjectPrefix = "XDM/1.0/DDM+"

// Header names of the MSSanté-specific fields (Réf. #2 ECO.2.4.x, ECO.2.2.8).
const (
	HeaderCodeCDA = "X-MSS-CODECDA"
	HeaderINS     = "X-MSS-INS"
	HeaderNIL     = "X-MSS-NIL"
	HeaderMES     = "X-MSS-MES"
)

// MessageKind says what a received message is.
type MessageKind int

// The kinds of message.
const (
	KindOrdinary         MessageKind = iota // any other mail
	KindDSN                                 // multipart/report; report-type=delivery-status
	KindMDN                                 // multipart/report; report-type=disposition-notification
	KindIntegrationError                    // plain "[KO Intégration système !][90x]" error mail
)

func (k MessageKind) String() string {
	switch k {
	case KindDSN:
		return "DSN"
	case KindMDN:
		return "MDN"
	case KindIntegrationError:
		return "integration error"
	}
	return "ordinary"
}

// Document is one CDA document travelling in the XDM archive, with its PDF copy attached to the
// mail. Code and DisplayName are the CDA header code; Date is the date of the act.
type Document struct {
	Code        string    // CDA code (e.g. LOINC "11490-0"), listed in X-MSS-CODECDA
	DisplayName string    // its display name, the subject label and PDF type
	Date        time.Time // date of the act (PDF name)
	INS         INS       // optional: the document's patient; must be the message's
	PDF         []byte    // the PDF/A-1 copy
	PDFName     string    // file name; computed by [PDFName] when empty on compose
}

// Attachment is any other attached file.
type Attachment struct {
	Filename    string
	ContentType string // default application/octet-stream
	Data        []byte
}

// Message is an MSSanté mail, as composed by [Message.WriteTo] and read by [ReadMessage].
type Message struct {
	From       Address
	To, Cc     []Address
	ReplyTo    []Address
	MessageID  string   // without angle brackets, on the From domain; generated when empty
	InReplyTo  []string // message ids, without angle brackets
	References []string
	Date       time.Time // set from ComposeOptions.Now when zero
	Subject    string    // computed from Patient and Documents when documents travel

	Text string // text/plain body (UTF-8)
	HTML string // optional; with Text it makes a multipart/alternative body

	Patient        *Patient   // the one patient of the documents
	Documents      []Document // CDA documents (in XDM) with their PDF copies
	XDM            []byte     // the IHE_XDM.ZIP archive; required with Documents
	NIL            string     // X-MSS-NIL: the product reference (référence produit)
	EndOfMessaging bool       // X-MSS-MES: FIN (the patient may not reply)
	WantMDN        bool       // Disposition-Notification-To: From
	Attachments    []Attachment

	// Set by ReadMessage only.
	Kind                      MessageKind
	CodeCDA                   []string // X-MSS-CODECDA values
	INSHeader                 string   // X-MSS-INS: "O", "N" or ""
	DispositionNotificationTo []Address
	ReturnPath                string  // envelope sender recorded at delivery ("" for <>; unset when absent)
	HasReturnPath             bool    // a Return-Path field was present
	DSN                       *DSN    // when Kind is KindDSN
	MDN                       *MDN    // when Kind is KindMDN
	Integration               MDNCode // when Kind is KindIntegrationError (or an MDN with an error)
	Original                  []byte  // returned message or headers of a DSN, MDN or error mail
}

// ComposeOptions tune writing. The zero value is valid.
type ComposeOptions struct {
	Now     func() time.Time // the Date header; nil = time.Now
	Rand    io.Reader        // Message-ID and MIME boundaries; nil = crypto/rand
	MaxSize int64            // bytes; 0 = DefaultMaxSize, <0 = no limit
}

func (o *ComposeOptions) now() time.Time {
	if o != nil && o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *ComposeOptions) random(n int) (string, error) {
	r := io.Reader(rand.Reader)
	if o != nil && o.Rand != nil {
		r = o.Rand
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("mssante: randomness: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (o *ComposeOptions) maxSize() int64 {
	if o == nil || o.MaxSize == 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}

func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// DocumentSubject returns the subject of a mail carrying docs about p (ECO.2.1.3):
// "XDM/1.0/DDM+<label> <NOM> <prénom> <JJ/MM/AAAA>", the label being the display name cut at
// 40 characters or "N documents", NOM the birth name in upper case, without accents; the
// birth date is left out when unknown.
func DocumentSubject(p *Patient, docs []Document) (string, error) {
	if p == nil || strings.TrimSpace(p.BirthName) == "" || strings.TrimSpace(p.FirstGivenName) == "" {
		return "", fmt.Errorf("%w: the subject needs the birth name and first given name", ErrInvalidMessage)
	}
	var label string
	switch len(docs) {
	case 0:
		return "", fmt.Errorf("%w: no document", ErrInvalidMessage)
	case 1:
		label = cut(strings.TrimSpace(fold.Accents(docs[0].DisplayName)), 40)
		if label == "" {
			return "", fmt.Errorf("%w: document without display name", ErrInvalidMessage)
		}
	default:
		label = fmt.Sprintf("%d documents", len(docs))
	}
	s := SubjectPrefix + label + " " + strings.ToUpper(fold.Accents(strings.TrimSpace(p.BirthName))) + " " + fold.Accents(strings.TrimSpace(p.FirstGivenName))
	if !p.BirthDate.IsZero() {
		s += " " + p.BirthDate.Format("02/01/2006")
	}
	if hasCtl(s) {
		return "", ErrHeaderInjection
	}
	return s, nil
}

// PDFName returns the attachment name of the PDF copy of d (ECO.2.1.6):
// "<AAAAMMJJ>_<type>_<NOM>_<prénom>[_<dossier>].pdf", type being the display name cut at 40,
// all without accents; characters that are unsafe in file names become "-".
func PDFName(d Document, p *Patient) (string, error) {
	if d.Date.IsZero() || p == nil || strings.TrimSpace(p.BirthName) == "" || strings.TrimSpace(p.FirstGivenName) == "" ||
		strings.TrimSpace(d.DisplayName) == "" {
		return "", fmt.Errorf("%w: a PDF name needs the act date, document type, birth name and first given name", ErrInvalidMessage)
	}
	parts := []string{d.Date.Format("20060102"), cut(strings.TrimSpace(fold.Accents(d.DisplayName)), 40),
		strings.ToUpper(fold.Accents(strings.TrimSpace(p.BirthName))), fold.Accents(strings.TrimSpace(p.FirstGivenName))}
	if f := strings.TrimSpace(p.FileNumber); f != "" {
		parts = append(parts, fold.Accents(f))
	}
	name := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
			return '-'
		}
		return r
	}, strings.Join(parts, "_"))
	return name + ".pdf", nil
}

func checkMsgID(id string) error {
	if id == "" || hasCtl(id) || strings.ContainsAny(id, "<> \t\"") || strings.Count(id, "@") != 1 ||
		strings.HasPrefix(id, "@") || strings.HasSuffix(id, "@") || !isASCII(id) {
		return fmt.Errorf("%w: bad message id %q", ErrInvalidMessage, id)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validate checks every rule and fills the computed fields of a copy.
func (m *Message) prepare(opts *ComposeOptions) (*Message, error) {
	c := *m
	if c.From.IsZero() {
		return nil, fmt.Errorf("%w: no From", ErrInvalidMessage)
	}
	if len(c.To) == 0 {
		return nil, fmt.Errorf("%w: no To", ErrInvalidMessage)
	}
	norm := func(list []Address) ([]Address, error) {
		out := make([]Address, len(list))
		for i, a := range list {
			n, err := NewAddress(a.Name, a.Addr)
			if err != nil {
				if hasCtl(a.Name) || hasCtl(a.Addr) {
					return nil, fmt.Errorf("%w: %w", ErrHeaderInjection, err)
				}
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	from, err := norm([]Address{c.From})
	if err != nil {
		return nil, err
	}
	c.From = from[0]
	for _, l := range []*[]Address{&c.To, &c.Cc, &c.ReplyTo} {
		if *l, err = norm(*l); err != nil {
			return nil, err
		}
	}
	for _, s := range []string{c.Subject, c.NIL} {
		if hasCtl(s) {
			return nil, ErrHeaderInjection
		}
	}
	if err := CheckNIL(c.NIL); err != nil {
		return nil, err
	}
	for _, id := range append(append([]string{}, c.InReplyTo...), c.References...) {
		if err := checkMsgID(id); err != nil {
			return nil, err
		}
	}
	if c.HTML != "" && !utf8.ValidString(c.HTML) || !utf8.ValidString(c.Text) || !utf8.ValidString(c.Subject) {
		return nil, fmt.Errorf("%w: text is not UTF-8", ErrInvalidMessage)
	}
	if (len(c.Documents) > 0) != (c.XDM != nil) {
		return nil, fmt.Errorf("%w: CDA documents travel in an IHE_XDM.ZIP: set both Documents and XDM, or neither", ErrInvalidMessage)
	}
	if len(c.Documents) > 0 {
		if c.Patient == nil {
			return nil, fmt.Errorf("%w: documents without their patient", ErrInvalidMessage)
		}
		docs := make([]Document, len(c.Documents))
		for i, d := range c.Documents {
			if !d.INS.IsZero() && d.INS != c.Patient.INS {
				return nil, ErrOnePatient
			}
			if d.Code == "" || hasCtl(d.Code) || strings.ContainsAny(d.Code, ", ") || !isASCII(d.Code) {
				return nil, fmt.Errorf("%w: document %d: bad CDA code %q", ErrInvalidMessage, i+1, d.Code)
			}
			if d.PDF == nil {
				return nil, fmt.Errorf("%w: document %d has no PDF copy", ErrInvalidMessage, i+1)
			}
			if d.PDFName == "" {
				n, err := PDFName(d, c.Patient)
				if err != nil {
					return nil, err
				}
				d.PDFName = n
			} else if hasCtl(d.PDFName) {
				return nil, ErrHeaderInjection
			}
			docs[i] = d
		}
		c.Documents = docs
		subject, err := DocumentSubject(c.Patient, c.Documents)
		if err != nil {
			return nil, err
		}
		if c.Subject != "" && c.Subject != subject {
			// The subject names the patient: not in the error, which may be logged.
			return nil, fmt.Errorf("%w: with documents the subject is computed (XDM/1.0/DDM+…); leave Subject empty", ErrInvalidMessage)
		}
		c.Subject = subject
	}
	for _, a := range c.Attachments {
		if a.Filename == "" || hasCtl(a.Filename) || hasCtl(a.ContentType) {
			return nil, fmt.Errorf("%w: attachment name", ErrHeaderInjection)
		}
		if a.ContentType != "" {
			if _, _, err := mime.ParseMediaType(a.ContentType); err != nil {
				return nil, fmt.Errorf("%w: attachment content type: %v", ErrInvalidMessage, err)
			}
		}
	}
	if c.MessageID == "" {
		r, err := opts.random(16)
		if err != nil {
			return nil, err
		}
		c.MessageID = r + "@" + c.From.Domain()
	}
	if err := checkMsgID(c.MessageID); err != nil {
		return nil, err
	}
	if !strings.EqualFold(c.MessageID[strings.IndexByte(c.MessageID, '@')+1:], c.From.Domain()) {
		return nil, fmt.Errorf("%w: the Message-ID must be on the sender's domain %s", ErrInvalidMessage, c.From.Domain())
	}
	if c.Date.IsZero() {
		c.Date = opts.now()
	}
	if max := opts.maxSize(); max > 0 {
		est := int64(len(c.Text) + len(c.HTML) + base64Len(len(c.XDM)))
		for _, d := range c.Documents {
			est += int64(base64Len(len(d.PDF)))
		}
		for _, a := range c.Attachments {
			est += int64(base64Len(len(a.Data)))
		}
		if est > max {
			return nil, fmt.Errorf("%w (%d bytes at least, limit %d)", ErrTooLarge, est, max)
		}
	}
	return &c, nil
}

func base64Len(n int) int { return base64.StdEncoding.EncodedLen(n) + (n+56)/57*2 }

func addrList(as []Address) []*mail.Address {
	l := make([]*mail.Address, len(as))
	for i, a := range as {
		l[i] = &mail.Address{Name: a.Name, Address: a.Addr}
	}
	return l
}

// header returns the top-level header fields of the prepared message.
func (c *Message) header() mail.Header {
	var h mail.Header
	// go-message writes fields in reverse order of insertion: add them bottom-up.
	setRaw(&h, "MIME-Version", "1.0")
	if c.EndOfMessaging {
		setRaw(&h, HeaderMES, "FIN")
	}
	if len(c.Documents) > 0 {
		ins := "N"
		if c.Patient.Qualified() {
			ins = "O"
		}
		setRaw(&h, HeaderINS, ins)
		codes := make([]string, len(c.Documents))
		for i, d := range c.Documents {
			codes[i] = d.Code
		}
		setRaw(&h, HeaderCodeCDA, strings.Join(codes, ","))
	}
	setRaw(&h, HeaderNIL, c.NIL)
	if c.WantMDN {
		h.SetAddressList("Disposition-Notification-To", addrList([]Address{c.From}))
	}
	if len(c.References) > 0 {
		h.SetMsgIDList("References", c.References)
	}
	if len(c.InReplyTo) > 0 {
		h.SetMsgIDList("In-Reply-To", c.InReplyTo)
	}
	h.SetMessageID(c.MessageID)
	h.SetSubject(c.Subject)
	h.SetDate(c.Date)
	if len(c.ReplyTo) > 0 {
		h.SetAddressList("Reply-To", addrList(c.ReplyTo))
	}
	if len(c.Cc) > 0 {
		h.SetAddressList("Cc", addrList(c.Cc))
	}
	h.SetAddressList("To", addrList(c.To))
	h.SetAddressList("From", addrList([]Address{c.From}))
	return h
}

// setRaw adds a field with its name written exactly as given (go-message would write
// X-Mss-Nil); the value was checked for control characters.
// CheckNIL reports what is wrong with v as the value of X-MSS-NIL, the product reference
// Réf. #2 ECO.2.4.3 requires on every mail: it must be there, one ASCII token without space,
// comma or semicolon. Composing (Message.WriteTo), a BAL's raw message (bal.Client.SendRaw)
// and the operator's submission server apply this one rule.
func CheckNIL(v string) error {
	if v == "" {
		return fmt.Errorf("%w: X-MSS-NIL (product reference) is required on every mail", ErrInvalidMessage)
	}
	for _, r := range v {
		if r <= ' ' || r >= 0x7f || r == ',' || r == ';' {
			return fmt.Errorf("%w: X-MSS-NIL must be one ASCII token", ErrInvalidMessage)
		}
	}
	return nil
}

func setRaw(h *mail.Header, key, value string) {
	h.Del(key)
	h.AddRaw([]byte(key + ": " + value + "\r\n"))
}

// WriteTo composes the message and writes it to w with CRLF line endings. It checks every rule
// first (From, To, X-MSS-NIL, one patient, documents with their XDM and PDF, no control
// characters in any header value, the size limit) and writes nothing if one fails. An empty
// MessageID or a zero Date is generated (they are not written back to m: read them from the
// output, or set them before the call).
func (m *Message) WriteTo(w io.Writer, opts *ComposeOptions) (int64, error) {
	c, err := m.prepare(opts)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w, max: opts.maxSize()}
	bw := bufio.NewWriterSize(cw, 64<<10)
	if err := c.write(bw, opts); err != nil {
		return cw.n, err
	}
	err = bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.max > 0 && c.n+int64(len(p)) > c.max {
		return 0, fmt.Errorf("%w (limit %d)", ErrTooLarge, c.max)
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *Message) write(w io.Writer, opts *ComposeOptions) error {
	h := c.header()
	top := &h.Header.Header
	if c.XDM == nil && len(c.Attachments) == 0 {
		return writeBody(topEmitter(w, top), c.Text, c.HTML, opts)
	}
	mw, err := newMultipart(topEmitter(w, top), "multipart/mixed", nil, opts)
	if err != nil {
		return err
	}
	if err := writeBody(mw.CreatePart, c.Text, c.HTML, opts); err != nil {
		return err
	}
	if c.XDM != nil {
		if err := writeAttachment(mw, XDMFilename, "application/zip", c.XDM); err != nil {
			return err
		}
	}
	for _, d := range c.Documents {
		if err := writeAttachment(mw, d.PDFName, "application/pdf", d.PDF); err != nil {
			return err
		}
	}
	for _, a := range c.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		if err := writeAttachment(mw, a.Filename, ct, a.Data); err != nil {
			return err
		}
	}
	return mw.Close()
}

// emitter writes a header and returns the writer of the body that follows.
type emitter func(textproto.Header) (io.Writer, error)

// topEmitter merges the part fields into the top-level header and writes it.
func topEmitter(w io.Writer, top *textproto.Header) emitter {
	return func(ph textproto.Header) (io.Writer, error) {
		// The message fields, then the content fields, in one header block.
		var b bytes.Buffer
		if err := textproto.WriteHeader(&b, *top); err != nil {
			return nil, err
		}
		if _, err := w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))); err != nil {
			return nil, err
		}
		return w, textproto.WriteHeader(w, ph)
	}
}

func boundary(opts *ComposeOptions) (string, error) {
	r, err := opts.random(12)
	if err != nil {
		return "", err
	}
	return "=_mss_" + r, nil
}

// newMultipart emits a multipart header and returns the writer of its parts.
func newMultipart(emit emitter, mediaType string, params map[string]string, opts *ComposeOptions) (*textproto.MultipartWriter, error) {
	b, err := boundary(opts)
	if err != nil {
		return nil, err
	}
	p := map[string]string{"boundary": b}
	for k, v := range params {
		p[k] = v
	}
	var h textproto.Header
	h.Set("Content-Type", mime.FormatMediaType(mediaType, p))
	w, err := emit(h)
	if err != nil {
		return nil, err
	}
	mw := textproto.NewMultipartWriter(w)
	if err := mw.SetBoundary(b); err != nil {
		return nil, err
	}
	return mw, nil
}

// writeBody writes text/plain, or multipart/alternative when html is set, in UTF-8
// quoted-printable (ECO.2.2.3).
func writeBody(emit emitter, text, html string, opts *ComposeOptions) error {
	if html == "" {
		return writeText(emit, "text/plain", text)
	}
	mw, err := newMultipart(emit, "multipart/alternative", nil, opts)
	if err != nil {
		return err
	}
	if err := writeText(mw.CreatePart, "text/plain", text); err != nil {
		return err
	}
	if err := writeText(mw.CreatePart, "text/html", html); err != nil {
		return err
	}
	return mw.Close()
}

func writeText(emit emitter, mediaType, s string) error {
	var h textproto.Header
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	h.Set("Content-Type", mediaType+"; charset=utf-8")
	w, err := emit(h)
	if err != nil {
		return err
	}
	qw := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qw, s); err != nil {
		return err
	}
	return qw.Close()
}

func writeAttachment(mw *textproto.MultipartWriter, name, contentType string, data []byte) error {
	var h textproto.Header
	h.Set("Content-Transfer-Encoding", "base64")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	params["name"] = name
	h.Set("Content-Type", mime.FormatMediaType(mt, params))
	w, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	return writeBase64(w, data)
}

// writeBase64 writes data in base64 lines of 76 characters with CRLF. It encodes whole blocks of
// lines at once (go-message's streaming encoder writes line by line and costs about twice as
// much), the full lines with encodeQuanta, the last one with encoding/base64 for its padding.
func writeBase64(w io.Writer, data []byte) error {
	const lineIn, lineOut, lines = 57, 76, 1024
	buf := make([]byte, lines*(lineOut+2))
	for len(data) > 0 {
		n := 0
		for i := 0; i < lines && len(data) > 0; i++ {
			if len(data) < lineIn {
				n += len(base64.StdEncoding.AppendEncode(buf[n:n], data)) // in place: buf has room
				data = data[len(data):]
			} else {
				encodeQuanta(buf[n:n+lineOut], data[:lineIn])
				n += lineOut
				data = data[lineIn:]
			}
			buf[n], buf[n+1] = '\r', '\n'
			n += 2
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

// pairTable[v] is the two base64 characters (standard alphabet) of the 12 bits v, the first
// in the high byte.
var pairTable = func() (t [4096]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for v := range t {
		t[v] = uint16(alphabet[v>>6])<<8 | uint16(alphabet[v&63])
	}
	return t
}()

// encodeQuanta encodes src, whole groups of 3 bytes, into d, which holds len(src)/3*4
// characters: what base64.StdEncoding.Encode writes, in about half the time (two lookups in
// 8 KB of table per group instead of four; TestEncodeQuanta checks it against the stdlib).
func encodeQuanta(d, src []byte) {
	t := &pairTable
	for len(src) >= 8 && len(d) >= 8 { // 6 bytes at a time, read as 8
		x := binary.BigEndian.Uint64(src) >> 16
		binary.BigEndian.PutUint64(d, uint64(t[x>>36&0xfff])<<48|uint64(t[x>>24&0xfff])<<32|uint64(t[x>>12&0xfff])<<16|uint64(t[x&0xfff]))
		src, d = src[6:], d[8:]
	}
	for len(src) >= 3 && len(d) >= 4 {
		x := uint(src[0])<<16 | uint(src[1])<<8 | uint(src[2])
		binary.BigEndian.PutUint16(d, t[x>>12])
		binary.BigEndian.PutUint16(d[2:], t[x&0xfff])
		src, d = src[3:], d[4:]
	}
}
