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

// A delimiter at every place against the windows of a body read straight from memory: the
// body's length runs over three windows and a little more, with CRLF or LF lines, lines that
// start like the boundary, and a longer boundary inside the body.
func TestMultipartReaderDirectEveryPosition(t *testing.T) {
	const boundary = "QUJD=_edge"
	for _, step := range []int{16, 100} {
		for _, nl := range []string{"\r\n", "\n"} {
			head := "--" + boundary + nl + "Content-Type: application/pdf" + nl + nl
			for size := 0; size <= 3*step+len(boundary)+4; size++ {
				var body strings.Builder
				for i := 0; body.Len() < size; i++ {
					// Lines cut anywhere: none is the delimiter, some start like it.
					line := []string{strings.Repeat("QUJD", 5), "--QUJD=_edgeX", "--QUJD=_edgX", "-", "QUJD=", ""}[i%6] + nl
					body.WriteString(line[:min(len(line), size-body.Len())])
				}
				b := body.String()
				last := b
				if i := strings.LastIndex(b, nl); i >= 0 {
					last = b[i+len(nl):]
				}
				if strings.HasPrefix(last, "--"+boundary) && !strings.HasPrefix(last, "--"+boundary+"X") {
					continue // the cut made a delimiter line
				}
				in := head + b + nl + "--" + boundary + nl + nl + "second" + nl + "--" + boundary + "--" + nl
				want, werr := goMessageParts(strings.NewReader(in), boundary)
				for _, useChunk := range []bool{false, true} {
					got, err := memParts([]byte(in), boundary, useChunk, step)
					if err != nil || len(got) != 2 || got[0].body != b || got[1].body != "second" {
						t.Fatalf("step %d nl %q size %d chunk %v: %q, err %v", step, nl, size, useChunk, got, err)
					}
					if werr == nil && fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("step %d nl %q size %d: go-message gives %q", step, nl, size, want)
					}
				}
			}
		}
	}
}

// sources gives the readers ReadMessage may be handed for raw: in memory (read in place) and
// streamed (through the buffer).
func sources(raw []byte) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"bytes.Reader": func() io.Reader { return bytes.NewReader(raw) },
		"bytes.Buffer": func() io.Reader { return bytes.NewBuffer(raw) },
		"stream":       func() io.Reader { return struct{ io.Reader }{bytes.NewReader(raw)} },
		"half reads":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(raw)) },
	}
}

// memoryTestMessages: the samples in testdata and composed messages whose attachments end
// in the top buffer, just past it, and far past it.
func memoryTestMessages(t *testing.T) map[string][]byte {
	msgs := map[string][]byte{}
	files, _ := filepath.Glob("testdata/*.eml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		msgs[filepath.Base(p)] = b
	}
	rng := rand.New(rand.NewSource(13))
	for _, size := range []int{0, 1, 1000, 40 << 10, 48 << 10, 60 << 10, 200<<10 + 1, 1<<20 + 2} {
		m := sampleMessage()
		m.XDM = make([]byte, size)
		rng.Read(m.XDM)
		m.Attachments = []Attachment{{Filename: "b.bin", ContentType: "application/octet-stream", Data: m.XDM[:size/3]}}
		msgs[fmt.Sprintf("composed %d", size)] = compose(t, m, &ComposeOptions{MaxSize: -1})
	}
	return msgs
}

// A message in memory reads to the same result as streamed, leaves its bytes as they were and
// is consumed.
func TestReadInMemoryMatchesStream(t *testing.T) {
	for name, raw := range memoryTestMessages(t) {
		keep := bytes.Clone(raw)
		want, werr := ReadMessage(struct{ io.Reader }{bytes.NewReader(raw)}, nil)
		for src, open := range sources(raw) {
			r := open()
			got, err := ReadMessage(r, nil)
			if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s from %s: %v, streamed: %v", name, src, err, werr)
			}
			if l, ok := r.(interface{ Len() int }); ok && werr == nil && l.Len() != 0 {
				t.Errorf("%s from %s: %d bytes left unread", name, src, l.Len())
			}
		}
		for _, step := range []int{7, 4096} {
			got, err := readBytes(raw, (*ReadOptions)(nil).withDefaults(), step)
			if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s in windows of %d: %v, streamed: %v", name, step, err, werr)
			}
		}
		if !bytes.Equal(raw, keep) {
			t.Fatalf("%s: reading modified the message", name)
		}
		// Nothing read points into the message's bytes.
		scratch := bytes.Clone(raw)
		got, err := ReadMessage(bytes.NewReader(scratch), nil)
		for i := range scratch {
			scratch[i] = '#'
		}
		if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the message read changed with the bytes it was read from", name)
		}
	}
}

