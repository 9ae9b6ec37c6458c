package bal

import (
	"bytes"
	"fmt"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
)

// NewXDMMessage builds the mail that carries an existing IHE_XDM.ZIP as it is: the archive is
// opened with the safe reader (xdm.Read, default bounds), and its documents give the mail's
// documents, patient and subject. The PDF copy of an N1 document is the one it encapsulates;
// pdf is the copy of a lone structured document (LDL-SES), required then. An archive that does
// not open, holds no document, or lacks a copy is refused with ErrMessage (wrapping the
// reader's error).
func NewXDMMessage(from mssante.Address, to []mssante.Address, zip, pdf []byte, opts *DocumentOptions) (*mssante.Message, error) {
	var o DocumentOptions
	if opts != nil {
		o = *opts
	}
	if o.NIL != "" && !validNIL(o.NIL) {
		return nil, fmt.Errorf("%w: DocumentOptions.NIL %q: X-MSS-NIL is one ASCII token, without space, comma or semicolon", ErrMessage, o.NIL)
	}
	pkg, err := xdm.Read(bytes.NewReader(zip), int64(len(zip)), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err)
	}
	text := o.Text
	if text == "" {
		text = defaultText
	}
	m := &mssante.Message{From: from, To: to, XDM: zip, Text: text, NIL: o.NIL, WantMDN: o.WantMDN}
	for _, s := range pkg.Subsets {
		for _, d := range s.Documents {
			doc := d.CDA
			copyPDF := pdf
			if doc.IsN1() {
				if mt, data, err := doc.Content(); err == nil && mt == cda.MediaTypePDF {
					copyPDF = data
				}
			}
			if copyPDF == nil {
				return nil, fmt.Errorf("%w: %s is a structured document: its PDF copy is required", ErrMessage, d.Path)
			}
			m.Documents = append(m.Documents, doc.MailDocument(copyPDF))
			if m.Patient == nil {
				p := doc.Patient()
				m.Patient = &p
			}
		}
	}
	if len(m.Documents) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no document", ErrMessage)
	}
	var err2 error
	if m.Subject, err2 = mssante.DocumentSubject(m.Patient, m.Documents); err2 != nil {
		return nil, fmt.Errorf("%w: %w", ErrMessage, err2)
	}
	if pdf != nil && len(m.Documents) > 1 {
		return nil, fmt.Errorf("%w: one PDF copy given, the archive holds %d documents", ErrMessage, len(m.Documents))
	}
	return m, nil
}
