package mssante

import (
	"bytes"
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
