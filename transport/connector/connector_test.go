package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport/antivirus"
	"github.com/mssante-go/sdk/transport/audit"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/whitelist"
)

// Two connectors on loopback, each with its own certificate, domain and whitelist, relay to
// each other; the success DSN asked by the sender comes back to its BAL.
func TestTwoConnectorsRelay(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", nil)
	trust(a, b)
	route(a, b)
	route(b, a)

	// DSN parameters: NOTIFY, ORCPT, RET and ENVID travel with the message to b, which
	// honours them in its success DSN.
	ro := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "secretariat@b.mssante.test"}
	c, err := dialSMTP(t, a.subAddr, clientTLS(a.balCert, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	mo := &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "envid-a2b"}
	if got := send(c, a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "a2b"), mo, ro); got != "ok" {
		t.Fatalf("submit a→b: %s", got)
	}
	if got := submit(t, b, []string{"dr@a.mssante.test", "bal@b.mssante.test"}, msg(b.bal, "dr@a.mssante.test", "b2a"), nil); got != "ok" {
		t.Fatalf("submit b→a: %s", got)
	}
	waitFor(t, "a→b delivery", func() bool { return b.count("dr@b.mssante.test") == 1 })
	waitFor(t, "b→a delivery", func() bool { return a.count("dr@a.mssante.test") == 1 })
	waitFor(t, "local delivery on b", func() bool { return b.count(b.bal) >= 1 })
	// b supports DSN, so a passes NOTIFY on (RFC 3461 §5.2.2) and b, the final MTA, sends
	// the success DSN back to a's BAL, with a null sender, over the relay.
	waitFor(t, "success DSN to a's BAL", func() bool { return a.count(a.bal) == 1 })
	dsn := a.read(t, a.bal)[0]
	parsed, _, err := mssante.ParseDSN(strings.NewReader(dsn), nil)
	if err != nil || parsed.ReportingMTA != "mx.b.mssante.test" || len(parsed.Recipients) != 1 ||
		parsed.Recipients[0].Action != mssante.ActionDelivered || parsed.Recipients[0].FinalRecipient != "dr@b.mssante.test" {
		t.Fatalf("DSN does not parse back: %v %+v", err, parsed)
	}
	if parsed.OriginalEnvelopeID != "envid-a2b" || parsed.Recipients[0].OriginalRecipient != "secretariat@b.mssante.test" {
		t.Errorf("ENVID/ORCPT not honoured: %+v", parsed)
	}
	if !strings.Contains(dsn, "text/rfc822-headers") || strings.Contains(dsn, "body line") {
		t.Errorf("RET=HDRS not honoured:\n%s", dsn)
	}
	for _, want := range []string{"report-type=delivery-status", "Action: delivered", "Reporting-MTA: dns; mx.b.mssante.test", "Final-Recipient: rfc822; dr@b.mssante.test", "Status: 2.0.0"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	got := b.read(t, "dr@b.mssante.test")[0]
	if !strings.Contains(got, "Subject: a2b") || !strings.Contains(got, "by mx.b.mssante.test with ESMTPS") || !strings.Contains(got, "by mx.a.mssante.test with ESMTPSA") {
		t.Errorf("relayed message:\n%s", got)
	}
	// Audit: queued on both sides with the peer DN and TLS version, delivered, no subject.
	waitFor(t, "queue drained", func() bool { return a.q.Stats().Messages == 0 && b.q.Stats().Messages == 0 })
	a.audit.Close()
	b.audit.Close()
	logB, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	if !strings.Contains(string(logB), `"event":"queued","source":"relay"`) || !strings.Contains(string(logB), `"peer_dn":"CN=mx.a.mssante.test`) ||
		!strings.Contains(string(logB), `"tls":"TLS 1.2"`) || !strings.Contains(string(logB), `"event":"delivered"`) {
		t.Errorf("audit of b:\n%s", logB)
	}
	for _, dir := range []string{a.auditDir, b.auditDir} {
		l, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
		if strings.Contains(string(l), "a2b") || strings.Contains(string(l), "body line") {
			t.Errorf("audit leaks content:\n%s", l)
		}
	}
	// b's relay took a2b; a's relay took b2a and the DSN from b.
	for n, want := range map[*node]float64{a: 2, b: 1} {
		if v := n.metrics.Counter(`mssante_messages_accepted_total{listener="relay"}`); v != want {
			t.Errorf("%s relay accepted = %v, want %v", n.domain, v, want)
		}
	}
}

