package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/revocation"
)

// clock is an injectable, settable clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }

// crlServer serves body with an ETag and counts the 304s it answers.
type crlServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	status      int
	delay       time.Duration
	notModified atomic.Int32
}

func newCRLServer(t *testing.T) *crlServer {
	s := &crlServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, status, delay := s.body, s.status, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if status == http.StatusOK && r.Header.Get("If-None-Match") == etag {
			s.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if status == http.StatusOK {
			w.Header().Set("ETag", etag)
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) serve(body []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status = body, status
}

type fixture struct {
	pki           *testpki.PKI
	clk           *clock
	store         *transport.TrustStore
	good, revoked *testpki.Leaf
	srv           *crlServer
	url           string
	metrics       *metrics.Metrics
	f             *revocation.Fetcher
	log           *testenv.Buffer
	opts          revocation.Options
}

func newFixture(t *testing.T, opts *revocation.Options) *fixture {
	t.Helper()
	x := &fixture{clk: newClock(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)), log: &testenv.Buffer{}}
	var err error
	x.pki, err = testpki.New(&testpki.Options{Now: x.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	x.good, err = x.pki.Org("bal-app@hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	x.revoked, err = x.pki.Org("revoked@hopital.test", &testpki.LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	x.store = transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true, CRLGrace: time.Hour})
	x.store.AddRoot(x.pki.Root)
	x.store.AddIntermediate(x.pki.Intermediate)
	x.srv = newCRLServer(t)
	x.url = x.srv.URL + "/ACI-EL-ORG.crl"
	if opts != nil {
		x.opts = *opts
	}
	x.opts.Stores = []*transport.TrustStore{x.store}
	if x.opts.URLs == nil && x.opts.Certificates == nil {
		x.opts.URLs = []string{x.url}
	}
	x.opts.Now = x.clk.now
	x.opts.Logger = slog.New(slog.NewTextHandler(x.log, nil))
	x.start(t)
	return x
}

// start (re)creates the fetcher, as a restart of the node does.
func (x *fixture) start(t *testing.T) {
	t.Helper()
	var err error
	x.f, err = revocation.New(&x.opts)
	if err != nil {
		t.Fatal(err)
	}
	x.metrics = metrics.New()
	if err := x.metrics.Register(x.f); err != nil {
		t.Fatal(err)
	}
}

func (x *fixture) crl(t *testing.T) []byte {
	t.Helper()
	der, err := x.pki.CRL()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// verify checks leaf as a client certificate at the fixture's time.
func (x *fixture) verify(leaf *testpki.Leaf) error {
	_, err := x.store.Verify(leaf.Chain, x509.ExtKeyUsageClientAuth, x.clk.now())
	return err
}

func (x *fixture) errors(reason string) float64 {
	return x.metrics.Counter(`mssante_crl_fetch_errors_total{reason="` + reason + `",url="` + x.url + `"}`)
}

func TestCRLFetchedAppliedAndConditional(t *testing.T) {
	x := newFixture(t, nil)
	if err := x.verify(x.good); !errors.Is(err, transport.ErrNoValidCRL) {
		t.Fatalf("before any fetch: %v, want ErrNoValidCRL", err)
	}
	x.srv.serve(x.crl(t), http.StatusOK)
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := x.verify(x.good); err != nil {
		t.Fatalf("good leaf: %v", err)
	}
	if err := x.verify(x.revoked); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("revoked leaf: %v, want ErrRevoked", err)
	}
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if x.srv.notModified.Load() != 1 {
		t.Errorf("second fetch: %d answers 304, want 1 (conditional GET)", x.srv.notModified.Load())
	}
	h := x.f.Held()
	if len(h) != 1 || h[0].CA != transport.SubjectDN(x.pki.Intermediate) || h[0].Revoked != 1 {
		t.Fatalf("Held = %+v", h)
	}
	if !strings.Contains(x.log.String(), "revocation: CRL updated") || !strings.Contains(x.log.String(), "ORGANISATIONS") {
		t.Errorf("log does not name the CA:\n%s", x.log)
	}
	text := scrape(t, x.metrics)
	for _, want := range []string{"mssante_crl_next_update_timestamp_seconds{ca=", "mssante_crl_last_fetch_timestamp_seconds{url=\"" + x.url} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// otherCA returns a self-signed CA named name with its key.
func otherCA(t *testing.T, pki *testpki.PKI, sameName bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Unix(0, 0), NotAfter: time.Now().AddDate(50, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	tmpl.Subject.CommonName = "OTHER TEST CA"
	if sameName {
		tmpl.RawSubject = pki.Intermediate.RawSubject
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func foreignCRL(t *testing.T, x *fixture, sameName bool) []byte {
	ca, key := otherCA(t, x.pki, sameName)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1000),
		ThisUpdate: x.clk.now().Add(-time.Minute), NextUpdate: x.clk.now().AddDate(0, 0, 7)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCRLRefusals drives each bad answer after a good CRL is held: each is refused with its
// named error and counted, and the CRL held stays in use.
func TestCRLRefusals(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		want   error
		setup  func(t *testing.T, x *fixture)
	}{
		{"404", "http_status", revocation.ErrHTTPStatus, func(t *testing.T, x *fixture) { x.srv.serve([]byte("no"), 404) }},
		{"500", "http_status", revocation.ErrHTTPStatus, func(t *testing.T, x *fixture) { x.srv.serve(nil, 500) }},
		{"truncated", "malformed", revocation.ErrMalformed, func(t *testing.T, x *fixture) {
			der := x.crl(t)
			x.srv.serve(der[:len(der)/2], 200)
		}},
		{"garbage PEM", "malformed", revocation.ErrMalformed, func(t *testing.T, x *fixture) {
			x.srv.serve(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), 200)
		}},
		{"oversized", "too_large", revocation.ErrTooLarge, func(t *testing.T, x *fixture) {
			x.srv.serve(make([]byte, 64<<10+1), 200)
		}},
		{"signed by another CA with the same name", "bad_signature", revocation.ErrBadSignature, func(t *testing.T, x *fixture) {
			x.srv.serve(foreignCRL(t, x, true), 200)
		}},
		{"unknown issuer", "unknown_issuer", revocation.ErrUnknownIssuer, func(t *testing.T, x *fixture) {
			x.srv.serve(foreignCRL(t, x, false), 200)
		}},
		{"rollback", "rollback", revocation.ErrRollback, func(t *testing.T, x *fixture) {
			old, err := x.pki.CRLAt(x.clk.now().Add(-time.Hour), x.clk.now().AddDate(0, 0, 7))
			if err != nil {
				t.Fatal(err)
			}
			x.srv.serve(x.crl(t), 200) // newer than old
			if err := x.f.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			x.srv.serve(old, 200)
		}},
		{"stale", "stale", revocation.ErrStale, func(t *testing.T, x *fixture) {
			stale, err := x.pki.CRLAt(x.clk.now().AddDate(0, 0, -8), x.clk.now().Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			x.srv.serve(stale, 200)
		}},
		{"slow", "fetch", revocation.ErrFetch, func(t *testing.T, x *fixture) {
			x.srv.mu.Lock()
			x.srv.delay = 5 * time.Second
			x.srv.mu.Unlock()
			x.srv.serve([]byte("late"), 200)
		}},
		{"down", "fetch", revocation.ErrFetch, func(t *testing.T, x *fixture) { x.srv.Close() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newFixture(t, &revocation.Options{MaxSize: 64 << 10, Timeout: 300 * time.Millisecond})
			x.srv.serve(x.crl(t), 200)
			if err := x.f.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			x.srv.serve(x.crl(t), 200) // a newer CRL, so the conditional GET does not hide the case
			c.setup(t, x)
			start := time.Now()
			err := x.f.Refresh(context.Background())
			if !errors.Is(err, c.want) {
				t.Fatalf("Refresh = %v, want %v", err, c.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("refusal took %v", d)
			}
			if n := x.errors(c.reason); n != 1 {
				t.Errorf("mssante_crl_fetch_errors_total{reason=%q} = %v, want 1", c.reason, n)
			}
			if err := x.verify(x.revoked); !errors.Is(err, transport.ErrRevoked) {
				t.Errorf("after the refusal the revoked leaf gives %v, want ErrRevoked (CRL held kept)", err)
			}
			if err := x.verify(x.good); err != nil {
				t.Errorf("after the refusal the good leaf gives %v", err)
			}
		})
	}
}

func TestCRLLDAPOnlyRefused(t *testing.T) {
	x := newFixture(t, &revocation.Options{URLs: []string{"ldap://annuaire.test/cn=crl?certificateRevocationList"}})
	err := x.f.Refresh(context.Background())
	if !errors.Is(err, revocation.ErrUnsupportedScheme) {
		t.Fatalf("Refresh = %v, want ErrUnsupportedScheme", err)
	}
}

// TestCRLDistributionPointsOfCertificates fetches the CRL from the distribution point written
// in our own certificate, an LDAP point beside it being skipped.
func TestCRLDistributionPointsOfCertificates(t *testing.T) {
	x := newFixture(t, &revocation.Options{Certificates: []*x509.Certificate{}})
	own, err := x.pki.Server("mx.hopital.test", &testpki.LeafOptions{
		CRLDistributionPoints: []string{"ldap://annuaire.test/cn=crl", x.url}})
	if err != nil {
		t.Fatal(err)
	}
	x.opts.Certificates = []*x509.Certificate{own.Cert}
	x.opts.URLs = nil
	x.start(t)
	if got := x.f.URLsToFetch(); len(got) != 1 || got[0] != x.url {
		t.Fatalf("URLsToFetch = %q, want [%s]", got, x.url)
	}
	x.srv.serve(x.crl(t), 200)
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := x.verify(x.revoked); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("revoked leaf: %v", err)
	}
}

// TestCRLPersistedSurvivesRestartAndBadDownload restarts the fetcher on an empty trust store
// while the server answers garbage: the last good CRL is loaded from Dir and stays in use.
func TestCRLPersistedSurvivesRestartAndBadDownload(t *testing.T) {
	testenv.Umask0(t)
	dir := filepath.Join(t.TempDir(), "crl")
	x := newFixture(t, &revocation.Options{Dir: dir})
	x.srv.serve(x.crl(t), 200)
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.crl"))
	if len(files) != 1 {
		t.Fatalf("persisted files: %q", files)
	}
	for _, p := range append(files, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group/other access", p, fi.Mode().Perm())
		}
	}
	// Restart: a new trust store, the server now broken.
	x.store = transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	x.store.AddRoot(x.pki.Root)
	x.store.AddIntermediate(x.pki.Intermediate)
	x.opts.Stores = []*transport.TrustStore{x.store}
	x.start(t)
	if err := x.verify(x.revoked); !errors.Is(err, transport.ErrRevoked) {
		t.Fatalf("after restart: %v, want ErrRevoked from the persisted CRL", err)
	}
	x.srv.serve([]byte("garbage"), 200)
	if err := x.f.Refresh(context.Background()); !errors.Is(err, revocation.ErrMalformed) {
		t.Fatalf("Refresh = %v", err)
	}
	if err := x.verify(x.good); err != nil {
		t.Fatalf("good leaf after a bad download: %v", err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "*.crl"))
	data, err := os.ReadFile(files[0])
	if err != nil || len(data) < 100 {
		t.Fatalf("persisted CRL overwritten by the bad download: %d bytes, %v", len(data), err)
	}
}

// TestCRLGraceThenFailClosed: past nextUpdate the CRL is used for the grace, then the store
// refuses every certificate of the CA and the fetcher says so at error level.
func TestCRLGraceThenFailClosed(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.serve(x.crl(t), 200) // nextUpdate in 7 days
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	x.srv.Close()
	x.clk.set(x.clk.now().AddDate(0, 0, 7).Add(30 * time.Minute)) // within the hour of grace
	x.f.Refresh(context.Background())
	if err := x.verify(x.good); err != nil {
		t.Fatalf("within the grace: %v", err)
	}
	if strings.Contains(x.log.String(), "level=ERROR") {
		t.Errorf("error logged within the grace:\n%s", x.log)
	}
	x.clk.set(x.clk.now().Add(time.Hour))
	x.f.Refresh(context.Background())
	if err := x.verify(x.good); !errors.Is(err, transport.ErrNoValidCRL) {
		t.Fatalf("past the grace: %v, want ErrNoValidCRL (fail closed)", err)
	}
	if !strings.Contains(x.log.String(), "level=ERROR") || !strings.Contains(x.log.String(), "past its next update") {
		t.Errorf("no error line past the grace:\n%s", x.log)
	}
	if d := x.f.NextDelay(); d > revocation.DefaultRetryInterval {
		t.Errorf("NextDelay past nextUpdate = %v, want at most the retry interval", d)
	}
}

func TestCRLNextDelay(t *testing.T) {
	x := newFixture(t, nil)
	if d := x.f.NextDelay(); d < 21*time.Hour || d > 27*time.Hour {
		t.Errorf("NextDelay without CRL = %v, want about a day", d)
	}
	der, err := x.pki.CRLAt(x.clk.now().Add(-time.Hour), x.clk.now().Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	x.srv.serve(der, 200)
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := x.f.NextDelay(); d != time.Hour {
		t.Errorf("NextDelay with nextUpdate in 2h = %v, want 1h", d)
	}
	x.srv.serve(nil, 500)
	x.f.Refresh(context.Background())
	if d := x.f.NextDelay(); d != revocation.DefaultRetryInterval {
		t.Errorf("NextDelay after a failure = %v, want %v", d, revocation.DefaultRetryInterval)
	}
}

// TestCRLRunTrigger: Run fetches at start and again on Trigger.
func TestCRLRunTrigger(t *testing.T) {
	x := newFixture(t, nil)
	x.srv.serve(x.crl(t), 200)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.f.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return x.verify(x.good) == nil })
	newer := x.crl(t)
	x.srv.serve(newer, 200)
	x.f.Trigger()
	waitFor(t, func() bool { h := x.f.Held(); return len(h) == 1 && h[0].Number == "2" })
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met in 10s")
}

// TestCRLLearnedFromPeer: a verified peer whose CA has no CRL gives its distribution point to
// the fetcher (through the store's OnNoCRL), which fetches it at the next pass.
func TestCRLLearnedFromPeer(t *testing.T) {
	x := newFixture(t, &revocation.Options{Certificates: []*x509.Certificate{}})
	peer, err := x.pki.Org("peer@clinique.test", &testpki.LeafOptions{CRLDistributionPoints: []string{x.url}})
	if err != nil {
		t.Fatal(err)
	}
	x.store.OnNoCRL(x.f.Learn)
	x.srv.serve(x.crl(t), 200)
	if err := x.verify(peer); !errors.Is(err, transport.ErrNoValidCRL) {
		t.Fatalf("before: %v, want ErrNoValidCRL", err)
	}
	if got := x.f.URLsToFetch(); len(got) != 1 || got[0] != x.url {
		t.Fatalf("URLsToFetch = %q, want the peer's distribution point", got)
	}
	if err := x.f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := x.verify(peer); err != nil {
		t.Fatalf("after the pass: %v", err)
	}
	// An unverified certificate (self-signed, same name as a peer) teaches nothing.
	bogus, err := x.pki.Org("bogus@clinique.test", &testpki.LeafOptions{SelfSigned: true,
		CRLDistributionPoints: []string{"http://127.0.0.1:1/elsewhere.crl"}})
	if err != nil {
		t.Fatal(err)
	}
	x.verify(bogus)
	if got := x.f.URLsToFetch(); len(got) != 1 {
		t.Fatalf("URLsToFetch after an unverified certificate = %q", got)
	}
}
