package xdm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/mssante"
)

func addr(t *testing.T, s string) mssante.Address {
	a, err := mssante.NewAddress("", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestComposeRead sends an LDL-SES and an N1 through the mssante composer and parser.
func TestComposeRead(t *testing.T) {
	docs := twoDocs(t)
	m := &mssante.Message{From: addr(t, "service.cardio@hopital.mssante.fr"), To: []mssante.Address{addr(t, "dr.martin@medecin.mssante.fr")},
		Text: "Lettre de liaison ci-jointe.", NIL: "mssante-go-test"}
	_, err := Compose(m, []MailDocument{{CDA: docs[0], PDF: samplepdf.Page("copie LDL")}, {CDA: docs[1]}}, &PackOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if m.Patient == nil || m.Patient.INS.Value != "279035121518989" || len(m.Documents) != 2 || m.Documents[0].Code != "11490-0" {
		t.Fatalf("composed message: %+v", m)
	}
	var wire bytes.Buffer
	if _, err := m.WriteTo(&wire, &mssante.ComposeOptions{Now: clock}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(wire.String(), "IHE_XDM.ZIP") || !strings.Contains(wire.String(), "XDM/1.0/DDM+") {
		t.Fatal("mail lacks the archive or the XDM subject")
	}
	got, err := mssante.ReadMessage(&wire, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := Open(got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.Warnings) != 0 {
		t.Fatalf("warnings: %v", pkg.Warnings)
	}
	d := pkg.Subsets[0].Documents
	if len(d) != 2 || !bytes.Equal(d[0].Data, docs[0]) || !bytes.Equal(d[1].Data, docs[1]) {
		t.Fatal("documents differ after the mail round trip")
	}
	// The N1's PDF copy on the mail is its encapsulated PDF.
	_, pdf, _ := d[1].CDA.Content()
	found := false
	for _, doc := range got.Documents {
		found = found || bytes.Equal(doc.PDF, pdf)
	}
	if !found {
		t.Fatal("the N1 PDF copy is not on the mail")
	}

	// A mail whose patient is not the archive's is refused.
	other := *got
	key, _ := mssante.NIRKey("1850578006084")
	other.Patient = &mssante.Patient{INS: mssante.INS{Value: "1850578006084" + key, OID: mssante.OIDINSNIRTest}}
	if _, err := Open(&other, nil); !errors.Is(err, ErrMessage) {
		t.Fatalf("other patient: %v", err)
	}
	other.XDM = nil
	if _, err := Open(&other, nil); !errors.Is(err, ErrMessage) {
		t.Fatalf("no archive: %v", err)
	}
	// A structured document without its PDF copy is refused.
	if _, err := Compose(&mssante.Message{}, []MailDocument{{CDA: docs[0]}}, nil); !errors.Is(err, ErrPack) {
		t.Fatalf("no PDF copy: %v", err)
	}
}