// Every refusal of the relay listener, with its exact reply.
func TestRelayRefusals(t *testing.T) {
	p := testPKI(t)
	revoked := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{Revoked: true}))
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	other := must(t)(p.Server("mx.other.test", nil))
	trust(a, b)
	expired := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{Expired: true}))
	foreign := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{ForeignCA: true}))
	selfSigned := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{SelfSigned: true}))
	wrongEKU := must(t)(p.Server("mx.a.mssante.test", &testpki.LeafOptions{WrongEKU: true}))
	good := clientTLS(a.server, p)

	cases := []struct {
		name     string
		tls      *tls.Config // nil: no STARTTLS
		from, to string
		noList   bool
		want     string
	}{
		{"ok", good, "x@a.mssante.test", "dr@b.mssante.test", false, "ok"},
		{"no STARTTLS", nil, "x@a.mssante.test", "dr@b.mssante.test", false, "530 5.7.0"},
		{"no client certificate", clientTLS(nil, p), "x@a.mssante.test", "dr@b.mssante.test", false, "530 5.7.0"},
		{"unknown CA", clientTLS(foreign, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"self-signed", clientTLS(selfSigned, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"expired certificate", clientTLS(expired, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"wrong EKU", clientTLS(wrongEKU, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"revoked certificate", clientTLS(revoked, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"sender domain not listed", good, "x@unlisted.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"DN not listed for sender domain", clientTLS(other, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"DN of another listed operator", clientTLS(b.server, p), "x@a.mssante.test", "dr@b.mssante.test", false, "550 5.7.1"},
		{"recipient not in our domains", good, "x@a.mssante.test", "dr@a.mssante.test", false, "550 5.7.1"},
		{"unknown local mailbox", good, "x@a.mssante.test", "nobody@b.mssante.test", false, "550 5.1.1"},
		{"no whitelist yet", good, "x@a.mssante.test", "dr@b.mssante.test", true, "451 4.7.1"},
		{"null sender from a listed operator", good, "", "dr@b.mssante.test", false, "ok"},
		{"null sender from an unlisted operator", clientTLS(other, p), "", "dr@b.mssante.test", false, "550 5.7.1"},
		{"bad sender syntax", good, "nodomain", "dr@b.mssante.test", false, "501 5.5.2"}, // go-smtp's parser
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noList {
				l := b.policy.get()
				b.policy.set(nil)
				defer b.policy.set(l)
			}
			c, err := dialSMTP(t, b.relayAddr, tc.tls)
			if err != nil {
				t.Fatal(err)
			}
			if got := send(c, tc.from, []string{tc.to}, msg("x@a.mssante.test", tc.to, "t"), nil, nil); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("TLS 1.1", func(t *testing.T) {
		tc := clientTLS(a.server, p)
		tc.MinVersion, tc.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		_, err := dialSMTP(t, b.relayAddr, tc)
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.1 handshake: %v", err)
		}
	})
	// Texts are generic: no address, no DN in replies.
	c, _ := dialSMTP(t, b.relayAddr, clientTLS(other, p))
	err := c.Mail("x@a.mssante.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || strings.Contains(se.Message, "a.mssante.test") || strings.Contains(se.Message, "CN=") {
		t.Fatalf("reply leaks detail: %v", err)
	}
	// Every refusal is audited with its code.
	b.audit.Close()
	log, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	for _, want := range []string{`"code":"530 5.7.0","reason":"no_tls"`, `"reason":"client_certificate_untrusted: revoked"`, `"reason":"client_certificate_untrusted: expired"`, `"reason":"client_certificate_untrusted: unknown_authority"`, `"reason":"sender_operator: whitelist: operator not listed for domain"`, `"code":"451 4.7.1"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("audit lacks %s", want)
		}
	}
}

// Refusals of the submission listener.
func TestSubmissionRefusals(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	stranger := must(t)(p.Org("stranger@a.mssante.test", nil))
	external := func(t *testing.T, l *testpki.Leaf) *smtp.Client {
		c, err := dialSMTP(t, a.subAddr, clientTLS(l, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(sasl.NewExternalClient("")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("no AUTH", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, clientTLS(a.balCert, p))
		if got := send(c, a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "t"), nil, nil); got != "530 5.7.0" {
			t.Fatal(got)
		}
	})
	t.Run("no STARTTLS", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, nil)
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("AUTH offered in plaintext")
		}
		if got := send(c, a.bal, []string{"dr@b.mssante.test"}, "x\r\n", nil, nil); got != "530 5.7.0" {
			t.Fatal(got)
		}
	})
	t.Run("EXTERNAL with a certificate bound to no BAL", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, clientTLS(stranger, p))
		if got := code(c.Auth(sasl.NewExternalClient(""))); got != "535 5.7.8" {
			t.Fatal(got)
		}
	})
	t.Run("EXTERNAL without certificate", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, clientTLS(nil, p))
		if got := code(c.Auth(sasl.NewExternalClient(""))); got != "535 5.7.8" {
			t.Fatal(got)
		}
	})
	t.Run("EXTERNAL authzid of another BAL", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, clientTLS(a.balCert, p))
		if got := code(c.Auth(sasl.NewExternalClient("dr@a.mssante.test"))); got != "535 5.7.8" {
			t.Fatal(got)
		}
	})
	t.Run("spoofed envelope sender", func(t *testing.T) {
		if got := send(external(t, a.balCert), "dr@a.mssante.test", []string{"dr@b.mssante.test"}, "x\r\n", nil, nil); got != "553 5.7.1" {
			t.Fatal(got)
		}
	})
	t.Run("spoofed From header", func(t *testing.T) {
		if got := send(external(t, a.balCert), a.bal, []string{"dr@b.mssante.test"}, msg("dr@a.mssante.test", "dr@b.mssante.test", "t"), nil, nil); got != "554 5.7.1" {
			t.Fatal(got)
		}
	})
	t.Run("two From addresses", func(t *testing.T) {
		body := "From: <" + a.bal + ">, <dr@a.mssante.test>\r\n\r\nx\r\n"
		if got := send(external(t, a.balCert), a.bal, []string{"dr@b.mssante.test"}, body, nil, nil); got != "554 5.7.1" {
			t.Fatal(got)
		}
	})
	t.Run("non-MSSante recipient", func(t *testing.T) {
		if got := send(external(t, a.balCert), a.bal, []string{"someone@gmail.com"}, "x\r\n", nil, nil); got != "550 5.7.1" {
			t.Fatal(got)
		}
	})
	t.Run("unknown local mailbox", func(t *testing.T) {
		if got := send(external(t, a.balCert), a.bal, []string{"nobody@a.mssante.test"}, "x\r\n", nil, nil); got != "550 5.1.1" {
			t.Fatal(got)
		}
	})
	t.Run("no whitelist yet", func(t *testing.T) {
		l := a.policy.get()
		a.policy.set(nil)
		defer a.policy.set(l)
		if got := send(external(t, a.balCert), a.bal, []string{"dr@b.mssante.test"}, "x\r\n", nil, nil); got != "451 4.7.1" {
			t.Fatal(got)
		}
	})
	t.Run("PLAIN", func(t *testing.T) {
		c, _ := dialSMTP(t, a.subAddr, clientTLS(nil, p))
		if got := code(c.Auth(sasl.NewPlainClient("", "bal", "wrong"))); got != "535 5.7.8" {
			t.Fatalf("bad password: %s", got)
		}
		c, _ = dialSMTP(t, a.subAddr, clientTLS(nil, p))
		if err := c.Auth(sasl.NewPlainClient("", "bal", "secret")); err != nil {
			t.Fatal(err)
		}
		if got := send(c, a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "t"), nil, nil); got != "ok" {
			t.Fatal(got)
		}
	})
	t.Run("ok to a listed domain and a local BAL", func(t *testing.T) {
		if got := send(external(t, a.balCert), a.bal, []string{"dr@b.mssante.test", "dr@a.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "t"), nil, nil); got != "ok" {
			t.Fatal(got)
		}
	})
}

// The SMTP smuggling payloads of the SEC Consult research (December 2023): every end-of-data
// variant with a bare CR or LF is refused, "\r\n.\r" included (go-smtp's dot-unstuffing drops
// its ".\r", crlfGuard sees it before), the smuggled transaction is never executed and the
// connection is closed.
func TestSmuggling(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	smuggled := "MAIL FROM:<admin@a.mssante.test>\r\nRCPT TO:<dr@b.mssante.test>\r\nDATA\r\nFrom: admin\r\n\r\nsmuggled\r\n"
	for _, end := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r.\r", "\n.\r", "\r\n\x00.\r\n"} {
		t.Run(strings.NewReplacer("\r", `\r`, "\n", `\n`, "\x00", `\0`).Replace(end), func(t *testing.T) {
			before := b.q.Stats().Messages
			s := rawDial(t, b.relayAddr, clientTLS(a.server, p))
			s.cmd("MAIL FROM:<x@a.mssante.test>", "250")
			s.cmd("RCPT TO:<dr@b.mssante.test>", "250")
			s.cmd("DATA", "354")
			s.write("From: <x@a.mssante.test>\r\n\r\nhello" + end + smuggled + ".\r\n")
			got := s.reply()
			want := "554 5.5.2"
			if end == "\r\n\x00.\r\n" { // a NUL is not an end marker: one message, no bare CR or LF
				want = "250"
			}
			if !strings.HasPrefix(got, want) {
				t.Fatalf("DATA reply %q, want %s", got, want)
			}
			if want == "250" {
				s.cmd("QUIT", "221")
				if s.reply() != "EOF" {
					t.Fatal("extra reply: a smuggled command was executed")
				}
			} else {
				s.closed() // no smuggled command executed, connection closed
			}
			if want == "554 5.5.2" && b.q.Stats().Messages != before {
				t.Fatal("message queued")
			}
			if want == "250" {
				ids := b.q.IDs()
				f, err := b.q.OpenMessage(ids[len(ids)-1])
				if err != nil {
					t.Fatal(err)
				}
				stored, _ := io.ReadAll(f)
				f.Close()
				if err := checkCRLF(stored); err != nil || !strings.Contains(string(stored), "\r\nMAIL FROM:<admin@a.mssante.test>\r\n") {
					t.Fatalf("stored message (%v):\n%q", err, stored)
				}
			}
		})
	}
}

type fakeScanner struct{ err error }

func (f fakeScanner) Scan(_ context.Context, r io.Reader) error {
	io.Copy(io.Discard, r)
	return f.err
}

func TestScannerAndLimits(t *testing.T) {
	p := testPKI(t)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"clean", nil, "ok"},
		{"virus", &antivirus.VirusError{Signature: "Test.Sig"}, "554 5.7.1"},
		{"scanner down", antivirus.ErrScanner, "451 4.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
			b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: fakeScanner{tc.err}})
			trust(a, b)
			c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
			if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, "Subject: x\r\n\r\nbody\r\n", nil, nil); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if n := b.q.Stats().Messages; (tc.want == "ok") != (n == 1) {
				t.Fatalf("queued %d", n)
			}
		})
	}
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, maxRcpts: 2, maxBytes: 1000, perPeer: 2})
	trust(a, b)
	t.Run("too many recipients", func(t *testing.T) {
		c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
		c.Mail("x@a.mssante.test", nil)
		c.Rcpt("dr@b.mssante.test", nil)
		c.Rcpt("bal@b.mssante.test", nil)
		if got := code(c.Rcpt("dr@b.mssante.test", nil)); got != "452 4.5.3" {
			t.Fatal(got)
		}
	})
	t.Run("too big", func(t *testing.T) {
		c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
		if sz, ok := c.MaxMessageSize(); !ok || sz != 1000 {
			t.Fatalf("SIZE %d", sz)
		}
		if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, "Subject: x\r\n\r\n"+strings.Repeat("y\r\n", 1000), nil, nil); got != "552 5.3.4" {
			t.Fatal(got)
		}
	})
	t.Run("extensions", func(t *testing.T) {
		c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
		for _, ext := range []string{"DSN", "SIZE", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} {
			if ok, _ := c.Extension(ext); !ok {
				t.Errorf("%s not advertised", ext)
			}
		}
	})
	t.Run("connections per peer", func(t *testing.T) {
		waitFor(t, "earlier connections closed", func() bool { return b.relay.limiter.Conns() == 0 })
		var conns []net.Conn
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", b.relayAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 100)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(buf); !strings.HasPrefix(string(buf[:n]), "220") {
				t.Fatalf("greeting %q", buf[:n])
			}
			conns = append(conns, c)
		}
		c, _ := net.Dial("tcp", b.relayAddr)
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(buf), "421 4.7.0") {
			t.Fatalf("third connection got %q", buf)
		}
		conns[0].Close()
		waitFor(t, "slot freed", func() bool {
			c, err := net.Dial("tcp", b.relayAddr)
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 3)
			io.ReadFull(c, buf)
			return string(buf) == "220"
		})
	})
}

// Outbound refusals: the delivery never sends to an unlisted domain, an unlisted server
// certificate DN, a server without STARTTLS, or an untrusted server certificate.
func TestDeliveryRefusals(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	route(a, b)

	// A plaintext server (no STARTTLS) and a server with a foreign certificate.
	plain := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nullSession{}, nil }))
	lp, _ := net.Listen("tcp", "127.0.0.1:0")
	go plain.Serve(lp)
	defer plain.Close()
	foreign := must(t)(p.Server("localhost", &testpki.LeafOptions{ForeignCA: true}))
	fs := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nullSession{}, nil }))
	fs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{foreign.TLSCertificate()}}
	lf, _ := net.Listen("tcp", "127.0.0.1:0")
	go fs.Serve(lf)
	defer fs.Close()

	l := whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: a.domain, OperatorDNs: []string{transport.SubjectDN(a.server.Cert)}},
		{Domain: b.domain, OperatorDNs: []string{transport.SubjectDN(b.server.Cert)}},
		{Domain: "wrongdn.test", OperatorDNs: []string{"CN=someone.else,O=X,C=FR"}},
		{Domain: "plain.test", OperatorDNs: []string{transport.SubjectDN(b.server.Cert)}},
		{Domain: "foreign.test", OperatorDNs: []string{transport.SubjectDN(foreign.Cert)}},
	})
	a.policy.set(l)
	a.delivery.opts.Routes["wrongdn.test"] = b.relayAddr
	a.delivery.opts.Routes["plain.test"] = lp.Addr().String()
	a.delivery.opts.Routes["foreign.test"] = lf.Addr().String()

	cases := []struct{ rcpt, status string }{
		{"x@wrongdn.test", "451 4.4.1 server certificate not listed for the recipient domain"},
		{"x@plain.test", "451 4.4.1 server does not offer STARTTLS"},
		{"x@foreign.test", "451 4.4.1 TLS handshake with the recipient's server failed"},
	}
	for _, tc := range cases {
		if got := submit(t, a, []string{tc.rcpt}, msg(a.bal, tc.rcpt, "t"), nil); got != "ok" {
			t.Fatalf("submit to %s: %s", tc.rcpt, got)
		}
	}
	waitFor(t, "attempts", func() bool {
		n := 0
		for _, tc := range cases {
			for _, e := range allEnvelopes(a) {
				for _, r := range e.Rcpts {
					if r.Addr == tc.rcpt && r.Attempts > 0 && strings.HasPrefix(r.LastStatus, tc.status) {
						n++
					}
				}
			}
		}
		return n == len(cases)
	}, func() string {
		var out []string
		for _, e := range allEnvelopes(a) {
			for _, r := range e.Rcpts {
				out = append(out, r.Addr+": "+r.LastStatus)
			}
		}
		return strings.Join(out, "\n")
	})
	// Unlisted domain, as the whitelist changes after queueing: permanent failure and a DSN.
	a.policy.set(whitelist.NewList(time.Now(), []whitelist.Entry{{Domain: a.domain, OperatorDNs: []string{transport.SubjectDN(a.server.Cert)}}}))
	waitFor(t, "failure DSNs to the BAL", func() bool { return a.count(a.bal) == 3 })
	for _, d := range a.read(t, a.bal) {
		if !strings.Contains(d, "Action: failed") || !strings.Contains(d, "Status: 5.7.1") {
			t.Fatalf("DSN:\n%s", d)
		}
	}
	if b.q.Stats().Messages != 0 {
		t.Fatal("b received mail for a domain it is not listed for")
	}
}

func allEnvelopes(n *node) []*queue.Envelope {
	var out []*queue.Envelope
	for _, id := range n.q.IDs() {
		if e, err := n.q.Get(id); err == nil {
			out = append(out, e)
		}
	}
	return out
}

type nullSession struct{}

func (nullSession) Reset()                               {}
func (nullSession) Logout() error                        { return nil }
func (nullSession) Mail(string, *smtp.MailOptions) error { return nil }
func (nullSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (nullSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// checkCRLF fails on a bare CR or LF.
func checkCRLF(b []byte) error {
	_, err := io.Copy(io.Discard, &strictCRLF{r: bytes.NewReader(b)})
	return err
}

type fakeMX map[string][]*net.MX

func (f fakeMX) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if mx, ok := f[name]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// Delivery through an MX lookup (injected resolver): the lowest preference that answers wins,
// and a domain without MX is a permanent failure.
func TestDeliveryMX(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: false})
	trust(a, b)
	_, port, _ := net.SplitHostPort(b.relayAddr)
	a.delivery.opts.Port, _ = strconv.Atoi(port)
	a.delivery.opts.Resolver = fakeMX{b.domain: {{Host: "nowhere.invalid.", Pref: 5}, {Host: "localhost.", Pref: 10}}}
	if got := submit(t, a, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "via-mx"), nil); got != "ok" {
		t.Fatal(got)
	}
	waitFor(t, "delivery via MX", func() bool { return b.count("dr@b.mssante.test") == 1 })
}

// The submission listener with implicit TLS (port 465).
func TestSubmissionImplicitTLS(t *testing.T) {
	p := testPKI(t)
	a, l := implicitSubmission(t)
	c, err := smtp.DialTLS(l.Addr().String(), clientTLS(a.balCert, p))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatalf("AUTH EXTERNAL over implicit TLS: %v", err)
	}
	if got := send(c, a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "t"), nil, nil); got != "ok" {
		t.Fatal(got)
	}
	// A plaintext client gets no SMTP greeting at all.
	raw, _ := net.Dial("tcp", l.Addr().String())
	defer raw.Close()
	raw.Write([]byte("EHLO x\r\n"))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, _ := io.ReadAll(raw)
	if strings.HasPrefix(string(buf), "220") || strings.HasPrefix(string(buf), "250") {
		t.Fatalf("plaintext answered: %q", buf)
	}
}

// Per-destination limit and connection reuse: with one transaction at a time to b, five
// messages delivered by four workers all travel over one TLS connection.
func TestDeliveryReuseAndLimit(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	route(a, b)
	a.delivery.opts.MaxPerDestination = 1
	for i := 0; i < 5; i++ {
		if got := submit(t, a, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", fmt.Sprint("m", i)), nil); got != "ok" {
			t.Fatal(got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.q.Run(ctx, a.delivery, &queue.RunOptions{Workers: 4}) }()
	waitFor(t, "five messages at b", func() bool { return b.q.Stats().Messages == 5 })
	cancel()
	<-done
	b.audit.Close()
	log, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	peers := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Event == audit.EventQueued {
			peers[r.PeerAddr] = true
		}
	}
	if len(peers) != 1 {
		t.Fatalf("messages came over %d connections: %v", len(peers), peers)
	}
}

// An idle client is disconnected after the read timeout.
func TestReadTimeout(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true, timeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", a.relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c) // greeting, then the server closes (421 or EOF)
	if err != nil || !strings.HasPrefix(string(b), "220 ") {
		t.Fatalf("got %q, %v", b, err)
	}
}

// A next hop without DSN: the success notice asked for is a "relayed" DSN from us.
func TestRelayedDSN(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nullSession{}, nil }))
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{b.server.TLSCertificate()}}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()
	a.delivery.opts.Routes = map[string]string{b.domain: l.Addr().String()}
	ro := &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}
	if got := submit(t, a, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "t"), ro); got != "ok" {
		t.Fatal(got)
	}
	waitFor(t, "relayed DSN", func() bool { return a.count(a.bal) == 1 })
	d, _, err := mssante.ParseDSN(strings.NewReader(a.read(t, a.bal)[0]), nil)
	if err != nil || d.Recipients[0].Action != mssante.ActionRelayed || d.Recipients[0].Status != "2.0.0" {
		t.Fatalf("%v %+v", err, d)
	}
}
