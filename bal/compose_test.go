package bal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// A document built and validated once is sent as it is, and the message shows the subject
// it will go out with before it is written.
func TestNewDocumentMessageFromDocument(t *testing.T) {
	doc, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		t.Fatal(err)
	}
	if r := cda.Validate(doc); !r.OK() {
		t.Fatalf("sample invalid: %v", r)
	}
	from := mssante.MustAddress("DPI", "dpi@hopital.test.mssante.fr")
	to := []mssante.Address{mssante.MustAddress("", "dr.x@cabinet.test.mssante.fr")}
	pdf := samplepdf.Page("Lettre de liaison (test)")

	if _, err := bal.NewDocumentMessageFromDocument(from, to, doc, nil); !errors.Is(err, bal.ErrMessage) {
		t.Errorf("structured document without its PDF copy: err = %v, want ErrMessage", err)
	}
	if _, err := bal.NewDocumentMessageFromDocument(from, to, doc, &bal.DocumentOptions{PDF: pdf, NIL: "DEV 1"}); !errors.Is(err, bal.ErrMessage) {
		t.Errorf("X-MSS-NIL of two words: err = %v, want ErrMessage", err)
	}
	m, err := bal.NewDocumentMessageFromDocument(from, to, doc, &bal.DocumentOptions{PDF: pdf, NIL: "DEV000000"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Subject, mssante.SubjectPrefix) {
		t.Fatalf("Subject %q before writing", m.Subject)
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b, nil); err != nil {
		t.Fatal(err)
	}
	back, err := mssante.ReadMessage(&b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.Subject != m.Subject {
		t.Errorf("written subject %q, shown %q", back.Subject, m.Subject)
	}

	// From a cda.Input, the same subject.
	m2, err := bal.NewDocumentMessage(from, to, cda.Sample(cda.KindLDLSES), &bal.DocumentOptions{PDF: pdf, NIL: "DEV000000"})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Subject != m.Subject {
		t.Errorf("NewDocumentMessage subject %q, want %q", m2.Subject, m.Subject)
	}
}
