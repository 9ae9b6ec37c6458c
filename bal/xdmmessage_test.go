package bal_test

import (
	"errors"
	"testing"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// An archive made elsewhere travels as it is, with the subject its documents give; a
// structured document needs its PDF copy, an N1 document carries its own; an unreadable
// archive and an archive with a copy too many are refused.
func TestNewXDMMessage(t *testing.T) {
	from := mssante.MustAddress("DPI", "dpi@hopital.test.mssante.fr")
	to := []mssante.Address{mssante.MustAddress("", "dr.x@cabinet.test.mssante.fr")}
	pdf := samplepdf.Page("Lettre de liaison (test)")
	ldl, err := bal.NewDocumentMessage(from, to, cda.Sample(cda.KindLDLSES), &bal.DocumentOptions{PDF: pdf})
	if err != nil {
		t.Fatal(err)
	}
	n1, err := bal.NewDocumentMessage(from, to, cda.Sample(cda.KindN1), nil)
	if err != nil {
		t.Fatal(err)
	}

	m, err := bal.NewXDMMessage(from, to, ldl.XDM, pdf, &bal.DocumentOptions{WantMDN: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != ldl.Subject || !m.WantMDN || len(m.Documents) != 1 || m.Patient == nil {
		t.Errorf("message from the archive: subject %v, MDN %v, %d documents", m.Subject == ldl.Subject, m.WantMDN, len(m.Documents))
	}
	if _, err := bal.NewXDMMessage(from, to, n1.XDM, nil, nil); err != nil {
		t.Errorf("N1 archive without a PDF: %v", err)
	}
	for name, tc := range map[string]struct {
		zip, pdf []byte
		opts     *bal.DocumentOptions
	}{
		"structured without copy": {ldl.XDM, nil, nil},
		"not a zip":               {[]byte("PK\x03\x04 broken"), nil, nil},
		"empty":                   {nil, nil, nil},
		"NIL of two words":        {n1.XDM, nil, &bal.DocumentOptions{NIL: "DEV 1"}},
	} {
		if _, err := bal.NewXDMMessage(from, to, tc.zip, tc.pdf, tc.opts); !errors.Is(err, bal.ErrMessage) {
			t.Errorf("%s: err = %v, want ErrMessage", name, err)
		}
	}
}
