package mssante

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/textproto"
)

// gotPart is what a multipart reader gave for one part: its header fields and body.
type gotPart struct {
	header string
	body   string
}

func headerString(h textproto.Header) string {
	var b strings.Builder
	for f := h.Fields(); f.Next(); {
		fmt.Fprintf(&b, "%s=%q;", f.Key(), f.Value())
	}
	return b.String()
}

// ourParts reads every part with our reader, the bodies through chunk or Read.
func ourParts(r io.Reader, boundary string, useChunk bool) ([]gotPart, error) {
	mr, err := newMultipartReader(r, boundary)
	if err != nil {
		return nil, err
	}
	defer mr.release()
	return readParts(mr, useChunk)
}

// memParts reads every part of in with our reader as ReadMessage reads a message in memory:
// bodies past the buffer straight from in (step is memSource.step). in must not change.
func memParts(in []byte, boundary string, useChunk bool, step int) ([]gotPart, error) {
	keep := bytes.Clone(in)
	mem := &memSource{b: in, step: step}
	mr, err := newMultipartReader(bufio.NewReaderSize(mem, multipartBufSize), boundary)
	if err != nil {
		return nil, err
	}
	mr.mem = mem
	parts, err := readParts(mr, useChunk)
	if !bytes.Equal(in, keep) {
		return parts, errors.New("the input was modified")
	}
	return parts, err
}

func readParts(mr *multipartReader, useChunk bool) ([]gotPart, error) {
	var parts []gotPart
	for {
		p, err := mr.nextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		var body []byte
		if useChunk {
			for {
				c, err := p.chunk()
				if err == io.EOF {
					break
				}
				if err != nil {
					return parts, err
				}
				if len(c) == 0 {
					return parts, errors.New("chunk returned no bytes")
				}
				body = append(body, c...)
			}
		} else if body, err = io.ReadAll(p); err != nil {
			return parts, err
		}
		parts = append(parts, gotPart{headerString(p.Header), string(body)})
	}
}

// goMessageParts reads every part with go-message's reader.
func goMessageParts(r io.Reader, boundary string) ([]gotPart, error) {
	mr := textproto.NewMultipartReader(r, boundary)
	var parts []gotPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		body, err := io.ReadAll(p)
		if err != nil {
			return parts, err
		}
		parts = append(parts, gotPart{headerString(p.Header), string(body)})
	}
}

