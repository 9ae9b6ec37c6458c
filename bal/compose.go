package bal

import (
	"fmt"
	"time"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
)

// DocumentOptions complete NewDocumentMessage.
type DocumentOptions struct {
	// PDF is the PDF/A-1 copy of the document (ECO.2.1.1, 2.1.5). Optional for an N1 document,
	// whose embedded PDF is used; required for a structured one (LDL-SES).
	PDF []byte
	// Text is the body of the mail; default a neutral sentence without health data.
	Text string
	// NIL is the X-MSS-NIL product reference; when empty, Send puts Options.NIL. One that is
	// not a single ASCII token is refused here (ErrMessage).
	NIL string
	// WantMDN asks the recipients for an integration receipt.
	WantMDN bool
	// Now is the clock of the XDM archive; default time.Now.
	Now func() time.Time
	// Application, Version and Editor name the sending software in README.TXT.
	Application, Version, Editor string
}

// defaultText is the body of a mail carrying documents: a neutral sentence, no health data.
const defaultText = "Veuillez trouver ci-joint un document médical.\n"

// NewDocumentMessage builds the mail that carries one CDA document, a lettre de liaison for
// example: the CDA built from in (cda.Build), then as NewDocumentMessageFromDocument. A
// caller that validates the document first (cda.Build, cda.Validate) passes the built
// document to NewDocumentMessageFromDocument rather than building it twice.
func NewDocumentMessage(from mssante.Address, to []mssante.Address, in *cda.Input, opts *DocumentOptions) (*mssante.Message, error) {
	if in == nil {
		return nil, fmt.Errorf("%w: no document", ErrMessage)
	}
	doc, err := cda.Build(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	return NewDocumentMessageFromDocument(from, to, doc, opts)
}

// NewDocumentMessageFromDocument builds the mail that carries doc: packed in IHE_XDM.ZIP with
// its XDS metadata and the PDF copy (xdm.Compose), with the MSSanté headers. The message's
// Subject, Patient and Documents are set, so that the caller sees the subject the mail will
// have (it names the patient: health data, not to be logged). X-MSS-NIL is checked here when
// DocumentOptions.NIL is given, else by Send. The result is ready for Send.
func NewDocumentMessageFromDocument(from mssante.Address, to []mssante.Address, doc *cda.Document, opts *DocumentOptions) (*mssante.Message, error) {
	if doc == nil {
		return nil, fmt.Errorf("%w: no document", ErrMessage)
	}
	var o DocumentOptions
	if opts != nil {
		o = *opts
	}
	if o.NIL != "" && !validNIL(o.NIL) {
		return nil, fmt.Errorf("%w: DocumentOptions.NIL %q: X-MSS-NIL is one ASCII token, without space, comma or semicolon", ErrMessage, o.NIL)
	}
	if o.PDF == nil && !doc.IsN1() {
		return nil, fmt.Errorf("%w: a structured document needs its PDF copy (DocumentOptions.PDF)", ErrMessage)
	}
	xml, err := cda.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	text := o.Text
	if text == "" {
		text = defaultText
	}
	m := &mssante.Message{From: from, To: to, Text: text, NIL: o.NIL, WantMDN: o.WantMDN}
	if _, err := xdm.Compose(m, []xdm.MailDocument{{CDA: xml, PDF: o.PDF}}, &xdm.PackOptions{Now: o.Now,
		Application: o.Application, Version: o.Version, Editor: o.Editor}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	// The subject mssante.Message.WriteTo would compute, computed now for the caller to see.
	if m.Subject, err = mssante.DocumentSubject(m.Patient, m.Documents); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	return m, nil
}
