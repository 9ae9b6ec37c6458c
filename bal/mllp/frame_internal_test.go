package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrameDiscard: the server's reading of an oversized frame (read to its end, head
// kept) gives a frame, a head of at most the cap, or a named error, never a panic.
func FuzzReadFrameDiscard(f *testing.F) {
	f.Add([]byte("\x0bMSH|^~\\&|A\r" + string(bytes.Repeat([]byte("x"), 300)) + "\x1c\r\x0bMSH|^~\\&|B\r\x1c\r"))
	f.Add([]byte("\x0bxx\x1cy"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 100; i++ {
			msg, err := readFrame(r, 64, 256)
			if errors.Is(err, ErrTooLarge) {
				if len(msg) > 64 {
					t.Fatalf("head of %d bytes", len(msg))
				}
				continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrFraming) && !errors.Is(err, ErrTruncated) {
					t.Fatalf("unnamed error %v", err)
				}
				return
			}
			if len(msg) > 64 {
				t.Fatalf("frame of %d bytes", len(msg))
			}
		}
	})
}
