package transport_test

import (
	"testing"

	"github.com/mssante-go/sdk/transport"
)

func FuzzParseCertificates(f *testing.F) {
	pki := newFixture(f)
	f.Add(pki.pki.RootPEM())
	f.Add(pki.pki.Root.Raw)
	f.Add(pki.client.CertPEM())
	f.Add([]byte("-----BEGIN PKCS7-----\nMIIB\n-----END PKCS7-----\n"))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := transport.ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range certs {
			_ = transport.SubjectDN(c)
		}
	})
}

func FuzzAddCRL(f *testing.F) {
	fx := newFixture(f)
	crl, err := fx.pki.CRL()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(crl)
	f.Add([]byte("-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = fx.trust.AddCRL(data)
	})
}

func FuzzEqualDN(f *testing.F) {
	f.Add("CN=a,OU=1,O=b,ST=Paris (75),C=FR", "cn=A, ou=1, o=B, st=paris (75), c=fr")
	f.Add(`CN=a\,b,O=\41`, `O=A,CN=A\2cB`)
	f.Add(`\`, `=`)
	f.Fuzz(func(t *testing.T, a, b string) {
		if transport.EqualDN(a, b) != transport.EqualDN(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
		if transport.EqualDN(a, b) && !transport.EqualDN(a, a) {
			t.Fatalf("equal to another but not to itself: %q", a)
		}
	})
}

func FuzzParsePKCS12(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03}, "")
	f.Fuzz(func(t *testing.T, data []byte, pw string) {
		_, _, _, _ = transport.ParsePKCS12(data, pw)
	})
}
