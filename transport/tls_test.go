package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// fixture is a test PKI with a trust store holding its root, intermediate and a fresh CRL.
type fixture struct {
	pki    *testpki.PKI
	trust  *transport.TrustStore
	server *testpki.Leaf // SERV for "localhost"
	client *testpki.Leaf // ORG/AUTH_CLI of a BAL applicative
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		f := &fixture{}
		if f.pki, fixErr = testpki.New(nil); fixErr != nil {
			return
		}
		if f.server, fixErr = f.pki.Server("localhost", nil); fixErr != nil {
			return
		}
		if f.client, fixErr = f.pki.Org("bal.app@hopital.test", nil); fixErr != nil {
			return
		}
		fix = f
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	f := *fix
	f.trust = trustFor(t, f.pki, transport.RevocationRequired)
	return &f
}

// trustFor returns a trust store with the PKI's root and intermediate and its current CRL.
func trustFor(t testing.TB, p *testpki.PKI, policy transport.RevocationPolicy) *transport.TrustStore {
	t.Helper()
	ts := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true, Revocation: policy})
	ts.AddRoot(p.Root)
	ts.AddIntermediate(p.Intermediate)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.AddCRL(crl); err != nil {
		t.Fatal(err)
	}
	return ts
}

type result struct {
	srvErr, cliErr error
	srv, cli       tls.ConnectionState
}

// handshake runs one TLS handshake over loopback between a server and a client config and
// returns both sides' errors. After the handshake the client reads, so that a refusal the server
// sends after the client's Finished (TLS 1.3 client certificates) reaches the client too.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			r.srvErr = err
			return
		}
		tc, err := transport.Server(ctx, c, srvCfg)
		if err != nil {
			r.srvErr = err
			return
		}
		r.srv = tc.ConnectionState()
		tc.Write([]byte("ok"))
		tc.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cliCfg)
	r.cliErr = tc.HandshakeContext(ctx)
	if r.cliErr == nil {
		r.cli = tc.ConnectionState()
		_, r.cliErr = io.ReadAll(tc)
	}
	tc.Close()
	<-done
	return r
}