func TestMultipartReaderEdgeCases(t *testing.T) {
	const ct = "Content-Type: text/plain\r\n\r\n"
	tests := []struct {
		name   string
		in     string
		bodies []string // nil with wantErr
		err    error    // when not nil, the error wanted (errors.Is); "" bodies ignored
		anyErr bool
	}{
		{name: "two parts, CRLF", in: "--b\r\n" + ct + "one\r\n--b\r\n" + ct + "two\r\n--b--\r\n", bodies: []string{"one", "two"}},
		{name: "LF only", in: "--b\n" + "Content-Type: text/plain\n\n" + "one\n--b\n\ntwo\n--b--\n", bodies: []string{"one", "two"}},
		{name: "LF mode keeps a CR before the delimiter in the body", in: "--b\n\nx\r\n--b--\n", bodies: []string{"x\r"}},
		{name: "CRLF mode: LF then --b is body", in: "--b\r\n\r\nx\n--b\r\ny\r\n--b--", bodies: []string{"x\n--b\r\ny"}},
		{name: "preamble and epilogue", in: "preamble line\r\n--b not a delimiter\r\n\r\n--b\r\n\r\nx\r\n--b--\r\nepilogue\r\n--b\r\nignored\r\n", bodies: []string{"x"}},
		{name: "transport padding", in: "--b \t\r\n\r\nx\r\n--b\t \r\n\r\ny\r\n--b--  \t\r\n", bodies: []string{"x", "y"}},
		{name: "close delimiter ends the input", in: "--b\r\n\r\nx\r\n--b--", bodies: []string{"x"}},
		{name: "close delimiter, padding, end", in: "--b\r\n\r\nx\r\n--b-- ", bodies: []string{"x"}},
		{name: "empty bodies", in: "--b\r\n\r\n--b\r\n" + ct + "--b\r\n\r\n\r\n--b--\r\n", bodies: []string{"", "", ""}},
		{name: "blank lines kept in the body", in: "--b\r\n\r\n\r\nx\r\n\r\n\r\n--b--\r\n", bodies: []string{"\r\nx\r\n\r\n"}},
		{name: "longer boundary is body", in: "--b\r\n\r\nx\r\n--bb\r\n--b2\r\n-b\r\n--b--\r\n", bodies: []string{"x\r\n--bb\r\n--b2\r\n-b"}},
		{name: "boundary inside a line is body", in: "--b\r\n\r\nx--b\r\n y --b--\r\n--b--\r\n", bodies: []string{"x--b\r\n y --b--"}},
		{name: "missing close delimiter", in: "--b\r\n\r\nx\r\n", err: errNoCloseDelimiter},
		{name: "missing close delimiter after a delimiter", in: "--b\r\n\r\nx\r\n--b\r\n", anyErr: true},
		{name: "input ends after the boundary", in: "--b\r\n\r\nx\r\n--b", err: errNoCloseDelimiter},
		{name: "no delimiter at all", in: "just text\r\n", err: errNoCloseDelimiter},
		{name: "empty input", in: "", err: errNoCloseDelimiter},
		{name: "junk after the close delimiter on its line", in: "--b\r\n\r\nx\r\n--b--junk\r\n", anyErr: true},
		{name: "junk after a delimiter on its line", in: "--b\r\n\r\nx\r\n--b junk\r\n\r\ny\r\n--b--\r\n", anyErr: true},
		{name: "bad part header", in: "--b\r\nno colon here\r\n\r\nx\r\n--b--\r\n", anyErr: true},
	}
	for _, tt := range tests {
		for _, useChunk := range []bool{false, true} {
			for _, rd := range []struct {
				name string
				wrap func(io.Reader) io.Reader
			}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte by byte", iotest.OneByteReader}} {
				t.Run(fmt.Sprintf("%s/chunk=%v/%s", tt.name, useChunk, rd.name), func(t *testing.T) {
					parts, err := ourParts(rd.wrap(strings.NewReader(tt.in)), "b", useChunk)
					switch {
					case tt.err != nil || tt.anyErr:
						if err == nil || (tt.err != nil && !errors.Is(err, tt.err)) {
							t.Fatalf("err = %v, want %v", err, tt.err)
						}
						return
					case err != nil:
						t.Fatal(err)
					}
					var bodies []string
					for _, p := range parts {
						bodies = append(bodies, p.body)
					}
					if fmt.Sprintf("%q", bodies) != fmt.Sprintf("%q", tt.bodies) {
						t.Errorf("bodies %q, want %q", bodies, tt.bodies)
					}
				})
			}
		}
		for _, useChunk := range []bool{false, true} {
			for _, step := range []int{0, 1, 3} {
				parts, err := memParts([]byte(tt.in), "b", useChunk, step)
				if tt.err != nil || tt.anyErr {
					if err == nil || (tt.err != nil && !errors.Is(err, tt.err)) {
						t.Errorf("%s: in memory, step %d: err = %v, want %v", tt.name, step, err, tt.err)
					}
					continue
				}
				var bodies []string
				for _, p := range parts {
					bodies = append(bodies, p.body)
				}
				if err != nil || fmt.Sprintf("%q", bodies) != fmt.Sprintf("%q", tt.bodies) {
					t.Errorf("%s: in memory, step %d, chunk %v: bodies %q (%v), want %q", tt.name, step, useChunk, bodies, err, tt.bodies)
				}
			}
		}
		// go-message agrees where it accepts the input.
		if want, err := goMessageParts(strings.NewReader(tt.in), "b"); err == nil {
			got, err := ourParts(strings.NewReader(tt.in), "b", true)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: ours %q (%v), go-message %q", tt.name, got, err, want)
			}
		}
	}
}

