package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

func TestEmbeddedRoot(t *testing.T) {
	root := transport.IGCSanteRoot()
	if root.NotAfter.Year() != 2033 || !root.IsCA {
		t.Fatalf("root %s until %v", transport.SubjectDN(root), root.NotAfter)
	}
	ts := transport.NewTrustStore(nil)
	if r, i := ts.Counts(); r != 1 || i != 0 {
		t.Fatalf("default store: %d roots, %d intermediates", r, i)
	}
	// A test PKI chain does not verify against the real root.
	f := newFixture(t)
	_, err := ts.Verify(f.client.Chain, x509.ExtKeyUsageClientAuth, time.Now())
	if !errors.Is(err, transport.ErrUnknownAuthority) {
		t.Fatalf("test chain against the real root: %v", err)
	}
}

func openssl(t *testing.T, args ...string) {
	t.Helper()
	bin := testenv.Require(t, "openssl")
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAddBundles loads the test CAs from PEM, DER and a .p7b bundle made by openssl, the way
// the ANS publishes Chaine_de_certification-IGC-Sante.p7b.
func TestAddBundles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	rootPEM := writeFile(t, dir, "root.pem", f.pki.RootPEM())
	interPEM := writeFile(t, dir, "inter.pem", f.pki.IntermediatePEM())
	p7b := filepath.Join(dir, "chain.p7b")
	openssl(t, "crl2pkcs7", "-nocrl", "-certfile", rootPEM, "-certfile", interPEM, "-outform", "DER", "-out", p7b)
	p7bPEM := filepath.Join(dir, "chain.p7b.pem")
	openssl(t, "crl2pkcs7", "-nocrl", "-certfile", rootPEM, "-certfile", interPEM, "-out", p7bPEM)
	bothPEM := writeFile(t, dir, "both.pem", append(f.pki.RootPEM(), f.pki.IntermediatePEM()...))
	der := writeFile(t, dir, "root.der", f.pki.Root.Raw)

	for _, tc := range []struct {
		name          string
		files         []string
		roots, inters int
	}{
		{"p7b DER", []string{p7b}, 1, 1},
		{"p7b PEM", []string{p7bPEM}, 1, 1},
		{"PEM bundle", []string{bothPEM}, 1, 1},
		{"DER root then PEM intermediate", []string{der, interPEM}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true, Revocation: transport.RevocationBestEffort})
			for _, file := range tc.files {
				if err := ts.AddFile(file); err != nil {
					t.Fatal(err)
				}
			}
			if r, i := ts.Counts(); r != tc.roots || i != tc.inters {
				t.Fatalf("%d roots, %d intermediates", r, i)
			}
			// The client sends only its leaf: the store's intermediate completes the chain.
			if _, err := ts.Verify(f.client.Chain[:1], x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
				t.Fatal(err)
			}
			// The pools handed out for checks outside TLS (the whitelist signer) do the same.
			if _, err := f.client.Cert.Verify(x509.VerifyOptions{Roots: ts.Roots(), Intermediates: ts.Intermediates(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("Roots/Intermediates pools: %v", err)
			}
		})
	}

	ts := transport.NewTrustStore(nil)
	if err := ts.Add(f.client.CertPEM()); err == nil {
		t.Fatal("a leaf certificate was added as a CA")
	}
	if err := ts.Add([]byte("not a certificate")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestParsePKCS12(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	cert, key, err := f.client.WriteFiles(dir, "bal")
	if err != nil {
		t.Fatal(err)
	}
	p12 := filepath.Join(dir, "bal.p12")
	openssl(t, "pkcs12", "-export", "-in", cert, "-inkey", key, "-out", p12, "-passout", "pass:s3cret", "-name", "BAL")
	data, err := os.ReadFile(p12)
	if err != nil {
		t.Fatal(err)
	}
	k, leaf, chain, err := transport.ParsePKCS12(data, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Equal(f.client.Cert) || len(chain) != 1 || !chain[0].Equal(f.pki.Intermediate) || k == nil {
		t.Fatalf("leaf %v, chain %d, key %T", transport.SubjectDN(leaf), len(chain), k)
	}
	if _, _, _, err := transport.ParsePKCS12(data, "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	// The p12 makes a working client certificate.
	tc, err := transport.PKCS12Certificate(data, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cli := f.plainClient(nil)
	cli.Certificates = []tls.Certificate{tc}
	r := handshake(t, f.serverConfig(t, nil), cli)
	if r.srvErr != nil || r.cliErr != nil {
		t.Fatalf("handshake with the p12 certificate: server %v, client %v", r.srvErr, r.cliErr)
	}
}

func TestAddCRL(t *testing.T) {
	f := newFixture(t)
	p, err := testpki.New(nil) // own revocation list, same CAs
	if err != nil {
		t.Fatal(err)
	}
	ts := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	ts.AddRoot(p.Root)
	ts.AddIntermediate(p.Intermediate)
	leaf, err := p.Org("later-revoked.hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(leaf.Cert); err != nil {
		t.Fatal(err)
	}
	after, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.AddCRL(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: after})); err != nil {
		t.Fatal(err)
	}
	check := func(want error) {
		t.Helper()
		_, err := ts.Verify(leaf.Chain, x509.ExtKeyUsageClientAuth, time.Now())
		if !errors.Is(err, want) {
			t.Fatalf("Verify = %v, want %v", err, want)
		}
	}
	check(transport.ErrRevoked)
	// Replaying the older CRL is refused and does not un-revoke.
	if err := ts.AddCRL(before); err == nil {
		t.Fatal("older CRL accepted")
	}
	check(transport.ErrRevoked)

	// A CRL signed by another key under the same CA name is refused; the held one stays.
	other, err := testpki.New(&testpki.Options{Dir: t.TempDir(), ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.AddCRL(forged); err == nil {
		t.Fatal("CRL with a bad signature accepted")
	}
	check(transport.ErrRevoked)

	for name, data := range map[string][]byte{
		"garbage":   []byte("garbage"),
		"cert PEM":  f.client.CertPEM(),
		"truncated": after[:len(after)/2],
	} {
		if err := ts.AddCRL(data); err == nil {
			t.Errorf("%s accepted as CRL", name)
		}
	}
	// A CRL from an unknown CA.
	empty := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	if err := empty.AddCRL(after); !errors.Is(err, transport.ErrUnknownAuthority) {
		t.Fatalf("CRL of unknown CA: %v", err)
	}
}

func TestVerifyConcurrentAdd(t *testing.T) {
	f := newFixture(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			f.trust.AddRoot(f.pki.Root)
			f.trust.AddIntermediate(f.pki.Intermediate)
			crl, _ := f.pki.CRL()
			f.trust.AddCRL(crl)
		}
	}()
	for range 50 {
		if _, err := f.trust.Verify(f.client.Chain, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}
