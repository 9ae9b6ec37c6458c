package connector

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The submission listener reads the header with the parser the mailbox store's IMAP server
// uses, and refuses what that parser would read differently or not at all: a field name that
// is not RFC 5322 ftext, white space before the colon (the obsolete form that hid a second
// From from the ownership check), and a second instance of a field RFC 5322 §3.6 allows once.
func TestSubmissionHeaderSyntax(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	to := "dr@b.mssante.test"
	own := "From: <" + a.bal + ">\r\n"
	rest := "To: <" + to + ">\r\nSubject: t\r\n\r\nbody\r\n"
	cases := []struct {
		name, hdr, want string
	}{
		{"ok", own, "ok"},
		{"ok folded and unusual names", own + "X-Custom_Field.1~: a\r\n b\r\n", "ok"},
		{"obs-from of another BAL, space before the colon", "From : <dr@a.mssante.test>\r\n" + own, "554 5.6.0"},
		{"obs-from of another BAL, tab before the colon", "From\t: <dr@a.mssante.test>\r\n" + own, "554 5.6.0"},
		{"obs-from of another BAL after the owned From", own + "From : <dr@a.mssante.test>\r\n", "554 5.6.0"},
		{"obs-from, owned", "From : <" + a.bal + ">\r\n", "554 5.6.0"},
		{"obs Sender of another BAL", own + "Sender : <dr@a.mssante.test>\r\n", "554 5.6.0"},
		{"non-ASCII field name beside the owned From", "Fröm: <dr@a.mssante.test>\r\n" + own, "554 5.6.0"},
		{"non-ASCII field name only", "Fröm: <" + a.bal + ">\r\n", "554 5.6.0"},
		{"control character in a field name", "Fr\x01om: <dr@a.mssante.test>\r\n" + own, "554 5.6.0"},
		{"empty field name", ": x\r\n" + own, "554 5.6.0"},
		{"line without a colon", own + "X-Broken\r\n", "554 5.6.0"},
		{"two From fields, both owned", own + own, "554 5.6.0"},
		{"two From fields differing in case", "from: <dr@a.mssante.test>\r\n" + own, "554 5.6.0"},
		{"two Subject fields", own + "Subject: other\r\n", "554 5.6.0"},
		{"two Sender fields", own + "Sender: <" + a.bal + ">\r\nSender: <dr@a.mssante.test>\r\n", "554 5.6.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialSMTP(t, a.subAddr, clientTLS(a.balCert, p))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(sasl.NewExternalClient("")); err != nil {
				t.Fatal(err)
			}
			got, msg := sendReply(c, a.bal, []string{to}, tc.hdr+rest)
			if got != tc.want {
				t.Fatalf("got %s %s, want %s", got, msg, tc.want)
			}
			if strings.Contains(msg, "mssante.test") {
				t.Fatalf("reply names an address: %s", msg)
			}
		})
	}
}

// The relay listener refuses a header the mailbox store could not read (a field name that is
// not ftext) but accepts the obsolete white space before the colon (RFC 5322 §4.5), which the
// store's parser reads.
func TestRelayHeaderSyntax(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	for _, tc := range []struct{ name, hdr, want string }{
		{"obs-from", "From : <x@a.mssante.test>\r\n", "ok"},
		{"non-ASCII field name", "Fröm: <x@a.mssante.test>\r\n", "554 5.6.0"},
		{"line without a colon", "From: <x@a.mssante.test>\r\nX-Broken\r\n", "554 5.6.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
			if err != nil {
				t.Fatal(err)
			}
			if got, msg := sendReply(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, tc.hdr+"Subject: t\r\n\r\nbody\r\n"); got != tc.want {
				t.Fatalf("got %s %s, want %s", got, msg, tc.want)
			}
		})
	}
}

// sendReply is send, with the text of the failing reply.
func sendReply(c *smtp.Client, from string, to []string, body string) (string, string) {
	if err := c.Mail(from, nil); err != nil {
		return code(err), err.Error()
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return code(err), err.Error()
		}
	}
	w, err := c.Data()
	if err != nil {
		return code(err), err.Error()
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return code(err), err.Error()
	}
	if err := w.Close(); err != nil {
		return code(err), err.Error()
	}
	return "ok", ""
}

// FuzzParseHeader checks that what parseHeader accepts is what the IMAP server's parser reads:
// one field per field line, each named with ftext only, and at submission no field of
// onceFields twice and no name that was trimmed; what the submission listener accepts the
// relay accepts too.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"From: <bal@a.test>\r\nSubject: x\r\n\r\n",
		"From : <other@a.test>\r\nFrom: <bal@a.test>\r\n\r\n",
		"Fröm: <other@a.test>\r\n\r\n",
		"X-A: 1\r\n\tcontinued\r\n\r\n",
		" leading: x\r\n\r\n",
		"no colon\r\n\r\n",
		": empty\r\n\r\n",
		"from: a\r\nFROM: b\r\n\r\n",
		"Subject: x",
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, hdr []byte, strict bool) {
		if checkCRLF(hdr) != nil {
			return // strictCRLF refuses these before parseHeader
		}
		h, err := parseHeader(hdr, strict)
		if err != nil {
			return
		}
		if strict {
			if _, err := parseHeader(hdr, false); err != nil {
				t.Fatalf("submission accepts, relay refuses %q: %v", hdr, err)
			}
		}
		lines := 0
		for _, l := range strings.Split(string(hdr), "\r\n") {
			if l == "" {
				break // the end of the header
			}
			if l[0] != ' ' && l[0] != '\t' {
				lines++
			}
		}
		if h.Len() != lines {
			t.Fatalf("%d fields read from %d field lines in %q", h.Len(), lines, hdr)
		}
		for fs := h.Fields(); fs.Next(); {
			if !ftext([]byte(fs.Key())) {
				t.Fatalf("field name %q read from %q", fs.Key(), hdr)
			}
		}
		if strict {
			for _, k := range onceFields {
				if n := len(h.Values(k)); n > 1 {
					t.Fatalf("%d %s fields accepted in %q", n, k, hdr)
				}
			}
		}
	})
}
