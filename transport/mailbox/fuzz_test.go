package mailbox

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCanonName checks the validation of folder names sent by IMAP clients: no panic, and an
// accepted name is canonical (idempotent) and free of the characters the store refuses.
func FuzzCanonName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/Sub", "Archives/2026", "a//b", "/x", "x/", "*", "%", "Trait\u00e9s", "INBOXES", "Dossier\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := canonName(name)
		if err != nil {
			return
		}
		if again, err := canonName(c); err != nil || again != c {
			t.Fatalf("canonName(%q) = %q, then %q, %v", name, c, again, err)
		}
		if strings.ContainsAny(c, "*%\r\n\x00") || strings.Contains(c, "//") || strings.HasPrefix(c, "/") || !utf8.ValidString(c) {
			t.Fatalf("accepted %q", c)
		}
	})
}

// FuzzHeaderCapture checks that the indexed header block is a prefix of the message that ends
// with its blank line.
func FuzzHeaderCapture(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody"), 3)
	f.Add([]byte("Subject: x\n\nbody"), 1)
	f.Add([]byte("no header end"), 5)
	f.Fuzz(func(t *testing.T, msg []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		var h headerCapture
		for i := 0; i < len(msg); i += chunk {
			end := min(i+chunk, len(msg))
			h.Write(msg[i:end])
		}
		hdr := h.header()
		if hdr == nil {
			return
		}
		if !strings.HasPrefix(string(msg), string(hdr)) || !(strings.HasSuffix(string(hdr), "\n\n") || strings.HasSuffix(string(hdr), "\r\n\r\n")) {
			t.Fatalf("header %q of %q", hdr, msg)
		}
	})
}
