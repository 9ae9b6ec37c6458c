package testpki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

func newPKI(t testing.TB) *PKI {
	t.Helper()
	p, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func verify(p *PKI, l *Leaf, usage x509.ExtKeyUsage, at time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range l.Chain[1:] {
		inter.AddCert(c)
	}
	_, err := l.Cert.Verify(x509.VerifyOptions{
		Roots: p.Roots(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage},
	})
	return err
}

// dn renders the subject of c from its raw RDN sequence (pkix.Name.String regroups repeated
// attributes into one multi-valued RDN, which is not what the certificate holds).
func dn(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(c.RawSubject, &seq); err != nil || len(rest) > 0 {
		t.Fatalf("subject: %v", err)
	}
	return seq.String()
}

func TestCANames(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		c    *x509.Certificate
		want string
	}{
		{p.Root, "CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR"},
		{p.Intermediate, "CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR"},
	} {
		if got := dn(t, tc.c); got != tc.want {
			t.Errorf("subject = %q, want %q", got, tc.want)
		}
	}
	if err := p.Intermediate.CheckSignatureFrom(p.Root); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Root.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("default root key is %T, want RSA", p.Root.PublicKey)
	}
}

func TestLeaves(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	srv, err := p.Server("mx.hopital.test", &LeafOptions{SIRET: "26310004700015", Org: "CHU DE TEST", State: "Haute-Garonne (31)"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dn(t, srv.Cert), "CN=mx.hopital.test,OU=26310004700015,O=CHU DE TEST,ST=Haute-Garonne (31),C=FR"; got != want {
		t.Errorf("server subject = %q, want %q", got, want)
	}
	if err := srv.Cert.VerifyHostname("mx.hopital.test"); err != nil {
		t.Error(err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verify(p, srv, u, now); err != nil {
			t.Errorf("server cert, usage %v: %v", u, err)
		}
	}
	local, err := p.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}

	org, err := p.Org("app@hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(p, org, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Error(err)
	}
	if err := verify(p, org, x509.ExtKeyUsageServerAuth, now); err == nil {
		t.Error("ORG/AUTH_CLI certificate verified for serverAuth")
	}
	if len(org.Cert.EmailAddresses) != 1 || org.Cert.EmailAddresses[0] != "app@hopital.test" {
		t.Errorf("email SANs = %v", org.Cert.EmailAddresses)
	}

	signer, err := p.Leaf(ProfileOrgSign, p.Subject("alb.mssante.fr", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(p, signer, x509.ExtKeyUsageEmailProtection, now); err != nil {
		t.Error(err)
	}
	if signer.Cert.KeyUsage&x509.KeyUsageContentCommitment == 0 {
		t.Error("signing certificate lacks nonRepudiation")
	}
}

func TestVariants(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	for _, tc := range []struct {
		name string
		o    LeafOptions
		want x509.InvalidReason // or -1 for unknown authority
	}{
		{"expired", LeafOptions{Expired: true}, x509.Expired},
		{"not yet valid", LeafOptions{NotYetValid: true}, x509.Expired},
		{"wrong EKU", LeafOptions{WrongEKU: true}, x509.IncompatibleUsage},
		{"foreign CA", LeafOptions{ForeignCA: true}, -1},
		{"self-signed", LeafOptions{SelfSigned: true}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := p.Org("org.test", &tc.o)
			if err != nil {
				t.Fatal(err)
			}
			err = verify(p, l, x509.ExtKeyUsageClientAuth, now)
			if tc.want == -1 {
				var ua x509.UnknownAuthorityError
				if !errors.As(err, &ua) {
					t.Fatalf("err = %v, want UnknownAuthorityError", err)
				}
				return
			}
			var ci x509.CertificateInvalidError
			if !errors.As(err, &ci) || ci.Reason != tc.want {
				t.Fatalf("err = %v, want reason %v", err, tc.want)
			}
		})
	}

	// A self-signed certificate carrying the real intermediate's name is still unknown.
	fake, err := p.Leaf(ProfileOrgAuth, p.Intermediate.Subject, &LeafOptions{SelfSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fake.Cert.RawSubject, p.Intermediate.RawSubject) || len(fake.Chain) != 1 {
		t.Fatalf("fake intermediate: %s, chain %d", fake.Cert.Subject, len(fake.Chain))
	}
	var ua x509.UnknownAuthorityError
	if err := verify(p, fake, x509.ExtKeyUsageClientAuth, now); !errors.As(err, &ua) {
		t.Fatalf("err = %v, want UnknownAuthorityError", err)
	}
}

func TestCRL(t *testing.T) {
	p := newPKI(t)
	good, err := p.Org("good.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := p.Org("bad.test", &LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	der, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(p.Intermediate); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.String()] = true
	}
	if !listed[bad.Cert.SerialNumber.String()] || listed[good.Cert.SerialNumber.String()] {
		t.Fatalf("CRL lists %v; revoked %v, good %v", listed, bad.Cert.SerialNumber, good.Cert.SerialNumber)
	}
	if !crl.NextUpdate.After(time.Now()) {
		t.Error("fresh CRL already stale")
	}
}

func TestClock(t *testing.T) {
	at := time.Date(2031, 5, 1, 12, 0, 0, 0, time.UTC)
	p, err := New(&Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Org("clock.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(p, l, x509.ExtKeyUsageClientAuth, at); err != nil {
		t.Fatal(err)
	}
	if err := verify(p, l, x509.ExtKeyUsageClientAuth, at.AddDate(-1, 0, 0)); err == nil {
		t.Fatal("certificate valid a year before its issuing clock")
	}
}

func TestECDSA(t *testing.T) {
	p, err := New(&Options{ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Server("ec.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T, want ECDSA", l.Key)
	}
	if err := verify(p, l, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	rp := newPKI(t)
	el, err := rp.Org("ec-leaf.test", &LeafOptions{ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := el.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T, want ECDSA leaf in RSA PKI", el.Key)
	}
}

func TestDirPersistence(t *testing.T) {
	dir := t.TempDir()
	p1, err := New(&Options{Dir: dir, ECDSA: true}) // ECDSA keeps this test fast
	if err != nil {
		t.Fatal(err)
	}
	rev, err := p1.Org("revoked.test", &LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := New(&Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !p1.Root.Equal(p2.Root) || !p1.Intermediate.Equal(p2.Intermediate) {
		t.Fatal("reloaded PKI has other CAs")
	}
	l, err := p2.Server("reloaded.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("reloaded ECDSA PKI issued a %T key", l.Key)
	}
	if err := verify(p1, l, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	der, err := p2.CRL()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(rev.Cert.SerialNumber) != 0 {
		t.Fatalf("reloaded CRL entries %v, want serial %v", crl.RevokedCertificateEntries, rev.Cert.SerialNumber)
	}
	st, err := os.Stat(filepath.Join(dir, interKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode().Perm())
	}
}

// TestOpenSSLVerify checks the written files with a real verifier: openssl verify -crl_check.
func TestOpenSSLVerify(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	p := newPKI(t)
	dir := t.TempDir()
	good, err := p.Server("mx.openssl.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := p.Server("revoked.openssl.test", &LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	goodCert, goodKey, err := good.WriteFiles(dir, "good")
	if err != nil {
		t.Fatal(err)
	}
	badCert, _, err := bad.WriteFiles(dir, "bad")
	if err != nil {
		t.Fatal(err)
	}
	der, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	root := write("root.pem", p.RootPEM())
	inter := write("inter.pem", p.IntermediatePEM())
	crl := write("crl.der", der)
	crlPEM := filepath.Join(dir, "crl.pem")
	if out, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", crl, "-out", crlPEM).CombinedOutput(); err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	args := func(cert string) []string {
		return []string{"verify", "-CAfile", root, "-untrusted", inter, "-crl_check", "-CRLfile", crlPEM, "-purpose", "sslserver", cert}
	}
	if out, err := exec.Command(openssl, args(goodCert)...).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify good: %v\n%s", err, out)
	}
	out, err := exec.Command(openssl, args(badCert)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "revoked") {
		t.Fatalf("openssl verify revoked: err %v\n%s", err, out)
	}
	// The key file matches the certificate.
	pub1, err := exec.Command(openssl, "pkey", "-in", goodKey, "-pubout").Output()
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := exec.Command(openssl, "x509", "-in", goodCert, "-noout", "-pubkey").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(pub1) != string(pub2) {
		t.Fatal("key file does not match the certificate")
	}
}

func BenchmarkLeaf(b *testing.B) {
	p := newPKI(b)
	for b.Loop() {
		if _, err := p.Org("bench.test", nil); err != nil {
			b.Fatal(err)
		}
	}
}
