package connector

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/testenv"
)

// An address is read once, at MAIL FROM and RCPT TO, with the MSSanté address rules: what
// they refuse (a local part that is not a dot-atom, a domain with a trailing dot) is refused
// there with 553, never accepted and bounced later; what they accept is used in its one
// normalised form for the whitelist, routing, the queue and local delivery.
func TestAddressForms(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", nil)
	trust(a, b)
	route(a, b)
	// Each submission is a message of its own (its own Message-ID): the same message sent
	// again would be taken for a redelivery and stored once.
	var sent int
	submitTo := func(t *testing.T, from, to string) (string, string) {
		sent++
		c, err := dialSMTP(t, a.subAddr, clientTLS(a.balCert, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(sasl.NewExternalClient("")); err != nil {
			t.Fatal(err)
		}
		return sendReply(c, from, []string{to}, msg(a.bal, "dr@b.mssante.test", fmt.Sprintf("t%d", sent)))
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"quoted local part that is not a dot-atom", a.bal, `"marie durand"@b.mssante.test`, "553 5.1.3"},
		{"quoted local part with an @", a.bal, `"dr@b.mssante.test"@b.mssante.test`, "553 5.1.3"},
		{"trailing dot, remote domain", a.bal, "dr@b.mssante.test.", "553 5.1.3"},
		{"trailing dot, local domain", a.bal, "dr@a.mssante.test.", "553 5.1.3"},
		{"address literal", a.bal, "dr@[127.0.0.1]", "553 5.1.3"},
		{"sender with a trailing dot", a.bal + ".", "dr@b.mssante.test", "553 5.1.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, text := submitTo(t, tc.from, tc.to)
			if got != tc.want {
				t.Fatalf("got %s %s, want %s", got, text, tc.want)
			}
			if strings.Contains(text, "mssante.test") || strings.Contains(text, "marie") {
				t.Fatalf("reply names the address: %s", text)
			}
		})
	}
	t.Run("relay sender with a trailing dot", func(t *testing.T) {
		c, err := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
		if err != nil {
			t.Fatal(err)
		}
		if got, text := sendReply(c, "x@a.mssante.test.", []string{"dr@b.mssante.test"}, "Subject: t\r\n\r\nx\r\n"); got != "553 5.1.7" {
			t.Fatalf("got %s %s", got, text)
		}
	})
	t.Run("relay recipient with a trailing dot", func(t *testing.T) {
		c, err := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
		if err != nil {
			t.Fatal(err)
		}
		if got, text := sendReply(c, "x@a.mssante.test", []string{"dr@b.mssante.test."}, "Subject: t\r\n\r\nx\r\n"); got != "553 5.1.3" {
			t.Fatalf("got %s %s", got, text)
		}
	})
	t.Run("swaks, quoted local part", func(t *testing.T) {
		testenv.Require(t, "swaks")
		dir := t.TempDir()
		_, _, ca := writeLeafFiles(t, dir, "client", a.server, p)
		host, port, _ := strings.Cut(a.subAddr, ":")
		out, _ := swaks(t, "--server", host, "--port", port, "--from", a.bal, "--to", `"marie durand"@b.mssante.test`,
			"--tls", "--tls-verify", "--tls-ca-path", ca, "--tls-sni", "localhost",
			"--auth", "PLAIN", "--auth-user", "bal", "--auth-password", "secret", "--h-From", "<"+a.bal+">")
		if !strings.Contains(out, "<~* 553 5.1.3") {
			t.Fatalf("swaks:\n%s", out)
		}
	})
	// A quoted local part that is a dot-atom is the same mailbox as the unquoted one (RFC 5322
	// §3.4.1), and case does not tell MSSanté mailboxes apart: both reach dr@b.mssante.test,
	// queued, routed and delivered under that one form, and no failure notice comes back.
	t.Run("normalised forms are delivered", func(t *testing.T) {
		for _, to := range []string{`"dr"@b.mssante.test`, "DR@B.MSSANTE.TEST"} {
			if got, text := submitTo(t, strings.ToUpper(a.bal), to); got != "ok" {
				t.Fatalf("%s: got %s %s", to, got, text)
			}
		}
		waitFor(t, "two deliveries to dr@b.mssante.test", func() bool { return b.count("dr@b.mssante.test") == 2 })
		for _, m := range b.read(t, "dr@b.mssante.test") {
			if !strings.HasPrefix(m, "Return-Path: <"+a.bal+">\r\n") {
				t.Errorf("delivered with another sender form:\n%s", m)
			}
		}
		for _, n := range []*node{a, b} {
			n.audit.Close()
			log, _ := os.ReadFile(filepath.Join(n.auditDir, "audit.jsonl"))
			if bytes.Contains(log, []byte("DR@")) || bytes.Contains(log, []byte("BAL@")) || !bytes.Contains(log, []byte(`"dr@b.mssante.test"`)) {
				t.Errorf("%s audited another address form:\n%s", n.domain, log)
			}
		}
		if n := a.count(a.bal); n != 0 {
			t.Fatalf("%d failure notices came back", n)
		}
	})
}
