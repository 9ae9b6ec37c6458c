package revocation_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/revocation"
)

// TestCRLOpenSSLGencrl fetches a CRL made by "openssl ca -gencrl" with the intermediate's key
// after "openssl ca -revoke": the revoked certificate is refused, the other accepted.
func TestCRLOpenSSLGencrl(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	dir := t.TempDir()
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki"), ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	good, err := pki.Org("bal-app@hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := pki.Org("revoked@hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	badPath, _, err := bad.WriteFiles(dir, "bad")
	if err != nil {
		t.Fatal(err)
	}
	cnf := filepath.Join(dir, "ca.cnf")
	files := map[string]string{
		cnf: "[ca]\ndefault_ca = d\n[d]\ndatabase = " + filepath.Join(dir, "index.txt") +
			"\ncrlnumber = " + filepath.Join(dir, "crlnumber") + "\ndefault_md = sha256\ndefault_crl_days = 7\n",
		filepath.Join(dir, "index.txt"): "",
		filepath.Join(dir, "crlnumber"): "1000\n",
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca := []string{"ca", "-config", cnf, "-keyfile", filepath.Join(dir, "pki", "intermediate.key.pem"),
		"-cert", filepath.Join(dir, "pki", "intermediate.crt.pem")}
	crlPath := filepath.Join(dir, "crl.pem")
	for _, args := range [][]string{append(ca[:len(ca):len(ca)], "-revoke", badPath), append(ca, "-gencrl", "-out", crlPath)} {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	srv := newCRLServer(t)
	data, err := os.ReadFile(crlPath)
	if err != nil {
		t.Fatal(err)
	}
	srv.serve(data, http.StatusOK)
	store := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	store.AddRoot(pki.Root)
	store.AddIntermediate(pki.Intermediate)
	f, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{store}, URLs: []string{srv.URL + "/crl.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := f.Held(); len(h) != 1 || h[0].Number != "4096" || h[0].Revoked != 1 {
		t.Fatalf("Held = %+v, want CRL number 0x1000 listing one certificate", h)
	}
	if _, err := store.Verify(bad.Chain, x509.ExtKeyUsageClientAuth, time.Now()); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("revoked certificate: %v, want ErrRevoked", err)
	}
	if _, err := store.Verify(good.Chain, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
}
