package xdm

import (
	"bytes"
	"compress/flate"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/mssante/cda"
)

// The N1 benchmarks compare packing and reading a CDA N1 that carries a 10 MB PDF with the sum
// of their unavoidable parts, measured in the same run (bench/xdm/run.sh prints the ratios).
// Both sides produce their results in fresh memory, as a caller needs them:
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
// machine load, and reports each side's wall and CPU time (process user+system, which
// includes the garbage collector's work) per operation and their ratios. On a loaded machine
// the CPU ratio is the steadier figure.
func interleave(b *testing.B, sdk, baseline func()) {
	b.SetBytes(benchPDFSize)
	var ws, wb, cs, cb time.Duration
	for b.Loop() {
		c0, t0 := cpuTime(), time.Now()
		sdk()
		runtime.GC() // charge each side with its own garbage
		c1, t1 := cpuTime(), time.Now()
		baseline()
		runtime.GC()
		c2, t2 := cpuTime(), time.Now()
		ws, wb = ws+t1.Sub(t0), wb+t2.Sub(t1)
		cs, cb = cs+c1-c0, cb+c2-c1
	}
	n := float64(b.N)
	b.ReportMetric(float64(ws.Milliseconds())/n, "sdk-ms/op")
	b.ReportMetric(float64(wb.Milliseconds())/n, "baseline-ms/op")
	b.ReportMetric(float64(ws)/float64(wb), "ratio")
	b.ReportMetric(float64(cs.Milliseconds())/n, "sdk-cpu-ms/op")
	b.ReportMetric(float64(cb.Milliseconds())/n, "baseline-cpu-ms/op")
	b.ReportMetric(float64(cs)/float64(cb), "cpu-ratio")
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkN1Pack(b *testing.B) {
	pdf := benchPDF()
	in := benchInput(pdf)
	d, _ := cda.Build(in)
	cdaBytes, _ := cda.Marshal(d)
	interleave(b, func() { packN1(b, in, io.Discard) }, func() {
		enc := make([]byte, base64.StdEncoding.EncodedLen(len(pdf))) // fresh output, as the SDK's
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
		out := make([]byte, base64.StdEncoding.DecodedLen(len(b64))) // fresh output, as the SDK's
		if _, err := base64.StdEncoding.Decode(out, b64); err != nil {
			b.Fatal(err)
		}
	})
}
