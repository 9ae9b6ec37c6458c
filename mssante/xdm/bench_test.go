package xdm

import (
	"bytes"
	"compress/flate"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mssante-go/sdk/mssante/cda"
)

// The N1 benchmarks compare packing and reading a CDA N1 that carries a 10 MB PDF with the sum
// of their unavoidable parts, measured in the same run (bench/xdm/run.sh prints the ratios):
//
//   - pack: base64 of the PDF, SHA-1 and deflate of the CDA;
//   - read: inflate of the CDA, its SHA-1, base64 decoding of the PDF.

const benchPDFSize = 10 << 20

// benchPDF is 10 MB that compress like a real PDF's streams (already compressed: random).
func benchPDF() []byte {
	b := make([]byte, benchPDFSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "%PDF-1.7\n")
	return b
}

func benchInput(pdf []byte) *cda.Input {
	in := cda.Sample(cda.KindN1)
	in.PDF = pdf
	return in
}

func packN1(tb testing.TB, in *cda.Input, w io.Writer) {
	d, err := cda.Build(in)
	if err != nil {
		tb.Fatal(err)
	}
	var doc bytes.Buffer
	doc.Grow(len(in.PDF)*4/3 + 16<<10)
	if err := cda.Encode(&doc, d); err != nil {
		tb.Fatal(err)
	}
	if _, err := Pack(w, [][]byte{doc.Bytes()}, &PackOptions{Now: clock}); err != nil {
		tb.Fatal(err)
	}
}

// interleave runs sdk and baseline alternately in every iteration, so that both see the same
// machine load, and reports each side's time per operation and their ratio.
func interleave(b *testing.B, sdk, baseline func()) {
	b.SetBytes(benchPDFSize)
	var ts, tb time.Duration
	for b.Loop() {
		t0 := time.Now()
		sdk()
		t1 := time.Now()
		baseline()
		ts += t1.Sub(t0)
		tb += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(ts.Milliseconds())/n, "sdk-ms/op")
	b.ReportMetric(float64(tb.Milliseconds())/n, "baseline-ms/op")
	b.ReportMetric(float64(ts)/float64(tb), "ratio")
}

func BenchmarkN1Pack(b *testing.B) {
	pdf := benchPDF()
	in := benchInput(pdf)
	d, _ := cda.Build(in)
	cdaBytes, _ := cda.Marshal(d)
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(pdf)))
	interleave(b, func() { packN1(b, in, io.Discard) }, func() {
		base64.StdEncoding.Encode(enc, pdf)
		sha1.Sum(cdaBytes)
		fw, _ := flate.NewWriter(io.Discard, flate.DefaultCompression)
		fw.Write(cdaBytes)
		fw.Close()
	})
}

func BenchmarkN1Read(b *testing.B) {
	pdf := benchPDF()
	var z bytes.Buffer
	packN1(b, benchInput(pdf), &z)
	zipData := z.Bytes()
	pkg, err := Read(bytes.NewReader(zipData), int64(len(zipData)), nil)
	if err != nil {
		b.Fatal(err)
	}
	cdaBytes := pkg.Subsets[0].Documents[0].Data
	var compressed bytes.Buffer
	fw, _ := flate.NewWriter(&compressed, flate.DefaultCompression)
	fw.Write(cdaBytes)
	fw.Close()
	_, b64, _ := bytes.Cut(cdaBytes, []byte(`representation="B64">`))
	b64, _, _ = bytes.Cut(b64, []byte("<"))
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	interleave(b, func() {
		pkg, err := Read(bytes.NewReader(zipData), int64(len(zipData)), nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, got, err := pkg.Subsets[0].Documents[0].CDA.Content(); err != nil || len(got) != benchPDFSize {
			b.Fatal(err)
		}
	}, func() {
		var doc bytes.Buffer
		doc.Grow(len(cdaBytes))
		doc.ReadFrom(flate.NewReader(bytes.NewReader(compressed.Bytes())))
		sha1.Sum(doc.Bytes())
		if _, err := base64.StdEncoding.Decode(out, b64); err != nil {
			b.Fatal(err)
		}
	})
}
