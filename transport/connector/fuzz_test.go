package connector

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/queue"
)

// FuzzData runs what the servers do with the bytes of DATA from an untrusted peer: the bare
// CR/LF check, the bounded header read, and the From check of the submission listener. It must
// never panic, and whatever passes has no bare CR or LF.
func FuzzData(f *testing.F) {
	for _, s := range []string{
		"From: <bal@a.test>\r\nSubject: x\r\n\r\nbody\r\n",
		"From: <bal@a.test>\r\n\r\n",
		"Subject: x\nFrom: y\r\n\r\n",
		"a\r.\r\nb",
		"From: \"=?utf-8?q?x?=\" <bal@a.test>, <other@a.test>\r\n\r\n",
		"\r\n",
		"",
		strings.Repeat("X-Long: "+strings.Repeat("a", 5000)+"\r\n", 3) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(&strictCRLF{r: bytes.NewReader(data)})
		hdr, err := readHeader(br, 64<<10)
		if err != nil {
			return
		}
		ss := &session{bal: "bal@a.test"}
		if h, err := parseHeader(hdr, true); err == nil {
			ss.checkFrom(h)
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			if !errors.Is(err, errBareLF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		all := append(hdr, rest...)
		if !bytes.Equal(all, data) {
			t.Fatalf("bytes changed: %q → %q", data, all)
		}
		for i, c := range all {
			if c == '\n' && (i == 0 || all[i-1] != '\r') || c == '\r' && (i+1 == len(all) || all[i+1] != '\n') {
				t.Fatalf("bare CR or LF passed at %d in %q", i, all)
			}
		}
	})
}

// FuzzStatus extracts enhanced codes for DSNs from remote replies.
func FuzzStatus(f *testing.F) {
	for _, s := range []string{"550 5.7.1 refused", "451 4.4.1 no answer", "250 2.0.0 ok", "5.", "x 9.9.9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st := statusOf(s, queue.NoticeFailed)
		if len(st) < 5 || (st[0] != '2' && st[0] != '4' && st[0] != '5') || strings.ContainsAny(st, "\r\n") {
			t.Fatalf("status %q from %q", st, s)
		}
		if l := oneLine(s); strings.ContainsAny(l, "\r\n") {
			t.Fatalf("oneLine kept a line break: %q", l)
		}
	})
}
