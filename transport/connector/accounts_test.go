package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/mssante-go/sdk/transport"
)

// downAccounts is an account store that cannot be reached.
type downAccounts struct{}

func (downAccounts) BALForCertificate(context.Context, string, *x509.Certificate) (string, error) {
	return "", errors.New("store: connection refused")
}

func (downAccounts) BALForPassword(context.Context, string, string) (string, error) {
	return "", errors.New("store: connection refused")
}

// A login whose account cannot be looked up (the mailbox store is down) is a temporary
// failure, 454 4.7.0 (RFC 4954 §6), for SASL EXTERNAL and PLAIN alike: the client retries,
// and keeps its credentials, rather than being told they are wrong.
func TestSubmissionAuthAccountsUnavailable(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	s, err := NewServer(&ServerOptions{Mode: ModeSubmission, Hostname: "mx.a.mssante.test",
		TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
		Policy: a.policy, LocalDomains: []string{a.domain}, Local: a.maildir, Queue: a.q, Audit: a.audit,
		Accounts: downAccounts{}, AllowPlain: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s).Addr().String()
	c := rawDial(t, addr, clientTLS(a.balCert, testPKI(t)))
	c.cmd("AUTH EXTERNAL =", "454 4.7.0")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bal\x00secret")), "454 4.7.0")
}
