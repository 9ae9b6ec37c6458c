package transport_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// writeTrustFiles writes into dir the CA file and the CRL of pki, and a liste blanche signed by
// an ORG signing certificate of pki (revoked before the CRL is made when revoke is set). It
// returns the three paths and the signer's subject.
func writeTrustFiles(pki *testpki.PKI, dir string, revoke bool) (ca, crl, list, signer string, err error) {
	leaf, err := pki.Leaf(testpki.ProfileOrgSign, pki.Subject("alb.mssante.fr", nil), nil)
	if err != nil {
		return
	}
	if revoke {
		if err = pki.Revoke(leaf.Cert); err != nil {
			return
		}
	}
	der, err := pki.CRL()
	if err != nil {
		return
	}
	doc, err := whitelist.Sign(whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: "ch-exemple.mssante.fr", OperatorDNs: []string{"CN=mss.example.fr,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"}},
	}), leaf.Key, leaf.Chain)
	if err != nil {
		return
	}
	ca, crl, list = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crl"), filepath.Join(dir, "listeblanche.xml")
	for path, data := range map[string][]byte{ca: append(pki.RootPEM(), pki.IntermediatePEM()...), crl: der, list: doc} {
		if err = os.WriteFile(path, data, 0o600); err != nil {
			return
		}
	}
	return ca, crl, list, leaf.Cert.Subject.String(), nil
}

// trustFiles is writeTrustFiles into a temporary folder of t.
func trustFiles(t testing.TB, pki *testpki.PKI, revoke bool) (ca, crl, list, signer string) {
	t.Helper()
	ca, crl, list, signer, err := writeTrustFiles(pki, t.TempDir(), revoke)
	if err != nil {
		t.Fatal(err)
	}
	return ca, crl, list, signer
}

func TestLoadTrustStore(t *testing.T) {
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, crl, list, signer := trustFiles(t, pki, false)
	trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true}, []string{"", ca}, []string{crl, ""})
	if err != nil {
		t.Fatal(err)
	}
	if roots, inters := trust.Counts(); roots != 1 || inters != 1 {
		t.Errorf("%d roots, %d intermediates; want 1, 1", roots, inters)
	}
	if n := len(trust.CRLs()); n != 1 {
		t.Errorf("%d CRLs, want 1", n)
	}
	l, err := trust.VerifyWhitelistFile(list, &whitelist.VerifyOptions{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CheckDomain("ch-exemple.mssante.fr"); err != nil {
		t.Error(err)
	}
	// Without the signer option the default ANS signer is expected, and this one is refused.
	if _, err := trust.VerifyWhitelistFile(list, nil); !errors.Is(err, whitelist.ErrSignerMismatch) {
		t.Errorf("other signer: %v, want ErrSignerMismatch", err)
	}
	// A CRL needs its CA: given alone, it is refused.
	if _, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true}, nil, []string{crl}); !errors.Is(err, transport.ErrUnknownAuthority) {
		t.Errorf("CRL without its CA: %v, want ErrUnknownAuthority", err)
	}
	if _, err := transport.LoadTrustStore(nil, []string{filepath.Join(t.TempDir(), "missing.pem")}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA file: %v", err)
	}
}

// The store's CRLs reach the whitelist check: a revoked signer is refused.
func TestVerifyWhitelistFileRevoked(t *testing.T) {
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, crl, list, signer := trustFiles(t, pki, true)
	trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true}, []string{ca}, []string{crl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.VerifyWhitelistFile(list, &whitelist.VerifyOptions{Signer: signer}); !errors.Is(err, whitelist.ErrSignerRevoked) {
		t.Errorf("revoked signer: %v, want ErrSignerRevoked", err)
	}
	// The caller's options are copied, not changed.
	opts := &whitelist.VerifyOptions{Signer: signer}
	if o := trust.WhitelistOptions(opts); o == opts || opts.Roots != nil || len(opts.CRLs) != 0 || len(o.CRLs) != 1 || o.Signer != signer {
		t.Errorf("WhitelistOptions: %+v from %+v", o, opts)
	}
}
