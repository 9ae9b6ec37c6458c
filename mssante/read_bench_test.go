package mssante

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
)

// BenchmarkRead5MBStream reads the message of BenchmarkRead5MB from a reader that does not tell
// its length (a socket, a pipe): the attachment is then decoded into pooled blocks and copied
// once into the result, instead of straight into a slice sized from the length.
func BenchmarkRead5MBStream(b *testing.B) {
	var buf bytes.Buffer
	if _, err := benchMessage(benchPayload()).WriteTo(&buf, &ComposeOptions{MaxSize: -1}); err != nil {
		b.Fatal(err)
	}
	raw := buf.Bytes()
	loop(b, func() {
		m, err := ReadMessage(struct{ io.Reader }{bytes.NewReader(raw)}, nil)
		if err != nil || len(m.XDM) != benchSize {
			b.Fatal(err)
		}
	})
}

// BenchmarkLineDecode5MB decodes the attachment's MIME lines as ReadMessage does (a line at a
// time, whole quanta with decodeQuanta, the padded last line with encoding/base64) into a
// preallocated buffer: our decoder without the parser, the source's bytes already in place
// and no result to allocate. Context for the ratios: what of read's time is decoding.
func BenchmarkLineDecode5MB(b *testing.B) {
	enc := benchBase64(b)
	dst := make([]byte, benchSize+3)
	loop(b, func() {
		w, l := 0, -1
		for rest := enc; len(rest) > 0; {
			i := l // the length of the previous line, as ReadMessage guesses
			if i < 0 || i >= len(rest) || rest[i] != '\n' {
				i = bytes.IndexByte(rest, '\n')
			}
			line := rest[:i-1] // CRLF
			n := len(line) / 4 * 3
			if !decodeQuanta(dst[w:], line) {
				var err error
				if n, err = base64.StdEncoding.Decode(dst[w:], line); err != nil {
					b.Fatal(err)
				}
			}
			w, l, rest = w+n, i, rest[i+1:]
		}
		if w != benchSize {
			b.Fatalf("%d bytes decoded", w)
		}
	})
}
