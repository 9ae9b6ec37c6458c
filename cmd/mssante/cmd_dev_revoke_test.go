package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// TestDevRevokeBALAndPeer revokes, with "mssante dev revoke" and no restart, the certificate of
// a BAL applicative, which submission and IMAP then refuse within one CRL refresh, and the
// server certificate of the other operator, to which delivery then defers with the reason.
func TestDevRevokeBALAndPeer(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	hop, cab := sb.Info.Operators[0], sb.Info.Operators[1]
	var app, org *sandbox.BAL
	for _, b := range hop.BALs {
		switch b.Type {
		case "APP":
			app = b
		case "ORG":
			org = b
		}
	}
	cert, err := tls.LoadX509KeyPair(app.CertFile, app.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Leaf.CRLDistributionPoints) != 1 || cert.Leaf.CRLDistributionPoints[0] != sb.Info.CRLURL {
		t.Fatalf("BAL certificate distribution points %q, want [%s]", cert.Leaf.CRLDistributionPoints, sb.Info.CRLURL)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(sb.Info.CAFile)
	roots.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	submitAPP := func() error {
		c, err := smtp.DialStartTLS(hop.Submission, tc)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Auth(sasl.NewExternalClient(""))
	}
	imapAPP := func() error {
		c, err := tls.Dial("tcp", hop.IMAPS, tc)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("a AUTHENTICATE EXTERNAL =\r\n")); err != nil {
			return err
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(line, "a ") {
				if !strings.HasPrefix(line, "a OK") {
					return &textErr{line}
				}
				return nil
			}
		}
	}
	if err := submitAPP(); err != nil {
		t.Fatalf("submission before revocation: %v", err)
	}
	if err := imapAPP(); err != nil {
		t.Fatalf("IMAP before revocation: %v", err)
	}
	code, out, errs := certRun(t, "dev", "revoke", "--sandbox", dir, app.Address)
	if code != 0 || !strings.Contains(out, "revoked CN="+app.Address) {
		t.Fatalf("dev revoke: exit %d\n%s%s", code, out, errs)
	}
	revoked := time.Now()
	waitUntil(t, "submission refuses the revoked BAL", 2*sandbox.CRLRefresh+10*time.Second, func() bool { return submitAPP() != nil })
	if err := imapAPP(); err == nil {
		t.Fatal("IMAP accepts the revoked BAL certificate")
	}
	t.Logf("revoked BAL refused %v after mssante dev revoke", time.Since(revoked).Round(time.Millisecond))

	// The cabinet's server certificate: the hopital's delivery to it defers, with the reason.
	code, out, errs = certRun(t, "dev", "revoke", "--sandbox", dir, cab.CertFile)
	if code != 0 {
		t.Fatalf("dev revoke %s: exit %d\n%s%s", cab.CertFile, code, out, errs)
	}
	time.Sleep(2 * sandbox.CRLRefresh) // one refresh of the hopital's connector
	c, err := smtp.DialStartTLS(hop.Submission, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", org.Address, org.Password)); err != nil {
		t.Fatal(err)
	}
	msg := "From: " + org.Address + "\r\nTo: accueil@" + sandbox.Cabinet + "\r\nSubject: test\r\n\r\nbody\r\n"
	if err := c.SendMail(org.Address, []string{"accueil@" + sandbox.Cabinet}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	var list string
	defer func() {
		if t.Failed() {
			t.Logf("queue:\n%s", list)
		}
	}()
	waitUntil(t, "delivery to the revoked peer deferred", 30*time.Second, func() bool {
		config := filepath.Join(dir, "hopital", "serve.toml")
		_, list, _ = certRun(t, "queue", "list", "--json", "--config", config)
		id, _, _ := strings.Cut(strings.TrimPrefix(list, `{"id":"`), `"`)
		_, list, _ = certRun(t, "queue", "show", "--config", config, id)
		return strings.Contains(list, "last reply: 451 4.4.1 server certificate revoked")
	})
}

type textErr struct{ s string }

func (e *textErr) Error() string { return e.s }
