package bal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // windows-1252 and ISO-8859 bodies from older DPIs
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Limits on a received message (untrusted input).
const (
	maxParts    = 100
	maxTextBody = 1 << 20
)

// Incoming is a received message handed to a Handler.
type Incoming struct {
	// UID is the message's IMAP UID in the watched mailbox.
	UID uint32
	// MessageID is the Message-ID without angle brackets (or a stand-in built from the UID
	// when the message has none).
	MessageID string
	// Header is the whole header. Subject, names and INS are health data: never log them.
	Header mail.Header
	// From is the sender's address.
	From string
	// Size is the size of the message in bytes.
	Size int64
	// Text is the first text/plain part (at most 1 MiB).
	Text string
	// Attachments are the message's files, on disk while the handler runs.
	Attachments []*Attachment
	// XDM is the IHE_XDM.ZIP attachment, nil when there is none.
	XDM *Attachment
	// Documents are the documents the XDM archive lists, and INS the patient's matricule
	// INS from its METADATA.XML (ECO.2.1.2); filled when the XDM reader can open it.
	Documents []Document
	INS       string
	// MDNRequested is true when the sender asked for a disposition notification.
	MDNRequested bool

	c    *Client
	data []byte // the message when small
	path string // or its spool file
	dir  string // the folder of the attachment files
}

// Attachment is one file of a received message.
type Attachment struct {
	Filename    string
	ContentType string
	Size        int64
	// Path is the file while the handler runs.
	Path string
}

// Open returns the attachment's content.
func (a *Attachment) Open() (*os.File, error) { return os.Open(a.Path) }

// Document is a document of the XDM archive.
type Document struct {
	// Name is the file name inside the archive, MimeType its type (text/xml for a CDA).
	Name, MimeType string
	// Content is the document (a CDA R2 for text/xml).
	Content []byte
}

// Open returns the raw message.
func (m *Incoming) Open() (io.ReadCloser, error) {
	if m.path != "" {
		return os.Open(m.path)
	}
	return io.NopCloser(bytes.NewReader(m.data)), nil
}

func (m *Incoming) cleanup() {
	if m.path != "" {
		os.Remove(m.path)
	}
	if m.dir != "" {
		os.RemoveAll(m.dir)
	}
}

func (m *Incoming) readHeader() error {
	r, err := m.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		return err
	}
	m.Header = mail.Header{Header: message.Header{Header: h}}
	m.MessageID, _ = m.Header.MessageID()
	if from, err := m.Header.AddressList("From"); err == nil && len(from) > 0 {
		m.From = from[0].Address
	}
	m.MDNRequested = m.Header.Has("Disposition-Notification-To")
	return nil
}

// report returns the DSN or MDN the message is, or nil.
func (m *Incoming) report() (*report, error) {
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return parseReport(r)
}

// autoSubmitted reports whether the message was sent by a program (RFC 3834): such a
// message is never answered, which prevents loops between two robots.
func (m *Incoming) autoSubmitted() bool {
	v := strings.ToLower(strings.TrimSpace(m.Header.Get("Auto-Submitted")))
	return v != "" && v != "no"
}

// replyTarget is where the MDN or error mail goes: Disposition-Notification-To, else
// Reply-To, else From.
func (m *Incoming) replyTarget() string {
	for _, k := range []string{"Disposition-Notification-To", "Reply-To", "From"} {
		if l, err := m.Header.AddressList(k); err == nil && len(l) > 0 {
			return l[0].Address
		}
	}
	return ""
}

// parse walks the MIME tree, writes the attachments to files and reads the XDM archive.
func (m *Incoming) parse(limit int64) error {
	r, err := m.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	mr, err := mail.CreateReader(io.LimitReader(r, limit))
	if err != nil && !message.IsUnknownCharset(err) {
		return fmt.Errorf("bal: message: %w", err)
	}
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) {
			return fmt.Errorf("bal: message part: %w", err)
		}
		if i >= maxParts {
			return fmt.Errorf("bal: message: more than %d parts", maxParts)
		}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			ct, _, _ := h.ContentType()
			if m.Text == "" && (ct == "" || strings.EqualFold(ct, "text/plain")) {
				b, err := io.ReadAll(io.LimitReader(p.Body, maxTextBody))
				if err != nil {
					return fmt.Errorf("bal: text part: %w", err)
				}
				m.Text = string(b)
			}
		case *mail.AttachmentHeader:
			if err := m.saveAttachment(h, p.Body); err != nil {
				return err
			}
		}
	}
	if m.XDM != nil {
		if err := m.readXDM(); err != nil {
			return err
		}
	}
	return nil
}

func (m *Incoming) saveAttachment(h *mail.AttachmentHeader, body io.Reader) error {
	if m.dir == "" {
		spool := filepath.Join(m.c.opts.StateDir, "spool")
		if err := os.MkdirAll(spool, 0o700); err != nil {
			return fmt.Errorf("bal: spool: %w", err)
		}
		d, err := os.MkdirTemp(spool, "att-*")
		if err != nil {
			return fmt.Errorf("bal: spool: %w", err)
		}
		m.dir = d
	}
	name, _ := h.Filename()
	ct, _, _ := h.ContentType()
	f, err := os.CreateTemp(m.dir, "part-*")
	if err != nil {
		return fmt.Errorf("bal: spool: %w", err)
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bal: attachment: %w", err)
	}
	a := &Attachment{Filename: name, ContentType: ct, Size: n, Path: f.Name()}
	m.Attachments = append(m.Attachments, a)
	if m.XDM == nil && strings.EqualFold(filepath.Base(name), "IHE_XDM.ZIP") {
		m.XDM = a
	}
	return nil
}