// A delimiter (and its line end) cut at every place by the end of the 64 KB buffer, with
// base64 lines, a boundary that base64 lines may start like, and CRLF or LF.
func TestMultipartReaderBufferEdges(t *testing.T) {
	const boundary = "QUJD=_edge"
	for _, nl := range []string{"\r\n", "\n"} {
		for _, useChunk := range []bool{false, true} {
			head := "--" + boundary + nl + "Content-Type: application/pdf" + nl + nl
			for cut := multipartBufSize - len(head) - 90; cut <= multipartBufSize-len(head)+10; cut++ {
				// Body: lines of "QUJD…" (like the boundary's start) of cut bytes in all.
				var body strings.Builder
				for body.Len() < cut {
					line := strings.Repeat("QUJD", 19) + nl
					body.WriteString(line[:min(len(line), cut-body.Len())])
				}
				b := strings.TrimRight(body.String(), "\r\n")
				in := head + b + nl + "--" + boundary + nl + nl + "second" + nl + "--" + boundary + "--" + nl
				parts, err := ourParts(strings.NewReader(in), boundary, useChunk)
				if err != nil || len(parts) != 2 || parts[0].body != b || parts[1].body != "second" {
					t.Fatalf("nl %q cut %d chunk %v: %d parts, err %v", nl, cut, useChunk, len(parts), err)
				}
				parts, err = memParts([]byte(in), boundary, useChunk, 0)
				if err != nil || len(parts) != 2 || parts[0].body != b || parts[1].body != "second" {
					t.Fatalf("in memory: nl %q cut %d chunk %v: %d parts, err %v", nl, cut, useChunk, len(parts), err)
				}
			}
		}
	}
}

// Random bodies (base64 lines, boundary-like lines, dashes, CR and LF) read with random
// read sizes give what go-message gives.
func TestMultipartReaderMatchesGoMessage(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	pieces := []string{"QUJD", "\r\n", "\n", "\r", "--", "-", "--bnd", "--bnd--", "--bndx", " ", "\t", "=", "\r\n--bnd", "\r\n--bnd--", "abc"}
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		b.WriteString("--bnd\r\n\r\n")
		for n := rng.Intn(40); n > 0; n-- {
			b.WriteString(pieces[rng.Intn(len(pieces))])
		}
		if rng.Intn(2) == 0 {
			b.WriteString(strings.Repeat("QUJDRA==", rng.Intn(20000)))
		}
		b.WriteString("\r\n--bnd--\r\n")
		in := b.String()
		want, werr := goMessageParts(strings.NewReader(in), "bnd")
		got, err := ourParts(iotest.HalfReader(strings.NewReader(in)), "bnd", i%2 == 0)
		if werr == nil && (err != nil || fmt.Sprint(got) != fmt.Sprint(want)) {
			t.Fatalf("input %q:\nours %q (%v)\ngo-message %q", in, got, err, want)
		}
		got, err = memParts([]byte(in), "bnd", i%2 == 1, []int{0, 1, 5, 64}[i%4])
		if werr == nil && (err != nil || fmt.Sprint(got) != fmt.Sprint(want)) {
			t.Fatalf("in memory, input %q:\nours %q (%v)\ngo-message %q", in, got, err, want)
		}
	}
}

