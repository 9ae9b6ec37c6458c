package peers

import (
	"bufio"
	"crypto/tls"
	"net/smtp"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
)

// Postfix delivers what it gets on its plaintext listener to its Maildir, and Dovecot serves
// that Maildir over IMAPS to a client certificate with SASL EXTERNAL, and refuses a login
// without one.
func TestPostfixDovecot(t *testing.T) {
	p, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := p.Org("bal@test.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	pf := StartPostfix(t, &PostfixOptions{Plain: true, StartTLS: true, ImplicitTLS: true, PKI: p, Cert: srv})
	dv := StartDovecot(t, &DovecotOptions{PKI: p, Cert: srv, External: []string{"bal@test.example"}, Home: filepath.Join(pf.Dir, "vmail")})

	msg := "From: <x@test.example>\r\nTo: <bal@test.example>\r\nSubject: peers-test\r\n\r\nhello\r\n"
	if err := smtp.SendMail(pf.Plain, nil, "x@test.example", []string{"bal@test.example"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	for i := 0; len(pf.Maildir("Maildir")) == 0; i++ {
		if i == 200 {
			t.Fatalf("not delivered:\n%s", pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := pf.Maildir("Maildir")[0]; !strings.Contains(got, "Subject: peers-test") {
		t.Fatalf("delivered:\n%s", got)
	}

	imap := func(certs []tls.Certificate) string {
		c, err := tls.Dial("tcp", dv.IMAPS, &tls.Config{ServerName: "localhost", RootCAs: p.Roots(), Certificates: certs})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		var out strings.Builder
		for _, cmd := range []string{"", "a AUTHENTICATE EXTERNAL =\r\n", "b SELECT INBOX\r\n"} {
			c.Write([]byte(cmd))
			for {
				line, err := r.ReadString('\n')
				out.WriteString(line)
				if err != nil || !strings.HasPrefix(line, "* ") || cmd == "" {
					break
				}
			}
		}
		return out.String()
	}
	if got := imap([]tls.Certificate{cli.TLSCertificate()}); !strings.Contains(got, "a OK") || !strings.Contains(got, "* 1 EXISTS") {
		t.Fatalf("IMAPS with a client certificate:\n%s\n%s", got, dv.Log())
	}
	if got := imap(nil); !strings.Contains(got, "a NO") {
		t.Fatalf("IMAPS without a client certificate:\n%s", got)
	}

	// The TLS listeners refuse a client without a certificate.
	c, err := smtp.Dial(pf.StartTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "localhost", RootCAs: p.Roots()}); err == nil {
		if err := c.Mail("x@test.example"); err == nil {
			t.Fatal("STARTTLS listener accepted a client without a certificate")
		}
	}
	dv.Stop()
	dv.Stop()
	pf.Stop()
}
