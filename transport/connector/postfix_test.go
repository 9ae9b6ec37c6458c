package connector

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// writeLeafFiles writes l's chain and key as PEM files, and the CA file of p.
func writeLeafFiles(t *testing.T, dir, base string, l *testpki.Leaf, p *testpki.PKI) (crt, key, ca string) {
	t.Helper()
	crt, key, err := l.WriteFiles(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, append(p.RootPEM(), p.IntermediatePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return crt, key, ca
}

// startPostfix starts a throw-away Postfix (internal/peers) for domain: an inbound
// mutual-TLS listener (client certificate required), a plaintext loopback listener for
// injecting mail, a virtual Maildir for its domain, and the domains of routes ("domain" →
// "127.0.0.1:port") relayed over mutual TLS with its certificate, which it returns.
func startPostfix(t *testing.T, domain string, routes map[string]string) (*peers.Postfix, *testpki.Leaf) {
	t.Helper()
	p := testPKI(t)
	cert := must(t)(p.Server("mx."+domain, &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
	transports := map[string]string{}
	for d, addr := range routes {
		transports[d] = peers.Relay(addr)
	}
	pf := peers.StartPostfix(t, &peers.PostfixOptions{
		Domain: domain, Plain: true, StartTLS: true, PKI: p, Cert: cert, ClientCert: cert,
		Transports: transports, RetryDelay: time.Second,
		Extra: []string{"smtpd_forbid_bare_newline = yes"},
	})
	return pf, cert
}

// swaks runs swaks with args and returns its transcript.
func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Require(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Interop with a real Postfix in both directions: Postfix relays to our relay listener with its
// client certificate, we deliver to Postfix with ours; swaks is an external client of ours.
func TestPostfixInterop(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	domain := "postfix.mssante.test"
	pf, pfCert := startPostfix(t, domain, map[string]string{"a.mssante.test": a.relayAddr})
	_, plainPort, _ := strings.Cut(pf.Plain, ":")
	l := trustWith(t, a, domain, transport.SubjectDN(pfCert.Cert))
	_ = l
	a.delivery.opts.Routes = map[string]string{domain: pf.StartTLS}

	// 1. Postfix → us: inject in Postfix (plaintext loopback), Postfix relays to our relay.
	out, err := swaks(t, "--server", "127.0.0.1", "--port", plainPort,
		"--from", "sender@"+domain, "--to", "dr@a.mssante.test", "--header", "Subject: from-postfix")
	if err != nil {
		t.Fatalf("swaks to postfix: %v\n%s", err, out)
	}
	waitFor(t, "Postfix relayed to us", func() bool { return a.count("dr@a.mssante.test") == 1 }, pf.Log)
	got := a.read(t, "dr@a.mssante.test")[0]
	if !strings.Contains(got, "Subject: from-postfix") || !strings.Contains(got, "by mx.a.mssante.test with ESMTPS") {
		t.Fatalf("message from Postfix:\n%s", got)
	}

	// 2. us → Postfix: our BAL submits, our delivery presents our certificate to Postfix.
	if got := submit(t, a, []string{"someone@" + domain}, msg(a.bal, "someone@"+domain, "to-postfix"), nil); got != "ok" {
		t.Fatalf("submit: %s", got)
	}
	waitFor(t, "delivered into Postfix", func() bool { return len(pf.Maildir("Maildir")) == 1 }, pf.Log)
	if m := pf.Maildir("Maildir")[0]; !strings.Contains(m, "Subject: to-postfix") || !strings.Contains(m, `(Client CN "mx.a.mssante.test"`) {
		t.Fatalf("message in Postfix:\n%s", m)
	}

	// 3. Postfix presenting a certificate whose DN is not listed for its domain: refused by us
	// with 550 5.7.1, which Postfix turns into a bounce.
	trustWith(t, a, domain, "CN=mx.elsewhere.test,O=X,C=FR")
	out, err = swaks(t, "--server", "127.0.0.1", "--port", plainPort,
		"--from", "sender@"+domain, "--to", "dr@a.mssante.test", "--header", "Subject: unlisted")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, "Postfix bounced on our 550 5.7.1", func() bool {
		return strings.Contains(pf.Log(), "550 5.7.1 Client certificate not authorised for the sender domain")
	}, pf.Log)
	if a.count("dr@a.mssante.test") != 1 {
		t.Fatal("unlisted operator's message delivered")
	}
}

// swaks as an external client of our relay listener, with and without a client certificate.
func TestSwaksClient(t *testing.T) {
	testenv.Require(t, "swaks")
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	dir := t.TempDir()
	crt, key, ca := writeLeafFiles(t, dir, "client", a.server, p)
	host, port, _ := strings.Cut(b.relayAddr, ":")
	base := []string{"--server", host, "--port", port, "--from", "x@a.mssante.test", "--to", "dr@b.mssante.test", "--tls", "--tls-verify", "--tls-ca-path", ca, "--tls-sni", "localhost"}
	out, err := swaks(t, append(base, "--tls-cert", crt, "--tls-key", key)...)
	if err != nil || !strings.Contains(out, "<~  250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks with certificate: %v\n%s", err, out)
	}
	out, _ = swaks(t, base...)
	if !strings.Contains(out, "<~* 530 5.7.0 Client certificate required") {
		t.Fatalf("swaks without certificate:\n%s", out)
	}
	out, _ = swaks(t, "--server", host, "--port", port, "--from", "x@a.mssante.test", "--to", "dr@b.mssante.test")
	if !strings.Contains(out, "<** 530 5.7.0 Must issue a STARTTLS command first") {
		t.Fatalf("swaks without TLS:\n%s", out)
	}
	// Submission with AUTH PLAIN over STARTTLS (swaks cannot do EXTERNAL), then a spoofed sender.
	host, port, _ = strings.Cut(a.subAddr, ":")
	sub := []string{"--server", host, "--port", port, "--to", "dr@b.mssante.test", "--tls", "--tls-verify", "--tls-ca-path", ca,
		"--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "bal", "--auth-password", "secret", "--h-From", "<" + a.bal + ">"}
	out, err = swaks(t, append(sub, "--from", a.bal)...)
	if err != nil || !strings.Contains(out, "<~  235 2.0.0 Authentication succeeded") || !strings.Contains(out, "<~  250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks submission:\n%s", out)
	}
	out, _ = swaks(t, append(sub, "--from", "dr@a.mssante.test")...)
	if !strings.Contains(out, "<~* 553 5.7.1 Sender address not owned by the authenticated BAL") {
		t.Fatalf("swaks spoofed sender:\n%s", out)
	}
}