// Nested multiparts through ReadMessage: the inner ones read from a part of the outer one.
func TestReadNestedMultipartEdges(t *testing.T) {
	raw := top + "Content-Type: multipart/mixed; boundary=out\r\n\r\npreamble\r\n" +
		"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n" +
		"--in\r\nContent-Type: text/plain\r\n\r\ntexte --out\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--in--\r\ninner epilogue\r\n" +
		"--out\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"QUJD\r\nREVG\r\n--out--\r\nouter epilogue"
	bad := strings.Replace(raw, "--in--\r\n", "", 1)
	for src, open := range sources([]byte(raw)) {
		m, err := ReadMessage(open(), nil)
		if err != nil {
			t.Fatal(src, err)
		}
		if m.Text != "texte --out" || m.HTML != "<p>x</p>" || len(m.Attachments) != 1 || string(m.Attachments[0].Data) != "ABCDEF" {
			t.Errorf("%s: text %q html %q attachments %+v", src, m.Text, m.HTML, m.Attachments)
		}
		// In small windows, the inner multipart reads the outer part straight from memory.
		if w, err := readBytes([]byte(raw), (*ReadOptions)(nil).withDefaults(), 5); err != nil || !reflect.DeepEqual(w, m) {
			t.Errorf("in windows of 5: %v", err)
		}
	}
	// The inner multipart cut short by the outer delimiter lacks its close delimiter.
	for src, open := range sources([]byte(bad)) {
		if _, err := ReadMessage(open(), nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: inner multipart without close delimiter: %v", src, err)
		}
	}
	if _, err := readBytes([]byte(bad), (*ReadOptions)(nil).withDefaults(), 5); !errors.Is(err, ErrMalformed) {
		t.Errorf("in windows of 5: inner multipart without close delimiter: %v", err)
	}
}

// Base64 bodies of every shape decode alike whatever the reads: lines of 76 or other
// lengths (not multiples of 4), LF or CRLF, blanks, long single lines.
func TestReadBase64Shapes(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	data := make([]byte, 300<<10)
	rng.Read(data)
	enc := []byte(encodeStd(data))
	for _, shape := range []struct {
		name string
		line int
		nl   string
	}{{"76 CRLF", 76, "\r\n"}, {"76 LF", 76, "\n"}, {"64 CRLF", 64, "\r\n"}, {"73 CRLF", 73, "\r\n"}, {"1 LF", 1, "\n"}, {"one line", 0, ""}, {"blanks", 75, " \r\n\t"}} {
		var body bytes.Buffer
		for rest := enc; len(rest) > 0; {
			n := len(rest)
			if shape.line > 0 {
				n = min(n, shape.line)
			}
			body.Write(rest[:n])
			body.WriteString(shape.nl)
			rest = rest[n:]
		}
		raw := top + "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			body.String() + "\r\n--q--\r\n"
		for _, rd := range []io.Reader{strings.NewReader(raw), iotest.HalfReader(strings.NewReader(raw)), io.MultiReader(strings.NewReader(raw))} {
			m, err := ReadMessage(rd, nil)
			if err != nil || len(m.Attachments) != 1 || !bytes.Equal(m.Attachments[0].Data, data) {
				t.Fatalf("%s: %v", shape.name, err)
			}
		}
	}
}

func encodeStd(b []byte) string {
	var w bytes.Buffer
	if err := writeBase64(&w, b); err != nil {
		panic(err)
	}
	return strings.ReplaceAll(w.String(), "\r\n", "")
}

// FuzzMultipartReader: where go-message's multipart reader accepts a body, ours gives the same
// parts (headers and bodies), through chunk and through Read.
func FuzzMultipartReader(f *testing.F) {
	f.Add("b", []byte("--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n"))
	f.Add("b", []byte("pre\n--b\n\nx\r\n--bb\n--b--\nepi"))
	f.Add("=_mss", []byte("--=_mss \r\n\r\nQUJD\r\n--=_mss-\r\n--=_mss--"))
	f.Add("q", []byte("--q\r\n\r\n--q\r\n\r\n\r\n--q--"))
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		if boundary == "" || strings.ContainsAny(boundary, "\r\n") || len(boundary) > 70 {
			return
		}
		want, werr := goMessageParts(bytes.NewReader(body), boundary)
		for _, useChunk := range []bool{false, true} {
			got, err := ourParts(iotest.HalfReader(bytes.NewReader(body)), boundary, useChunk)
			if werr == nil && (err != nil || fmt.Sprint(got) != fmt.Sprint(want)) {
				t.Fatalf("ours %q (%v), go-message %q", got, err, want)
			}
			// In memory, bodies read straight from the input in small windows.
			got, err = memParts(body, boundary, useChunk, 1+len(body)%13)
			if werr == nil && (err != nil || fmt.Sprint(got) != fmt.Sprint(want)) {
				t.Fatalf("in memory: ours %q (%v), go-message %q", got, err, want)
			}
		}
	})
}