func (f *fixture) serverConfig(t testing.TB, o *transport.TLSOptions) *tls.Config {
	t.Helper()
	var opts transport.TLSOptions
	if o != nil {
		opts = *o
	}
	if opts.Trust == nil {
		opts.Trust = f.trust
	}
	opts.Certificates = []tls.Certificate{f.server.TLSCertificate()}
	cfg, err := transport.ServerConfig(nil, &opts)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// plainClient is a crypto/tls client trusting the test root, with the given client certificate.
func (f *fixture) plainClient(l *testpki.Leaf) *tls.Config {
	cfg := &tls.Config{ServerName: "localhost", RootCAs: f.pki.Roots(), MaxVersion: tls.VersionTLS12}
	if l != nil {
		// Always send it: crypto/tls would otherwise skip a certificate whose issuer the
		// server's CertificateRequest does not name, and a hostile client sends anything.
		tc := l.TLSCertificate()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return cfg
}

func TestServerHandshakeMatrix(t *testing.T) {
	f := newFixture(t)
	leaf := func(o testpki.LeafOptions) *testpki.Leaf {
		l, err := f.pki.Org("variant.hopital.test", &o)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	revoked := leaf(testpki.LeafOptions{Revoked: true})
	forged, err := f.pki.Leaf(testpki.ProfileOrgAuth, f.pki.Intermediate.Subject, &testpki.LeafOptions{SelfSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	trust := trustFor(t, f.pki, transport.RevocationRequired) // CRL made after the revocation

	tls11 := f.plainClient(f.client)
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	rsaOnly := f.plainClient(f.client)
	rsaOnly.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}

	cases := []struct {
		name   string
		client *tls.Config
		want   error // nil = handshake passes
	}{
		{"valid", f.plainClient(f.client), nil},
		{"unknown CA", f.plainClient(leaf(testpki.LeafOptions{ForeignCA: true})), transport.ErrUnknownAuthority},
		{"expired", f.plainClient(leaf(testpki.LeafOptions{Expired: true})), transport.ErrExpired},
		{"not yet valid", f.plainClient(leaf(testpki.LeafOptions{NotYetValid: true})), transport.ErrNotYetValid},
		{"revoked", f.plainClient(revoked), transport.ErrRevoked},
		{"wrong EKU", f.plainClient(leaf(testpki.LeafOptions{WrongEKU: true})), transport.ErrWrongEKU},
		{"no client certificate", f.plainClient(nil), transport.ErrNoClientCert},
		{"TLS 1.1 client", tls11, transport.ErrProtocolVersion},
		{"suites outside the list", rsaOnly, transport.ErrCipherSuite},
		{"self-signed with the intermediate's name", f.plainClient(forged), transport.ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, f.serverConfig(t, &transport.TLSOptions{Trust: trust}), tc.client)
			if tc.want == nil {
				if r.srvErr != nil || r.cliErr != nil {
					t.Fatalf("server: %v; client: %v", r.srvErr, r.cliErr)
				}
				dn, err := transport.PeerDN(r.srv)
				if err != nil || dn != transport.SubjectDN(f.client.Cert) {
					t.Fatalf("server PeerDN = %q, %v", dn, err)
				}
				if r.srv.Version != tls.VersionTLS12 {
					t.Errorf("version %x", r.srv.Version)
				}
				return
			}
			if !errors.Is(r.srvErr, tc.want) {
				t.Fatalf("server error = %v, want %v", r.srvErr, tc.want)
			}
			if r.cliErr == nil {
				t.Fatal("client saw no error")
			}
			// Each refusal is exactly one reason.
			for _, other := range cases {
				if other.want != nil && other.want != tc.want && errors.Is(r.srvErr, other.want) {
					t.Errorf("error %v also matches %v", r.srvErr, other.want)
				}
			}
		})
	}
}

func TestCertErrorAs(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		o    testpki.LeafOptions
		want error
	}{
		{testpki.LeafOptions{Expired: true}, transport.ErrExpired},
		{testpki.LeafOptions{ForeignCA: true}, transport.ErrUnknownAuthority},
	} {
		l, err := f.pki.Org("refused.hopital.test", &tc.o)
		if err != nil {
			t.Fatal(err)
		}
		r := handshake(t, f.serverConfig(t, nil), f.plainClient(l))
		var ce *transport.CertError
		if !errors.As(r.srvErr, &ce) {
			t.Fatalf("err %v is not a *CertError", r.srvErr)
		}
		// The error names the refused leaf, not the CA that x509 stopped at.
		if ce.Reason != tc.want || ce.Subject != transport.SubjectDN(l.Cert) {
			t.Fatalf("CertError %+v", ce)
		}
	}
}

func TestRevocationPolicy(t *testing.T) {
	f := newFixture(t)
	noCRL := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	noCRL.AddRoot(f.pki.Root)
	r := handshake(t, f.serverConfig(t, &transport.TLSOptions{Trust: noCRL}), f.plainClient(f.client))
	if !errors.Is(r.srvErr, transport.ErrNoValidCRL) {
		t.Fatalf("no CRL: server error = %v, want ErrNoValidCRL", r.srvErr)
	}

	best := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true, Revocation: transport.RevocationBestEffort})
	best.AddRoot(f.pki.Root)
	if r := handshake(t, f.serverConfig(t, &transport.TLSOptions{Trust: best}), f.plainClient(f.client)); r.srvErr != nil {
		t.Fatalf("best effort without CRL: %v", r.srvErr)
	}

	// A CRL past its nextUpdate is not valid: fail closed again.
	now := time.Now()
	stale, err := f.pki.CRLAt(now.Add(-50*time.Minute), now.Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	st := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	st.AddRoot(f.pki.Root)
	st.AddIntermediate(f.pki.Intermediate)
	if err := st.AddCRL(stale); err != nil {
		t.Fatal(err)
	}
	r = handshake(t, f.serverConfig(t, &transport.TLSOptions{Trust: st}), f.plainClient(f.client))
	if !errors.Is(r.srvErr, transport.ErrNoValidCRL) {
		t.Fatalf("stale CRL: server error = %v, want ErrNoValidCRL", r.srvErr)
	}
	// ... and valid again at a time inside its validity: the clock is injectable.
	r = handshake(t, f.serverConfig(t, &transport.TLSOptions{Trust: st, Time: func() time.Time { return now.Add(-30 * time.Minute) }}), f.plainClient(f.client))
	if r.srvErr != nil {
		t.Fatalf("stale CRL inside its validity: %v", r.srvErr)
	}
}

