package revocation_test

import (
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/revocation"
)

// ocspPeer is openssl ocsp answering, from an openssl ca index, the requests a loopback HTTP
// server receives.
type ocspPeer struct {
	t                  *testing.T
	openssl, dir       string
	pki                *testpki.PKI
	good, revoked, unk *testpki.Leaf
	srv                *httptest.Server
	requests           atomic.Int32

	mu      sync.Mutex
	signer  [2]string // responder certificate and key files
	nmin    string    // validity of the answers, minutes
	replace []byte    // when set, answered instead of openssl's answer
}

func newOCSPPeer(t *testing.T) *ocspPeer {
	p := &ocspPeer{t: t, openssl: testenv.Require(t, "openssl"), dir: t.TempDir(), nmin: "60"}
	var err error
	p.pki, err = testpki.New(&testpki.Options{Dir: filepath.Join(p.dir, "pki"), ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	p.signer = [2]string{filepath.Join(p.dir, "pki", "intermediate.crt.pem"), filepath.Join(p.dir, "pki", "intermediate.key.pem")}
	cnf := filepath.Join(p.dir, "ca.cnf")
	os.WriteFile(cnf, []byte("[ca]\ndefault_ca = d\n[d]\ndatabase = "+filepath.Join(p.dir, "index.txt")+"\ndefault_md = sha256\n"), 0o600)
	os.WriteFile(filepath.Join(p.dir, "index.txt"), nil, 0o600)
	leaf := func(cn, base, op string) *testpki.Leaf {
		l, err := p.pki.Org(cn, nil)
		if err != nil {
			t.Fatal(err)
		}
		path, _, err := l.WriteFiles(p.dir, base)
		if err != nil {
			t.Fatal(err)
		}
		if op != "" {
			p.run("ca", "-config", cnf, "-keyfile", p.signer[1], "-cert", p.signer[0], op, path)
		}
		return l
	}
	p.good = leaf("good@hopital.test", "good", "-valid")
	p.revoked = leaf("revoked@hopital.test", "revoked", "-revoke")
	p.unk = leaf("unknown@hopital.test", "unknown", "")
	p.srv = httptest.NewServer(http.HandlerFunc(p.answer))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *ocspPeer) run(args ...string) {
	p.t.Helper()
	if out, err := exec.Command(p.openssl, args...).CombinedOutput(); err != nil {
		p.t.Errorf("openssl %v: %v\n%s", args, err, out)
	}
}

func (p *ocspPeer) answer(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	req, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	p.mu.Lock()
	signer, nmin, replace := p.signer, p.nmin, p.replace
	p.mu.Unlock()
	if replace != nil {
		w.Write(replace)
		return
	}
	w.Write(p.respond(req, signer, nmin))
}

// respond has openssl ocsp answer the DER request req.
func (p *ocspPeer) respond(req []byte, signer [2]string, nmin string) []byte {
	dir, err := os.MkdirTemp(p.dir, "req")
	if err != nil {
		p.t.Error(err)
		return nil
	}
	in, out := filepath.Join(dir, "req.der"), filepath.Join(dir, "resp.der")
	os.WriteFile(in, req, 0o600)
	p.run("ocsp", "-index", filepath.Join(p.dir, "index.txt"), "-CA", filepath.Join(p.dir, "pki", "intermediate.crt.pem"),
		"-rsigner", signer[0], "-rkey", signer[1], "-reqin", in, "-respout", out, "-nmin", nmin)
	resp, _ := os.ReadFile(out)
	return resp
}

func (p *ocspPeer) checker() *revocation.OCSP {
	return revocation.NewOCSP(&revocation.OCSPOptions{URL: p.srv.URL, Timeout: 5 * time.Second})
}

func TestOCSPOpenSSLGoodRevokedUnknown(t *testing.T) {
	p := newOCSPPeer(t)
	c := p.checker()
	now := time.Now()
	if err := c.CheckOCSP(p.good.Cert, p.pki.Intermediate, now); err != nil {
		t.Errorf("good: %v", err)
	}
	if err := c.CheckOCSP(p.revoked.Cert, p.pki.Intermediate, now); !errors.Is(err, transport.ErrRevoked) {
		t.Errorf("revoked: %v, want ErrRevoked", err)
	}
	if err := c.CheckOCSP(p.unk.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPUnknown) {
		t.Errorf("unknown: %v, want ErrOCSPUnknown", err)
	}
	n := p.requests.Load()
	if err := c.CheckOCSP(p.good.Cert, p.pki.Intermediate, now.Add(time.Minute)); err != nil {
		t.Errorf("good from the cache: %v", err)
	}
	if p.requests.Load() != n {
		t.Errorf("a cached answer was asked again")
	}
	// Past the answer's nextUpdate the cache is not used: asked again.
	if err := c.CheckOCSP(p.good.Cert, p.pki.Intermediate, now.Add(61*time.Minute)); !errors.Is(err, revocation.ErrOCSPStale) {
		t.Errorf("past nextUpdate: %v, want ErrOCSPStale (openssl answers the same validity)", err)
	}
	if p.requests.Load() != n+1 {
		t.Errorf("an expired cached answer was used")
	}
}

func TestOCSPRefusals(t *testing.T) {
	p := newOCSPPeer(t)
	now := time.Now()
	// A responder the CA did not authorise: a certificate of the CA without OCSPSigning.
	other, err := p.pki.Server("not-a-responder.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := other.WriteFiles(p.dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.signer = [2]string{crt, key}
	p.mu.Unlock()
	if err := p.checker().CheckOCSP(p.good.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPResponder) {
		t.Errorf("unauthorised responder: %v, want ErrOCSPResponder", err)
	}
	p.mu.Lock()
	p.signer = [2]string{filepath.Join(p.dir, "pki", "intermediate.crt.pem"), filepath.Join(p.dir, "pki", "intermediate.key.pem")}
	p.mu.Unlock()

	// An answer about another certificate.
	reqFor := func(l *testpki.Leaf) []byte {
		der, err := revocation.OCSPRequest(l.Cert, p.pki.Intermediate)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	p.mu.Lock()
	p.replace = p.respond(reqFor(p.revoked), p.signer, "60")
	p.mu.Unlock()
	if err := p.checker().CheckOCSP(p.good.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPWrongCert) {
		t.Errorf("answer for another certificate: %v, want ErrOCSPWrongCert", err)
	}
	// A stale answer: valid one minute, used two minutes later.
	p.mu.Lock()
	p.replace = p.respond(reqFor(p.good), p.signer, "1")
	p.mu.Unlock()
	if err := p.checker().CheckOCSP(p.good.Cert, p.pki.Intermediate, now.Add(2*time.Minute)); !errors.Is(err, revocation.ErrOCSPStale) {
		t.Errorf("stale: %v, want ErrOCSPStale", err)
	}
	// Garbage, an HTTP error, no responder.
	p.mu.Lock()
	p.replace = []byte("garbage")
	p.mu.Unlock()
	if err := p.checker().CheckOCSP(p.good.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPMalformed) {
		t.Errorf("garbage: %v, want ErrOCSPMalformed", err)
	}
	p.srv.Close()
	if err := p.checker().CheckOCSP(p.good.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPUnavailable) {
		t.Errorf("responder down: %v, want ErrOCSPUnavailable", err)
	}
	if err := revocation.NewOCSP(nil).CheckOCSP(p.good.Cert, p.pki.Intermediate, now); !errors.Is(err, revocation.ErrOCSPUnavailable) {
		t.Errorf("no OCSP address: %v, want ErrOCSPUnavailable", err)
	}
}

// TestOCSPPolicies drives the trust store's use of OCSP with openssl ocsp as the responder.
func TestOCSPPolicies(t *testing.T) {
	p := newOCSPPeer(t)
	now := time.Now()
	store := func(policy transport.OCSPPolicy, withCRL bool) *transport.TrustStore {
		s := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true, OCSP: p.checker(), OCSPPolicy: policy})
		s.AddRoot(p.pki.Root)
		s.AddIntermediate(p.pki.Intermediate)
		if withCRL {
			der, err := p.pki.CRL() // lists nothing: the revocation is known to OCSP only
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AddCRL(der); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	verify := func(s *transport.TrustStore, l *testpki.Leaf) error {
		_, err := s.Verify(l.Chain, x509.ExtKeyUsageClientAuth, now)
		return err
	}
	then := store(transport.OCSPThenCRL, false)
	if err := verify(then, p.good); err != nil {
		t.Errorf("OCSP then CRL, good, no CRL: %v", err)
	}
	if err := verify(then, p.revoked); !errors.Is(err, transport.ErrRevoked) {
		t.Errorf("OCSP then CRL, revoked: %v", err)
	}
	if err := verify(then, p.unk); !errors.Is(err, transport.ErrNoValidCRL) {
		t.Errorf("OCSP then CRL, unknown and no CRL: %v, want ErrNoValidCRL", err)
	}
	both := store(transport.OCSPAndCRL, true)
	if err := verify(both, p.revoked); !errors.Is(err, transport.ErrRevoked) {
		t.Errorf("both, revoked by OCSP only: %v", err)
	}
	if err := verify(both, p.unk); err != nil {
		t.Errorf("both, unknown to OCSP, CRL good: %v", err)
	}
	if err := verify(store(transport.OCSPOff, true), p.revoked); err != nil {
		t.Errorf("CRL only: %v (OCSP not asked)", err)
	}
}
