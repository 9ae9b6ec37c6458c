package imapd

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// FuzzMessage runs what the server derives from a stored message — written by any sender —
// for FETCH ENVELOPE/BODYSTRUCTURE and SEARCH: it must neither panic nor hang.
func FuzzMessage(f *testing.F) {
	f.Add([]byte("From: a@b.fr\r\nTo: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: <user (c)@ (c) d.org>\r\nSubject: s\r\n\r\nbody\r\n"))
	f.Add([]byte("From: \"x\\\"y\" <a@b>\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nhello\r\n--X--\r\n"))
	f.Add([]byte("To: ((((nested))) a@b, ;:;:,,<>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		env := envelope(h)
		if env == nil {
			t.Fatal("nil envelope")
		}
		for _, k := range []string{"From", "To", "Cc"} {
			v := h.Get(k)
			addressText(v)
			groupAddresses(v)
			hasGroup(v)
			stripComments(v)
		}
		imapserver.ExtractBodyStructure(bytes.NewReader(raw))
		if e, err := gomessage.Read(bytes.NewReader(raw)); e != nil && err == nil {
			entityContains(e, "needle", true, 0)
		}
	})
}

// FuzzMayContain checks that the SEARCH pre-filter never rejects a message the full decoder
// matches.
func FuzzMayContain(f *testing.F) {
	f.Add([]byte("Subject: Compte rendu\r\n\r\nneedle00042 corps\r\n"), "NEEDLE00042")
	f.Add([]byte("Subject: =?utf-8?q?r=C3=A9sultat?=\r\n\r\nx"), "résultat")
	f.Add([]byte("Content-Transfer-Encoding: base64\r\n\r\nbmVlZGxl\r\n"), "needle")
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		needle := strings.ToLower(text)
		if needle == "" || mayContain(raw, needle) {
			return
		}
		e, err := gomessage.Read(bytes.NewReader(raw))
		if e != nil && err == nil && entityContains(e, needle, true, 0) {
			t.Fatalf("pre-filter rejected a match of %q in %q", text, raw)
		}
	})
}

// FuzzRawHeaderMatch checks the raw HEADER search against the parsed one, when it decides.
func FuzzRawHeaderMatch(f *testing.F) {
	f.Add([]byte("Subject: Compte\r\n rendu 00042\r\nTo: x\r\n\r\n"), "subject", "RENDU 00042")
	f.Add([]byte("X-A: 1\r\nx-a: 2\r\n\r\n"), "X-A", "2")
	f.Add([]byte("Subject: =?utf-8?q?r=C3=A9?=\r\n\r\n"), "Subject", "ré")
	f.Fuzz(func(t *testing.T, hdr []byte, key, value string) {
		ok, decided := rawHeaderMatch(hdr, key, value)
		if !decided || strings.ContainsAny(key, ": \t\r\n") || key == "" {
			return
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		if err != nil {
			return
		}
		want := matchHeader(mail.Header{Header: gomessage.Header{Header: h}}, key, value)
		if ok != want && !strings.ContainsAny(value, " \t\r\n") {
			t.Fatalf("raw %v, parsed %v for %q=%q in %q", ok, want, key, value, hdr)
		}
	})
}