func TestOptionalClientCert(t *testing.T) {
	f := newFixture(t)
	cfg := f.serverConfig(t, &transport.TLSOptions{OptionalClientCert: true})
	if r := handshake(t, cfg, f.plainClient(nil)); r.srvErr != nil || r.cliErr != nil {
		t.Fatalf("no cert, optional: server %v, client %v", r.srvErr, r.cliErr)
	}
	l, err := f.pki.Org("bad.hopital.test", &testpki.LeafOptions{ForeignCA: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, cfg, f.plainClient(l)); !errors.Is(r.srvErr, transport.ErrUnknownAuthority) {
		t.Fatalf("bad cert, optional: %v", r.srvErr)
	}
}

func TestTLS13Option(t *testing.T) {
	f := newFixture(t)
	cli := f.plainClient(f.client)
	cli.MaxVersion = tls.VersionTLS13
	r := handshake(t, f.serverConfig(t, nil), cli)
	if r.srvErr != nil || r.srv.Version != tls.VersionTLS12 {
		t.Fatalf("default server: %v, version %x (want TLS 1.2)", r.srvErr, r.srv.Version)
	}
	r = handshake(t, f.serverConfig(t, &transport.TLSOptions{AllowTLS13: true}), cli)
	if r.srvErr != nil || r.srv.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3 server: %v, version %x", r.srvErr, r.srv.Version)
	}
	// TLS 1.3 checks the client certificate the same way.
	bad, err := f.pki.Org("expired13.hopital.test", &testpki.LeafOptions{Expired: true})
	if err != nil {
		t.Fatal(err)
	}
	cli13 := f.plainClient(bad)
	cli13.MaxVersion = tls.VersionTLS13
	r = handshake(t, f.serverConfig(t, &transport.TLSOptions{AllowTLS13: true}), cli13)
	if !errors.Is(r.srvErr, transport.ErrExpired) || r.cliErr == nil {
		t.Fatalf("TLS 1.3 expired client: server %v, client %v", r.srvErr, r.cliErr)
	}
}

func TestCBCOption(t *testing.T) {
	f := newFixture(t)
	cli := f.plainClient(f.client)
	cli.CipherSuites = []uint16{transport.CBCCipherSuite}
	if r := handshake(t, f.serverConfig(t, nil), cli); !errors.Is(r.srvErr, transport.ErrCipherSuite) {
		t.Fatalf("CBC by default: %v", r.srvErr)
	}
	r := handshake(t, f.serverConfig(t, &transport.TLSOptions{AllowCBC: true}), cli)
	if r.srvErr != nil || r.srv.CipherSuite != transport.CBCCipherSuite {
		t.Fatalf("AllowCBC: %v, suite %x", r.srvErr, r.srv.CipherSuite)
	}
}

// TestClientMatrix checks the client side: our Dialer refuses bad server certificates with
// typed errors.
func TestClientMatrix(t *testing.T) {
	f := newFixture(t)
	srvLeaf := func(host string, o testpki.LeafOptions) *testpki.Leaf {
		l, err := f.pki.Server(host, &o)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	revoked := srvLeaf("localhost", testpki.LeafOptions{Revoked: true})
	trust := trustFor(t, f.pki, transport.RevocationRequired)
	orgAsServer, err := f.pki.Leaf(testpki.ProfileOrgAuth, f.pki.Subject("localhost", nil), &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		leaf *testpki.Leaf
		want error
	}{
		{"valid", f.server, nil},
		{"unknown CA", srvLeaf("localhost", testpki.LeafOptions{ForeignCA: true}), transport.ErrUnknownAuthority},
		{"expired", srvLeaf("localhost", testpki.LeafOptions{Expired: true}), transport.ErrExpired},
		{"not yet valid", srvLeaf("localhost", testpki.LeafOptions{NotYetValid: true}), transport.ErrNotYetValid},
		{"revoked", revoked, transport.ErrRevoked},
		{"wrong EKU", orgAsServer, transport.ErrWrongEKU},
		{"other host", srvLeaf("mx.other.test", testpki.LeafOptions{}), transport.ErrHostname},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			// A permissive server (plain crypto/tls) presenting the certificate under test.
			srv := &tls.Config{Certificates: []tls.Certificate{tc.leaf.TLSCertificate()}}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := tls.Server(c, srv)
				tc.Handshake()
				tc.Close()
			}()
			d := &transport.Dialer{Options: transport.TLSOptions{
				Trust: trust, Certificates: []tls.Certificate{f.client.TLSCertificate()},
			}}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				dn, err := transport.PeerDN(conn.ConnectionState())
				if err != nil || dn != transport.SubjectDN(f.server.Cert) {
					t.Fatalf("PeerDN = %q, %v", dn, err)
				}
				conn.Close()
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ce *transport.CertError
			if !errors.As(err, &ce) {
				t.Fatalf("err %v is not a *CertError", err)
			}
		})
	}
}

