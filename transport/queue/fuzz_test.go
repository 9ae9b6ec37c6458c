package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The index and a data file's trailer are read back from the spool at Open: a torn or altered
// one is refused (the files are then read, or the data file is debris), never a panic.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"id":"0000000000001-aa","from":"a@x.fr","received":"2026-03-01T08:00:00Z","size":1,"rcpts":[{"addr":"b@y.fr","state":"pending","attempts":0,"next_attempt":"2026-03-01T08:00:00Z"}]}` + "\nend 1\n"))
	f.Add([]byte("end 0\n"))
	f.Add([]byte("end -1\n"))
	f.Add([]byte("{}\nend 1\n"))
	f.Add([]byte("end 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, ok := parseIndex(b)
		if !ok {
			return
		}
		for id, e := range msgs {
			if !validID(id) || e.ID != id || len(e.Rcpts) == 0 {
				t.Fatalf("accepted %q: %+v", id, e)
			}
		}
	})
}

func FuzzReadTrailer(f *testing.F) {
	f.Add([]byte("m" + `{"id":"0000000000001-aa","rcpts":[]}` + "\n" + "0000000000000001" + "0000000000000024" + trailerMagic))
	f.Add([]byte("0000000000000000" + "0000000000000000" + trailerMagic))
	f.Add([]byte("x\n" + "7fffffffffffffff" + "0000000000000001" + trailerMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "m")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := readTrailer(path)
		if err == nil && (e.Size < 0 || e.Size > int64(len(b))) {
			t.Fatalf("size %d of a %d-byte file", e.Size, len(b))
		}
	})
}

// The header of a queued message is what its sender wrote: the fields "mssante queue show
// --headers" prints hold no control character that would act on the terminal, and never
// outgrow the header.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("Received: from a\r\n\tby b\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("\tcontinuation first\r\nNoColon\r\n: empty name\r\n"))
	f.Add([]byte("To: <a@b.fr>"))
	f.Add([]byte("Received: from x\x1b[2J\rforged\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		for _, h := range parseHeader(bytes.NewReader(b)) {
			if strings.ContainsFunc(h.Name+h.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("field with a control character: %q", h)
			}
			n += len(h.Name) + len(h.Value)
		}
		if n > len(b) {
			t.Fatalf("%d bytes of fields from %d bytes", n, len(b))
		}
	})
}
