package bal

import (
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// testPKI holds the certificates of the throw-away peers: a server certificate for
// localhost and the client certificate of the BAL bal-app@test.example.
type testPKI struct {
	pki    *testpki.PKI
	server *testpki.Leaf
	client *testpki.Leaf
	trust  *transport.TrustStore
}

const testBAL = "bal-app@test.example"

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := p.Org(testBAL, nil)
	if err != nil {
		t.Fatal(err)
	}
	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	trust.AddRoot(p.Root)
	trust.AddIntermediate(p.Intermediate)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := trust.AddCRL(crl); err != nil {
		t.Fatal(err)
	}
	return &testPKI{pki: p, server: srv, client: cli, trust: trust}
}

// clientTLS is the BAL's TLS configuration: its certificate, a trust store holding the test
// PKI (not the real IGC-Santé root) with its CRL.
func (p *testPKI) clientTLS() transport.TLSOptions {
	return transport.TLSOptions{
		Certificates: []tls.Certificate{p.client.TLSCertificate()},
		Trust:        p.trust,
		AllowTLS13:   true,
	}
}

// mailPeers is a throw-away Postfix (submission with STARTTLS or implicit TLS and a client
// certificate, DSN, local delivery to one Maildir) and a throw-away Dovecot reading that
// Maildir (IMAP STARTTLS and IMAPS, client certificate required, SASL EXTERNAL).
type mailPeers struct {
	dir         string // Postfix's folder; its CA file is pki/ca.pem
	submission  string // STARTTLS
	submissions string // implicit TLS (SMTPS)
	imap, imaps string
	maildir     string
	dovecot     *peers.Dovecot
}

// startMailPeers starts Postfix and Dovecot (internal/peers) and stops them in t.Cleanup.
// Mail for @test.example lands in one Maildir that Dovecot serves to bal-app@test.example;
// mail for any other domain bounces at once (a failure DSN), but bench.example's is thrown
// away (bench/bal).
func startMailPeers(t testing.TB, p *testPKI) *mailPeers {
	t.Helper()
	pf := peers.StartPostfix(t, &peers.PostfixOptions{
		StartTLS: true, ImplicitTLS: true, PKI: p.pki, Cert: p.server,
		DefaultTransport: "error:no such domain on this test server",
		Transports:       map[string]string{"bench.example": "discard:"},
		Extra: []string{
			"message_size_limit = 52428800",
			"virtual_mailbox_limit = 0",
			"smtpd_reject_unlisted_recipient = no",
			"bounce_queue_lifetime = 0",
		},
	})
	dv := peers.StartDovecot(t, &peers.DovecotOptions{
		PKI: p.pki, Cert: p.server, Home: filepath.Join(pf.Dir, "vmail"),
		External: []string{testBAL}, Users: map[string]string{testBAL: "secret"},
	})
	return &mailPeers{dir: pf.Dir, submission: pf.StartTLS, submissions: pf.ImplicitTLS,
		imap: dv.IMAP, imaps: dv.IMAPS, maildir: pf.MaildirPath("Maildir"), dovecot: dv}
}

func (m *mailPeers) startDovecot(t testing.TB) { m.dovecot.Start(t) }

// stopDovecot stops Dovecot and every imap process of its connected clients.
func (m *mailPeers) stopDovecot() { m.dovecot.Stop() }

// Set-up helpers of the peer tests, shared with internal/peers.
var (
	writeFile  = peers.WriteFile
	runCmd     = peers.Run
	waitListen = peers.WaitListen
	chown      = peers.Chown
)
