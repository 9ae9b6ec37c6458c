package mllp_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/mssante-go/sdk/bal/mllp"
)

// FuzzReadFrame: any byte stream yields frames or a named error, never a panic, and a frame
// never exceeds the cap nor holds a frame byte; what WriteFrame writes reads back.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("\x0bMSH|^~\\&|A\r\x1c\r\x0bMSH|^~\\&|B\r\x1c\r"))
	f.Add([]byte("\r\n\x0bx\x1c\r"))
	f.Add([]byte("\x0bx\x1cy"))
	f.Add([]byte("\x0b\x0b\x1c\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 100; i++ {
			msg, err := mllp.ReadFrame(r, 256)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, mllp.ErrFraming) && !errors.Is(err, mllp.ErrTooLarge) && !errors.Is(err, mllp.ErrTruncated) {
					t.Fatalf("unnamed error %v", err)
				}
				return
			}
			if len(msg) > 256 || bytes.ContainsAny(msg, "\x0b\x1c") {
				t.Fatalf("bad frame %q", msg)
			}
			var b bytes.Buffer
			if err := mllp.WriteFrame(&b, msg); err != nil {
				t.Fatal(err)
			}
			back, err := mllp.ReadFrame(bufio.NewReader(&b), 256)
			if err != nil || !bytes.Equal(back, msg) {
				t.Fatalf("round trip %q: %q %v", msg, back, err)
			}
		}
	})
}