func TestDialerVerifyPeer(t *testing.T) {
	f := newFixture(t)
	srv := f.serverConfig(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc, err := transport.Server(context.Background(), c, srv)
				if err == nil {
					tc.Close()
				}
			}()
		}
	}()
	errNotListed := errors.New("DN not listed")
	listed := transport.SubjectDN(f.server.Cert)
	for _, tc := range []struct {
		dn   string
		want error
	}{
		{listed, nil},
		{"CN=localhost,OU=99999999999999,O=AUTRE,ST=Paris (75),C=FR", errNotListed},
	} {
		d := &transport.Dialer{Options: transport.TLSOptions{
			Trust: f.trust, Certificates: []tls.Certificate{f.client.TLSCertificate()},
			VerifyPeer: func(chain []*x509.Certificate) error {
				if !transport.EqualDN(transport.SubjectDN(chain[0]), tc.dn) {
					return errNotListed
				}
				return nil
			},
		}}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
		if !errors.Is(err, tc.want) {
			t.Fatalf("dn %q: err = %v, want %v", tc.dn, err, tc.want)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// TestDialCancelsStuckHandshake: a server that accepts TCP and never answers; cancelling the
// context ends the dial with the context's error.
func TestDialCancelsStuckHandshake(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c // keep it open, say nothing
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c := <-held
		cancel()
		t.Cleanup(func() { c.Close() })
	}()
	d := &transport.Dialer{Options: transport.TLSOptions{Trust: f.trust}}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_, err = d.DialContext(ctx, "tcp", net.JoinHostPort("localhost", port))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestConfigsAreCloned(t *testing.T) {
	f := newFixture(t)
	base := &tls.Config{ServerName: "base.test", NextProtos: []string{"smtp"}}
	srv, err := transport.ServerConfig(base, &transport.TLSOptions{Trust: f.trust, Certificates: []tls.Certificate{f.server.TLSCertificate()}})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := transport.ClientConfig(base, "mx.test", &transport.TLSOptions{Trust: f.trust})
	if err != nil {
		t.Fatal(err)
	}
	if base.MinVersion != 0 || base.CipherSuites != nil || base.VerifyConnection != nil || base.ServerName != "base.test" || base.ClientAuth != tls.NoClientCert {
		t.Fatal("base config was mutated")
	}
	if srv.MinVersion != tls.VersionTLS12 || srv.MaxVersion != tls.VersionTLS12 || srv.ClientAuth != tls.RequestClientCert || len(srv.NextProtos) != 1 {
		t.Fatalf("server config %+v", srv)
	}
	if cli.ServerName != "mx.test" || cli.MaxVersion != tls.VersionTLS12 || len(cli.CipherSuites) != 2 {
		t.Fatalf("client config %+v", cli)
	}
	if _, err := transport.ClientConfig(&tls.Config{InsecureSkipVerify: true}, "mx.test", nil); err == nil {
		t.Fatal("InsecureSkipVerify accepted")
	}
	withHook := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }}
	if _, err := transport.ServerConfig(withHook, &transport.TLSOptions{Trust: f.trust, Certificates: []tls.Certificate{f.server.TLSCertificate()}}); err == nil {
		t.Fatal("base GetConfigForClient accepted")
	}
	if _, err := transport.ServerConfig(nil, &transport.TLSOptions{Trust: f.trust}); err == nil {
		t.Fatal("server config without certificate accepted")
	}
	if _, err := transport.ClientConfig(nil, "", nil); err == nil {
		t.Fatal("client config without server name accepted")
	}
}

// TestClientClock: the client verifies the server at its injected time.
func TestClientClock(t *testing.T) {
	f := newFixture(t)
	srv := f.serverConfig(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if tc, err := transport.Server(context.Background(), c, srv); err == nil {
					tc.Close()
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{f.server.Cert.NotAfter.Add(time.Hour), transport.ErrExpired},
		{f.server.Cert.NotBefore.Add(-time.Hour), transport.ErrNotYetValid},
	} {
		d := &transport.Dialer{Options: transport.TLSOptions{
			Trust: f.trust, Certificates: []tls.Certificate{f.client.TLSCertificate()},
			Time: func() time.Time { return tc.at },
		}}
		_, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
		if !errors.Is(err, tc.want) {
			t.Fatalf("at %v: err = %v, want %v", tc.at, err, tc.want)
		}
	}
}

// A client that cannot negotiate reads the alert crypto/tls sends when negotiation fails
// (protocol_version, handshake_failure), not internal_error, while the server still gets the
// typed error.
func TestServerRefusalAlert(t *testing.T) {
	f := newFixture(t)
	tls11 := f.plainClient(f.client)
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	tls13 := f.plainClient(f.client)
	tls13.MinVersion, tls13.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	rsaOnly := f.plainClient(f.client)
	rsaOnly.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
	for _, tc := range []struct {
		name    string
		client  *tls.Config
		srvErr  error
		cliText string
	}{
		{"TLS 1.1", tls11, transport.ErrProtocolVersion, "protocol version not supported"},
		{"TLS 1.3 only", tls13, transport.ErrProtocolVersion, "protocol version not supported"},
		{"no common suite", rsaOnly, transport.ErrCipherSuite, "handshake failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, f.serverConfig(t, nil), tc.client)
			if !errors.Is(r.srvErr, tc.srvErr) || r.cliErr == nil || !strings.Contains(r.cliErr.Error(), tc.cliText) {
				t.Fatalf("server: %v; client: %v, want %q", r.srvErr, r.cliErr, tc.cliText)
			}
		})
	}
}
