package mssante

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand"
	"testing"
)

// The floors the benchmarks are measured against: composing a message with a 5 MB attachment against base64-encoding
// 5 MB, reading it back against base64-decoding it. bench/mssante/run.sh prints the ratios.

const benchSize = 5 << 20

// loop runs f b.N times and also reports the process CPU time per operation (cpu-ns/op):
// on a loaded machine wall time mostly measures the wait for a core, CPU time much less so.
// One untimed run first: the first touch of fresh memory (the floors' preallocated buffer,
// the heap's growth for ours) is a cost of the process's start, not of each operation.
func loop(b *testing.B, f func()) {
	b.SetBytes(benchSize)
	f()
	start := cpuTime()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
	}
}

func benchPayload() []byte {
	b := make([]byte, benchSize)
	rand.New(rand.NewSource(1)).Read(b)
	return b
}

func benchMessage(payload []byte) *Message {
	m := sampleMessage()
	m.XDM = payload
	return m
}

func BenchmarkBase64Encode5MB(b *testing.B) {
	data := benchPayload()
	dst := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	loop(b, func() {
		base64.StdEncoding.Encode(dst, data)
	})
}

func BenchmarkCompose5MB(b *testing.B) {
	m := benchMessage(benchPayload())
	opts := &ComposeOptions{MaxSize: -1}
	loop(b, func() {
		if _, err := m.WriteTo(io.Discard, opts); err != nil {
			b.Fatal(err)
		}
	})
}

// benchBase64 is the benchmark attachment as it stands in the mail: base64 in lines of 76
// characters ending in CRLF, written by compose's own encoder.
func benchBase64(b *testing.B) []byte {
	var wrapped bytes.Buffer
	if err := writeBase64(&wrapped, benchPayload()); err != nil {
		b.Fatal(err)
	}
	return wrapped.Bytes()
}

// BenchmarkBase64Decode5MB decodes the attachment as it stands in the mail: base64 in lines of
// 76 characters ending in CRLF (the stdlib decoder skips the line ends).
func BenchmarkBase64Decode5MB(b *testing.B) {
	enc := benchBase64(b)
	dst := make([]byte, benchSize+3)
	loop(b, func() {
		if _, err := base64.StdEncoding.Decode(dst, enc); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkBase64DecodeAlloc5MB decodes the MIME lines into a new slice each time, as any
// parser that returns the attachment must (context for the ratios, not a target).
func BenchmarkBase64DecodeAlloc5MB(b *testing.B) {
	enc := benchBase64(b)
	loop(b, func() {
		dst := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
		if _, err := base64.StdEncoding.Decode(dst, enc); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkBase64DecodeUnwrapped5MB is the stricter floor: one base64 string, no line ends.
func BenchmarkBase64DecodeUnwrapped5MB(b *testing.B) {
	enc := []byte(base64.StdEncoding.EncodeToString(benchPayload()))
	dst := make([]byte, benchSize+3)
	loop(b, func() {
		if _, err := base64.StdEncoding.Decode(dst, enc); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkRead5MB(b *testing.B) {
	var buf bytes.Buffer
	if _, err := benchMessage(benchPayload()).WriteTo(&buf, &ComposeOptions{MaxSize: -1}); err != nil {
		b.Fatal(err)
	}
	raw := buf.Bytes()
	loop(b, func() {
		m, err := ReadMessage(bytes.NewReader(raw), nil)
		if err != nil || len(m.XDM) != benchSize {
			b.Fatal(err)
		}
	})
}

// BenchmarkLineEncode5MB writes the attachment's MIME lines as compose does (writeBase64:
// encodeQuanta for full lines) into a discarding writer: our encoder without the message around
// it. Context for the compose ratio: compose encodes with its own tables, faster than the
// stdlib floor, so this shows what the message itself adds.
func BenchmarkLineEncode5MB(b *testing.B) {
	data := benchPayload()
	loop(b, func() {
		if err := writeBase64(io.Discard, data); err != nil {
			b.Fatal(err)
		}
	})
}
