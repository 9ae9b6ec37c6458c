package revocation_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/mssante-go/sdk/transport/revocation"
)

// FuzzFetchedCRL serves arbitrary bytes as a CRL: the fetcher refuses them with a named error
// (or applies a valid CRL of the store's CA), never panics.
func FuzzFetchedCRL(f *testing.F) {
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff, 0x30})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, body []byte) {
		x := newFixture(t, &revocation.Options{MaxSize: 1 << 16})
		x.srv.serve(body, http.StatusOK)
		_ = x.f.Refresh(context.Background())
	})
}

// FuzzOCSPAnswer serves arbitrary bytes as an OCSP answer: refused with a named error, never a
// panic.
func FuzzOCSPAnswer(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x03})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, body []byte) {
		x := newFixture(t, nil)
		x.srv.serve(body, http.StatusOK)
		c := revocation.NewOCSP(&revocation.OCSPOptions{URL: x.srv.URL})
		if err := c.CheckOCSP(x.good.Cert, x.pki.Intermediate, x.clk.now()); err == nil {
			t.Fatal("arbitrary bytes taken as a good answer")
		}
	})
}
