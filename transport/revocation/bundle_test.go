package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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

// TestBundleAddsChainedIntermediatesOnly serves an openssl-made .p7b holding the trusted root
// and intermediate, a new intermediate of that root and a foreign root: only the new
// intermediate is added, it survives a restart, and the embedded IGC-Santé root stays.
func TestBundleAddsChainedIntermediatesOnly(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	dir := t.TempDir()
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki"), ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "pki", "root.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	rootKey, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS 2"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	newInter, _ := x509.ParseCertificate(der)
	foreign, _ := otherCA(t, pki, false)
	var all []byte
	for _, c := range []*x509.Certificate{pki.Root, pki.Intermediate, newInter, foreign} {
		all = append(all, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	os.WriteFile(filepath.Join(dir, "all.pem"), all, 0o600)
	p7b := filepath.Join(dir, "chain.p7b")
	if out, err := exec.Command(openssl, "crl2pkcs7", "-nocrl", "-certfile", filepath.Join(dir, "all.pem"), "-outform", "DER",
		"-out", p7b).CombinedOutput(); err != nil {
		t.Fatalf("openssl crl2pkcs7: %v\n%s", err, out)
	}
	bundle, _ := os.ReadFile(p7b)
	srv := newCRLServer(t)
	srv.serve(bundle, http.StatusOK)

	newStore := func() *transport.TrustStore {
		s := transport.NewTrustStore(&transport.TrustOptions{Revocation: transport.RevocationBestEffort})
		s.AddRoot(pki.Root)
		s.AddIntermediate(pki.Intermediate)
		return s
	}
	cache := filepath.Join(dir, "cache")
	store := newStore()
	f, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{store}, Dir: cache,
		BundleURLs: []string{srv.URL + "/AC/Chaine_de_certification-IGC-Sante.p7b"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	roots, inters := store.Counts()
	if roots != 2 || inters != 2 {
		t.Fatalf("after the bundle: %d roots, %d intermediates; want 2 (IGC-Santé and test) and 2", roots, inters)
	}
	if !store.Roots().Equal(func() *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(transport.IGCSanteRoot())
		p.AddCert(pki.Root)
		return p
	}()) {
		t.Error("the roots changed: the embedded root must stay and the foreign root stay out")
	}
	// A leaf of the new intermediate now verifies.
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ltmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "dpi@hopital.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	lder, err := x509.CreateCertificate(rand.Reader, ltmpl, newInter, lk.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(lder)
	if _, err := store.Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatalf("leaf of the new intermediate: %v", err)
	}
	// Restart: the intermediate comes back from the cache, the server being down.
	srv.Close()
	store2 := newStore()
	if _, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{store2}, Dir: cache}); err != nil {
		t.Fatal(err)
	}
	if _, err := store2.Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
