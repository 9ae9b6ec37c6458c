package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The connector checks a header with the parser its IMAP server reads it with: a field name
// that parser cannot read is refused at submission and at the relay (554 5.6.0), and a message
// the relay accepts in the obsolete form "From :" (RFC 5322 §4.5.2) shows its From in the
// ENVELOPE and its header in BODY[HEADER].
func TestHeadersReadAsStored(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.start(t, ctx, a, nil)

	refused := func(t *testing.T, c *smtp.Client, from, body string) {
		t.Helper()
		err := c.SendMail(from, []string{a.appBAL()}, strings.NewReader(body))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 6, 0}) {
			t.Fatalf("got %v, want 554 5.6.0", err)
		}
	}
	nonASCII := "Fröm: <x@b.mssante.test>\r\nFrom: <%s>\r\nSubject: t\r\n\r\nx\r\n"
	sub, err := smtp.DialStartTLS(a.addr("submission"), s.clientTLS(a, a.app))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	refused(t, sub, a.appBAL(), strings.Replace(nonASCII, "%s", a.appBAL(), 1))
	rel, err := smtp.DialStartTLS(a.addr("relay"), s.clientTLS(a, b.server))
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	refused(t, rel, "x@b.mssante.test", strings.Replace(nonASCII, "%s", "x@b.mssante.test", 1))

	s.relay(t, a, b, "x@b.mssante.test", a.appBAL(),
		"From : <x@b.mssante.test>\r\nTo: <"+a.appBAL()+">\r\nSubject: obs\r\nMessage-ID: <obs.1@b.mssante.test>\r\n\r\nx\r\n")
	waitUntil(t, "delivery", func() bool { return len(s.inbox(t, a)) == 1 })
	c, err := imapclient.DialTLS(a.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(a, a.app)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v, %d messages", err, len(msgs))
	}
	env := msgs[0].Envelope
	if env == nil || len(env.From) != 1 || env.From[0].Addr() != "x@b.mssante.test" || env.Subject != "obs" {
		t.Fatalf("ENVELOPE %+v", env)
	}
	if h := msgs[0].FindBodySection(hdr); !strings.Contains(string(h), "From : <x@b.mssante.test>\r\n") {
		t.Fatalf("BODY[HEADER] %q", h)
	}
}
