package mssante

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// withAttachment returns size random bytes (from seed) and a composed message that carries
// them as its XDM archive, without size limit.
func withAttachment(t *testing.T, size int, seed int64) (data, raw []byte) {
	t.Helper()
	data = make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	m := sampleMessage()
	m.XDM = data
	return data, compose(t, m, &ComposeOptions{MaxSize: -1})
}

// endless is an io.Reader that never ends: prefix, then fill forever.
type endless struct {
	prefix []byte
	fill   byte
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.prefix)
	e.prefix = e.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = e.fill
	}
	return len(p), nil
}

const top = "From: a@b.fr\r\nTo: c@d.fr\r\nSubject: x\r\nMIME-Version: 1.0\r\n"

func nested(depth int) string {
	var b strings.Builder
	b.WriteString(top + "Content-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nx\r\n--b%d--\r\n", depth, depth)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func manyParts(n int) string {
	var b strings.Builder
	b.WriteString(top + "Content-Type: multipart/mixed; boundary=zz\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	b.WriteString("--zz--\r\n")
	return b.String()
}

func TestReadLimitsAndMalformed(t *testing.T) {
	small := &ReadOptions{MaxSize: 1 << 20, MaxHeaderBytes: 64 << 10}
	tests := []struct {
		name string
		r    io.Reader
		opts *ReadOptions
	}{
		{"endless header line", &endless{[]byte("From: a@b.fr\r\nX-Long: "), 'a'}, small},
		{"endless header fields", &endless{[]byte(top), 'X'}, small}, // "XXXX…" never ends the line either
		{"endless part header", &endless{[]byte(top + "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nX-A: "), 'a'}, small},
		{"endless body", &endless{[]byte(top + "\r\n"), 'a'}, small},
		{"endless base64 attachment", &endless{[]byte(top + "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"), 'Q'}, small},
		{"deep nesting", strings.NewReader(nested(50)), nil},
		{"too many parts", strings.NewReader(manyParts(300)), nil},
		{"multipart without boundary", strings.NewReader(top + "Content-Type: multipart/mixed\r\n\r\nx"), nil},
		{"unterminated multipart", strings.NewReader(top + "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nabc"), nil},
		{"bad base64", strings.NewReader(top + "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n"), nil},
		{"unknown transfer encoding", strings.NewReader(top + "Content-Transfer-Encoding: x-rot13\r\n\r\nabc"), nil},
		{"no From", strings.NewReader("To: c@d.fr\r\n\r\nx"), nil},
		{"two From", strings.NewReader("From: a@b.fr, e@f.fr\r\nTo: c@d.fr\r\n\r\nx"), nil},
		{"bad To", strings.NewReader("From: a@b.fr\r\nTo: not an address\r\n\r\nx"), nil},
		{"header without colon", strings.NewReader("From a@b.fr\r\n\r\nx"), nil},
		{"DSN report without status part", strings.NewReader(top + "Content-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nx\r\n--q--\r\n"), nil},
		{"DSN with bad action", strings.NewReader(top + "Content-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b.fr\r\nAction: exploded\r\nStatus: 5.0.0\r\n--q--\r\n"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadMessage(tt.r, tt.opts)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.HasPrefix(err.Error(), "mssante: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if tt.opts != nil {
				// Bounded memory: a small multiple of the size limit (buffers, decoding copies).
				if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(16*tt.opts.MaxSize) {
					t.Errorf("allocated %d bytes for a %d-byte limit", grown, tt.opts.MaxSize)
				}
			}
		})
	}
	if _, err := ReadMessage(strings.NewReader(nested(50)), nil); !strings.Contains(err.Error(), "nested") {
		t.Errorf("depth error not named: %v", err)
	}
	if _, err := ReadMessage(&endless{[]byte(top + "\r\n"), 'a'}, small); !errors.Is(err, ErrTooLarge) {
		t.Errorf("size error not ErrTooLarge: %v", err)
	}
	// Within the limits, the same shapes pass.
	if _, err := ReadMessage(strings.NewReader(nested(6)), nil); err != nil {
		t.Errorf("nesting 6: %v", err)
	}
	if _, err := ReadMessage(strings.NewReader(manyParts(100)), nil); err != nil {
		t.Errorf("100 parts: %v", err)
	}
}

func TestReadExactSizeLimit(t *testing.T) {
	raw := compose(t, sampleMessage(), fixedOptions())
	if _, err := ReadMessage(bytes.NewReader(raw), &ReadOptions{MaxSize: int64(len(raw))}); err != nil {
		t.Errorf("exactly at the limit: %v", err)
	}
	if _, err := ReadMessage(bytes.NewReader(raw), &ReadOptions{MaxSize: int64(len(raw) - 1)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: %v", err)
	}
}

func TestReadLegacyCharset(t *testing.T) {
	raw := top + "Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCompte rendu d'\xe9chographie\r\n"
	m, err := ReadMessage(strings.NewReader(raw), nil)
	if err != nil || m.Text != "Compte rendu d'échographie\n" {
		t.Errorf("%q %v", m.Text, err)
	}
	// The same in base64, with the blanks some senders leave in base64 bodies.
	raw = top + "Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: base64\r\n\r\nQ29tcHRlIHJlbmR1IGQn\r\n 6WNob2dyYXBoaWU=\r\n"
	m, err = ReadMessage(strings.NewReader(raw), nil)
	if err != nil || m.Text != "Compte rendu d'échographie" {
		t.Errorf("base64 windows-1252: %q %v", m.Text, err)
	}
	if _, err := ReadMessage(strings.NewReader(top+"Content-Type: text/plain; charset=x-unknown-42\r\n\r\nabc"), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown charset: %v", err)
	}
}

func FuzzReadMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(nested(10)))
	f.Add([]byte(manyParts(3)))
	opts := &ReadOptions{MaxSize: 1 << 20, MaxParts: 64, MaxDepth: 6}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMessage(bytes.NewReader(data), opts)
		// The same read streamed, and in memory in small windows (bodies past the
		// buffer read straight from data).
		sm, serr := ReadMessage(iotest.HalfReader(bytes.NewReader(data)), opts)
		if (err != nil) != (serr != nil) || !reflect.DeepEqual(m, sm) {
			t.Fatalf("in memory: %v; streamed: %v", err, serr)
		}
		if int64(len(data)) <= opts.MaxSize {
			wm, werr := readBytes(data, opts.withDefaults(), 1+len(data)%61)
			if (err != nil) != (werr != nil) || !reflect.DeepEqual(m, wm) {
				t.Fatalf("in memory: %v; in small windows: %v", err, werr)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if m.From.IsZero() {
			t.Fatal("accepted without From")
		}
		if m.Kind == KindDSN && (m.DSN == nil || len(m.DSN.Recipients) == 0) {
			t.Fatal("DSN kind without report")
		}
		if m.Kind == KindMDN && m.MDN == nil {
			t.Fatal("MDN kind without report")
		}
	})
}

func TestDecodeBase64Sizes(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, size := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 57, 58, 1000, 65536, 1<<20 + 5} {
		data := make([]byte, size)
		rng.Read(data)
		var wrapped bytes.Buffer
		if err := writeBase64(&wrapped, data); err != nil {
			t.Fatal(err)
		}
		for _, rd := range []io.Reader{bytes.NewReader(wrapped.Bytes()), iotest.HalfReader(bytes.NewReader(wrapped.Bytes())),
			strings.NewReader(strings.ReplaceAll(wrapped.String(), "\r\n", "\n ")), strings.NewReader(base64.StdEncoding.EncodeToString(data))} {
			got, err := decodeBase64(rd)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d: streaming decode differs (%v)", size, err)
			}
		}
	}
	for _, bad := range []string{"QUJD!!==", "QUJ", "QU==QUJD", "QUJDRA=\r\n"} {
		if _, err := decodeBase64(strings.NewReader(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestForwardedMessageIsAnAttachment(t *testing.T) {
	raw := top + "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nvoir ci-joint\r\n" +
		"--q\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.fr\r\n\r\ninner\r\n--q--\r\n"
	m, err := ReadMessage(strings.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Original != nil || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "message/rfc822" || m.Kind != KindOrdinary {
		t.Errorf("original %q attachments %+v", m.Original, m.Attachments)
	}
}

// Reading a message with a large attachment allocates a small multiple of its size: the
// decoded attachment, pooled decoding blocks and fixed buffers.
func TestReadMemoryBound(t *testing.T) {
	data, raw := withAttachment(t, 4<<20, 3)
	ReadMessage(bytes.NewReader(raw), nil) // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := ReadMessage(bytes.NewReader(raw), nil)
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(got.XDM, data) {
		t.Fatal(err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(3*len(data)) {
		t.Errorf("allocated %d bytes to read a %d-byte attachment", grown, len(data))
	}
}
