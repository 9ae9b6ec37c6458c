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
	// NIL is the X-MSS-NIL product reference.
	NIL string
	// WantMDN asks the recipients for an integration receipt.
	WantMDN bool
	// Now is the clock of the XDM archive; default time.Now.
	Now func() time.Time
	// Application, Version and Editor name the sending software in README.TXT.
	Application, Version, Editor string
}

// NewDocumentMessage builds the mail that carries one CDA document, a lettre de liaison for
// example: the CDA built from in (cda.Build), packed in IHE_XDM.ZIP with its XDS metadata
// and the PDF copy (xdm.Compose), with the MSSanté headers and subject that mssante.Message
// writes. The result is ready for Send.
func NewDocumentMessage(from mssante.Address, to []mssante.Address, in *cda.Input, opts *DocumentOptions) (*mssante.Message, error) {
	if in == nil {
		return nil, fmt.Errorf("%w: no document", ErrMessage)
	}
	var o DocumentOptions
	if opts != nil {
		o = *opts
	}
	doc, err := cda.Build(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	xml, err := cda.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	if o.PDF == nil && in.Kind != cda.KindN1 {
		return nil, fmt.Errorf("%w: a structured document needs its PDF copy (DocumentOptions.PDF)", ErrMessage)
	}
	text := o.Text
	if text == "" {
		text = "Veuillez trouver ci-joint un document médical.\n"
	}
	m := &mssante.Message{From: from, To: to, Text: text, NIL: o.NIL, WantMDN: o.WantMDN}
	if _, err := xdm.Compose(m, []xdm.MailDocument{{CDA: xml, PDF: o.PDF}}, &xdm.PackOptions{Now: o.Now,
		Application: o.Application, Version: o.Version, Editor: o.Editor}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	return m, nil
}
