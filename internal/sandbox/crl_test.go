package sandbox_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/revocation"
)

// TestSandboxPublishesCRLAndOCSP fetches the sandbox's CRL from the distribution point of a BAL
// certificate and asks its OCSP address, before and after Revoke.
func TestSandboxPublishesCRLAndOCSP(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	var app *sandbox.BAL
	for _, b := range s.Info.Operators[0].BALs {
		if b.Type == "APP" {
			app = b
		}
	}
	crt, err := tls.LoadX509KeyPair(app.CertFile, app.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := crt.Leaf
	if len(leaf.OCSPServer) != 1 || len(leaf.CRLDistributionPoints) != 1 {
		t.Fatalf("certificate: OCSP %q, CRL DP %q", leaf.OCSPServer, leaf.CRLDistributionPoints)
	}
	store := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	store.AddRoot(s.PKI.Root)
	store.AddIntermediate(s.PKI.Intermediate)
	f, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{store}, Certificates: []*x509.Certificate{leaf}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	chain := []*x509.Certificate{leaf, s.PKI.Intermediate}
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Verify(chain, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := revocation.NewOCSP(nil).CheckOCSP(leaf, s.PKI.Intermediate, time.Now()); err != nil {
		t.Fatalf("OCSP before revocation: %v", err)
	}
	if _, err := sandbox.Revoke(dir, app.Address); err != nil {
		t.Fatal(err)
	}
	if err := revocation.NewOCSP(nil).CheckOCSP(leaf, s.PKI.Intermediate, time.Now()); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("OCSP after revocation: %v, want ErrRevoked", err)
	}
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Verify(chain, x509.ExtKeyUsageClientAuth, time.Now()); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("CRL after revocation: %v, want ErrRevoked", err)
	}
	if _, err := sandbox.Revoke(dir, "nobody@"+sandbox.Hopital); err == nil {
		t.Fatal("revoked an address without a certificate")
	}
}
