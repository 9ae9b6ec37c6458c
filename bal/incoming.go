package bal

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/emersion/go-message/textproto"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/xdm"
)

// Incoming is a received message handed to a Handler.
type Incoming struct {
	// UID is the message's IMAP UID in the watched mailbox.
	UID uint32
	// MessageID is the Message-ID without angle brackets (or a stand-in built from the UID
	// when the message has none).
	MessageID string
	// Size is the size of the message in bytes.
	Size int64
	// Message is the parsed mail: headers, text, the XDM archive, PDF copies, attachments.
	// Subject, names and INS are health data: never log them. Nil when the message could not
	// be parsed (ParseError says why): the handler then decides on the raw message (Open).
	Message    *mssante.Message
	ParseError error
	// XDM is the opened IHE_XDM.ZIP (nil when the mail carries none or it is unreadable:
	// XDMError says why). Its documents hold the CDA, parsed.
	XDM      *xdm.Package
	XDMError error
	// INS is the patient's matricule INS read from METADATA.XML, where the recipient must take
	// it (Réf. #2 ECO.2.1.2); zero when there is no XDM.
	INS mssante.INS
	// Patient is the patient of the first CDA document (INS from METADATA.XML, traits from
	// the CDA header); nil without a readable CDA.
	Patient *mssante.Patient

	data []byte // the message when small
	path string // or its spool file
}

// Documents returns the documents of every subset of the XDM archive.
func (m *Incoming) Documents() []xdm.Document {
	if m.XDM == nil {
		return nil
	}
	var out []xdm.Document
	for _, s := range m.XDM.Subsets {
		out = append(out, s.Documents...)
	}
	return out
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
}

// raw returns the message bytes (for the copy an MDN carries back).
func (m *Incoming) raw() ([]byte, error) {
	if m.path == "" {
		return m.data, nil
	}
	return os.ReadFile(m.path)
}

// readMessageID reads the Message-ID from the header alone.
func (m *Incoming) readMessageID() error {
	r, err := m.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		return err
	}
	m.MessageID = trimAngles(h.Get("Message-Id"))
	return nil
}

// parse reads the message with mssante.ReadMessage, then its XDM archive.
func (m *Incoming) parse(maxSize int64) {
	var src io.Reader = bytes.NewReader(m.data) // read in place by ReadMessage
	if m.path != "" {
		f, err := os.Open(m.path) // an *os.File tells its size to ReadMessage
		if err != nil {
			m.ParseError = err
			return
		}
		defer f.Close()
		src = f
	}
	msg, err := mssante.ReadMessage(src, &mssante.ReadOptions{MaxSize: maxSize})
	if err != nil {
		m.ParseError = err
		return
	}
	m.Message = msg
	if len(msg.XDM) == 0 {
		return
	}
	pkg, err := xdm.Open(msg, nil) // also checks one patient, the mail's
	if err != nil {
		m.XDMError = err
		return
	}
	m.XDM = pkg
	for _, s := range pkg.Subsets {
		if m.INS.IsZero() {
			m.INS = s.SubmissionSet.PatientID
		}
		for _, d := range s.Documents {
			if m.INS.IsZero() {
				m.INS = d.Entry.PatientID
			}
			if m.Patient == nil && d.CDA != nil {
				p := d.CDA.Patient()
				m.Patient = &p
			}
		}
	}
	if m.Patient != nil && !m.INS.IsZero() {
		m.Patient.INS = m.INS
	}
}

// store keeps the message body: in memory up to threshold, else in a spool file.
func (m *Incoming) store(r io.Reader, threshold, limit int64, spool string) error {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, threshold+1))
	if err != nil {
		return fmt.Errorf("bal: FETCH body: %w", err)
	}
	if n <= threshold {
		m.data = buf.Bytes()
		return nil
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("bal: spool: %w", err)
	}
	f, err := os.CreateTemp(spool, "msg-*.eml")
	if err != nil {
		return fmt.Errorf("bal: spool: %w", err)
	}
	m.path = f.Name()
	w, err := io.Copy(f, io.MultiReader(&buf, io.LimitReader(r, limit-n+1)))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bal: spool: %w", err)
	}
	if w > limit {
		io.Copy(io.Discard, r) // keep the connection in step
		return fmt.Errorf("%w: received message larger than MaxMessageSize", ErrMessage)
	}
	return nil
}

func trimAngles(s string) string {
	s = bytesTrim(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		return s[1 : len(s)-1]
	}
	return s
}

func bytesTrim(s string) string { return string(bytes.TrimSpace([]byte(s))) }

// ReadIncoming reads a received message held in memory as Watch reads those it fetches
// (the mail, its XDM archive, the INS and the patient), for a reader of a mailbox store
// other than Watch (a node's API). maxSize bounds the message as Options.MaxMessageSize does.
func ReadIncoming(data []byte, maxSize int64) *Incoming {
	m := &Incoming{Size: int64(len(data)), data: data}
	if err := m.readMessageID(); err != nil {
		m.ParseError = err
		return m
	}
	m.parse(maxSize)
	return m
}