// The limits hold in memory as streamed: size, header, nesting, parts; a large body cut short
// or with bad base64 past the buffer is an error.
func TestReadInMemoryLimits(t *testing.T) {
	big, raw := withAttachment(t, 300<<10, 2)
	cut := raw[:len(raw)-len(raw)/4] // no close delimiter
	i := bytes.Index(raw, []byte(base64.StdEncoding.EncodeToString(big[57*3600:57*3600+24])))
	if i < 0 {
		t.Fatal("attachment not found")
	}
	badB64 := bytes.Clone(raw)
	badB64[i] = '!' // far past the first 64 KB
	longHeader := []byte(top + "X-Long: " + strings.Repeat("a", 300<<10) + "\r\n\r\nbody")
	tests := []struct {
		name string
		raw  []byte
		opts *ReadOptions
		want error
	}{
		{"one byte over the size limit", raw, &ReadOptions{MaxSize: int64(len(raw) - 1)}, ErrTooLarge},
		{"header over its limit", longHeader, nil, ErrMalformed},
		{"deep nesting", []byte(nested(50)), nil, ErrMalformed},
		{"too many parts", []byte(manyParts(300)), nil, ErrMalformed},
		{"large body without close delimiter", cut, nil, ErrMalformed},
		{"bad base64 past the buffer", badB64, nil, ErrMalformed},
	}
	for _, tt := range tests {
		for src, open := range sources(tt.raw) {
			_, err := ReadMessage(open(), tt.opts)
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrMalformed) {
				t.Errorf("%s from %s: %v, want %v", tt.name, src, err, tt.want)
			}
		}
	}
	if _, err := ReadMessage(bytes.NewReader(raw), &ReadOptions{MaxSize: int64(len(raw))}); err != nil {
		t.Errorf("exactly at the size limit: %v", err)
	}
	if _, err := ReadMessage(bytes.NewReader(nil), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty input: %v", err)
	}
}

// Bytes that WriteTo would hand in pieces are refused before any is read, so that
// ReadMessage streams them instead.
func TestMemWriterRefusesPieces(t *testing.T) {
	raw := compose(t, sampleMessage(), fixedOptions())
	w := &memWriter{want: len(raw), o: (*ReadOptions)(nil).withDefaults()}
	if n, err := w.Write(raw[:len(raw)/2]); n != 0 || !errors.Is(err, errNotWhole) || w.m != nil || w.err != nil {
		t.Fatalf("half the message: %d, %v", n, err)
	}
	if n, err := w.Write(raw); n != len(raw) || err != nil || w.err != nil || w.m == nil {
		t.Fatalf("whole message: %d, %v, %v", n, err, w.err)
	}
}

// Reading a large attachment in memory or streamed allocates a small multiple of it.
func TestReadMemoryBoundBothPaths(t *testing.T) {
	data, raw := withAttachment(t, 4<<20, 3)
	for src, open := range sources(raw) {
		ReadMessage(open(), nil) // warm the pools
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got, err := ReadMessage(open(), nil)
		runtime.ReadMemStats(&after)
		if err != nil || !bytes.Equal(got.XDM, data) {
			t.Fatal(src, err)
		}
		limit := uint64(3 * len(data))
		if src == "bytes.Reader" || src == "bytes.Buffer" {
			// The attachment, presized from the length, and the pooled blocks decoded into
			// before the presizing, allocated again when a GC emptied the pool.
			limit = uint64(len(data) + 3*outBlock)
		}
		if grown := after.TotalAlloc - before.TotalAlloc; grown > limit && !raceDetector {
			t.Errorf("%s: allocated %d bytes to read a %d-byte attachment", src, grown, len(data))
		}
	}
}

// A regular file tells its size: the attachment is presized as from a bytes.Reader, from
// where the file is read. The result is the same as streamed.
func TestReadFromFile(t *testing.T) {
	data, raw := withAttachment(t, 4<<20, 4)
	want, err := ReadMessage(struct{ io.Reader }{bytes.NewReader(raw)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const skip = "junk before the message\r\n"
	path := filepath.Join(t.TempDir(), "m.eml")
	if err := os.WriteFile(path, append([]byte(skip), raw...), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() (*Message, error) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Seek(int64(len(skip)), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		return ReadMessage(f, nil)
	}
	read() // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := read()
	runtime.ReadMemStats(&after)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("from a file: %v", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(len(data)+3*outBlock) && !raceDetector { // see TestReadMemoryBoundBothPaths
		t.Errorf("allocated %d bytes to read a %d-byte attachment from a file", grown, len(data))
	}
}

// A source that holds more than MaxSize never makes the presized slice larger than the limit
// allows: the message is refused having allocated a small multiple of MaxSize.
func TestReadPresizeWithinMaxSize(t *testing.T) {
	_, rawb := withAttachment(t, 12<<20, 6)
	raw := string(rawb)
	const limit = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ReadMessage(strings.NewReader(raw), &ReadOptions{MaxSize: limit})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4*limit {
		t.Errorf("allocated %d bytes for a %d-byte limit", grown, limit)
	}
}

// sourceLen: what is left of a bytes.Reader, strings.Reader or regular file read from where
// it stands, never more than the limit lets through; nothing for a pipe or a plain reader.
func TestSourceLen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(100, io.SeekStart)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tt := range []struct {
		name  string
		r     io.Reader
		limit int64
		want  int // -1: no length
	}{
		{"file from 100", f, 5000, 900},
		{"file over the limit", f, 300, 300},
		{"strings.Reader", strings.NewReader("abcdef"), 5000, 6},
		{"strings.Reader over the limit", strings.NewReader("abcdef"), 4, 4},
		{"pipe", pr, 5000, -1},
		{"plain reader", struct{ io.Reader }{strings.NewReader("abc")}, 5000, -1},
	} {
		lr := &limitReader{r: tt.r, n: tt.limit}
		got := -1
		if l := sourceLen(tt.r, lr); l != nil {
			got = l()
		}
		if got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	// Read through the limit, the file's length goes down with what is read.
	lr := &limitReader{r: f, n: 5000}
	l := sourceLen(f, lr)
	io.CopyN(io.Discard, lr, 250)
	if got := l(); got != 650 {
		t.Errorf("after 250 bytes: %d, want 650", got)
	}
}
