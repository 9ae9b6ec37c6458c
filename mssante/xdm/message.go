package xdm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// ErrMessage is wrapped when a received mail and its IHE_XDM.ZIP disagree.
var ErrMessage = errors.New("xdm: mail and archive disagree")

// MailDocument is one document to send: the CDA bytes and the PDF/A-1 copy that travels beside
// the archive (Réf. #2 ECO.2.1.1/2.1.5). For an N1 document PDF may be nil: the encapsulated
// PDF is the copy. For a structured document the caller renders the copy.
type MailDocument struct {
	CDA []byte
	PDF []byte
}

// Compose packs the documents into the IHE_XDM.ZIP of m and fills what the mssante composer
// needs from the CDA headers: m.XDM, m.Documents (code, display name, date of the act,
// INS and PDF copy) and, when nil, m.Patient. The mail then goes out with m.WriteTo.
func Compose(m *mssante.Message, docs []MailDocument, opts *PackOptions) (*Packed, error) {
	var datas [][]byte
	for _, d := range docs {
		datas = append(datas, d.CDA)
	}
	var z bytes.Buffer
	packed, err := Pack(&z, datas, opts)
	if err != nil {
		return nil, err
	}
	var out []mssante.Document
	var patient *mssante.Patient
	for i, d := range docs {
		doc, err := cda.ParseBytes(d.CDA, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrPack, i+1, err)
		}
		pdf := d.PDF
		if pdf == nil {
			if !doc.IsN1() {
				return nil, fmt.Errorf("%w: document %d is structured: its PDF copy is required", ErrPack, i+1)
			}
			mt, data, err := doc.Content()
			if err != nil || mt != cda.MediaTypePDF {
				return nil, fmt.Errorf("%w: document %d: no encapsulated PDF to copy", ErrPack, i+1)
			}
			pdf = data
		}
		out = append(out, doc.MailDocument(pdf))
		if patient == nil {
			p := doc.Patient()
			patient = &p
		}
	}
	m.XDM = z.Bytes()
	m.Documents = out
	if m.Patient == nil {
		m.Patient = patient
	}
	return packed, nil
}

// Open reads the IHE_XDM.ZIP of a received mail with [Read] and checks it against the mail:
// one patient, the INS of the message (when it has a patient) and X-MSS-CODECDA listing the
// documents' codes.
func Open(m *mssante.Message, opts *ReadOptions) (*Package, error) {
	if m.XDM == nil {
		return nil, fmt.Errorf("%w: the mail has no %s", ErrMessage, FileName)
	}
	pkg, err := Read(bytes.NewReader(m.XDM), int64(len(m.XDM)), opts)
	if err != nil {
		return nil, err
	}
	var ins mssante.INS
	for _, s := range pkg.Subsets {
		for _, d := range s.Documents {
			if ins.IsZero() {
				ins = d.Entry.PatientID
			} else if d.Entry.PatientID != ins {
				return nil, fmt.Errorf("%w: the archive concerns several patients", ErrMessage)
			}
			if len(m.CodeCDA) > 0 && !slices.Contains(m.CodeCDA, d.Entry.TypeCode.Code) {
				pkg.Warnings = append(pkg.Warnings, "X-MSS-CODECDA does not list the code of "+d.Entry.URI)
			}
		}
	}
	if m.Patient != nil && !m.Patient.INS.IsZero() && m.Patient.INS != ins {
		return nil, fmt.Errorf("%w: the archive's patient is not the mail's", ErrMessage)
	}
	return pkg, nil
}
