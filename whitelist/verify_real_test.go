package whitelist

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// realListPath returns the real ANS list of 2025-02-28 (spec data folder, beside the checkout,
// or MSSANTE_DATA_DIR); the tests that need it skip when it is absent.
func realListPath(t testing.TB) string {
	t.Helper()
	return testenv.SharedData(t, "listeblanchemssante-2025-02-28.xml")
}

func readReal(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(realListPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realSigner is the certificate that signed the 2025 list (public; extracted once from the file,
// SHA-256 fingerprint A0:DE:16:CA:…:D6:97).
func realSigner(t testing.TB) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile("testdata/alb.mssante.fr-2023.pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func realOpts(t testing.TB) *VerifyOptions {
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	return &VerifyOptions{PinnedSigner: realSigner(t), At: func() time.Time { return at }}
}

func TestVerifyRealFile(t *testing.T) {
	data := readReal(t)
	l, err := Verify(bytes.NewReader(data), realOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	entries, domains := l.Len()
	if entries != 6494 || domains != 4944 {
		t.Fatalf("got %d entries, %d domains; want 6494, 4944", entries, domains)
	}
	if g := l.Generated(); !g.Equal(time.Date(2025, 2, 28, 15, 42, 7, 0, time.UTC)) {
		t.Fatalf("generated %v", g)
	}
	dns := map[string]bool{}
	l.Domains(func(_ string, es []Entry) bool {
		for _, e := range es {
			for _, dn := range e.OperatorDNs {
				dns[dn] = true
			}
		}
		return true
	})
	if len(dns) != 391 {
		t.Fatalf("%d distinct operator DNs, want 391", len(dns))
	}
	es, ok := l.Lookup("1001-services.mssante.fr")
	if !ok || len(es) != 1 || es[0].OperatorDNs[0] != "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR" ||
		!es[0].Updated.Equal(time.Date(2024, 6, 7, 10, 24, 42, 0, time.UTC)) {
		t.Fatalf("lookup: %+v %v", es, ok)
	}
	for _, d := range []string{"mssante.apicrypt.org", "interop-mssante.apicrypt.org", "1001-Services.MSSante.fr."} {
		if err := l.CheckDomain(d); err != nil {
			t.Errorf("CheckDomain(%q): %v", d, err)
		}
	}
	if err := l.CheckDomain("apicrypt.org"); !errors.Is(err, ErrDomainNotListed) {
		t.Errorf("CheckDomain(apicrypt.org) = %v", err)
	}
	if err := l.CheckOperator("1001-services.mssante.fr", "c=fr, st=Haute-Garonne (31), o=GIP MIPIH, ou=318310021300028, cn=MEDIMAIL-ASIP.mipih.fr"); err != nil {
		t.Errorf("CheckOperator reordered DN: %v", err)
	}
	if err := l.CheckOperator("1001-services.mssante.fr", "CN=mss.enovacom.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"); !errors.Is(err, ErrOperatorNotListed) {
		t.Errorf("CheckOperator other DN: %v", err)
	}
}

func TestVerifyRealFileDates(t *testing.T) {
	data := readReal(t)
	opts := realOpts(t)
	opts.At = func() time.Time { return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) }
	if _, err := Verify(bytes.NewReader(data), opts); !errors.Is(err, ErrSignerExpired) {
		t.Fatalf("at 2026-11-28: %v, want ErrSignerExpired", err)
	}
	opts.UseListDate = true
	if _, err := Verify(bytes.NewReader(data), opts); err != nil {
		t.Fatalf("at the list's date: %v", err)
	}
}

func readRealReader(t testing.TB) *bytes.Reader { return bytes.NewReader(readReal(t)) }

func bytesReaderOf(b []byte) *bytes.Reader { return bytes.NewReader(b) }
