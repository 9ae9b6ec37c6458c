package mssante

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// base64Reference decodes body the slow, obvious way: drop line ends and blanks, decode.
func base64Reference(body []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, body)
	return base64.StdEncoding.DecodeString(string(clean))
}

// checkDecodeBase64 decodes body as a part (pieces in place in the multipart buffer, read in
// pieces of every size by the readers) and as a plain reader, against base64Reference.
func checkDecodeBase64(t *testing.T, body []byte) {
	t.Helper()
	want, werr := base64Reference(body)
	if werr != nil {
		want = nil
	}
	msg := "--q\r\nContent-Transfer-Encoding: base64\r\n\r\n" + string(body) + "\r\n--q--\r\n"
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r }, iotest.HalfReader, iotest.OneByteReader,
	} {
		mr, err := newMultipartReader(wrap(strings.NewReader(msg)), "q")
		if err != nil {
			t.Fatal(err)
		}
		p, err := mr.nextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBase64(p)
		mr.release()
		if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("body %.200q: got %d bytes (%v), want %d bytes (%v)", body, len(got), err, len(want), werr)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	}
	got, err := decodeBase64(iotest.HalfReader(bytes.NewReader(body)))
	if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("plain reader, body %.200q: %v, want %v", body, err, werr)
	}
}

// Bodies of random shapes: line lengths (multiples of 4 or not, changing), CRLF, LF, lone CR,
// blanks, padding in the middle, bad characters.
func TestDecodeBase64Shapes(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	for i := 0; i < 300; i++ {
		data := make([]byte, rng.Intn(3000))
		rng.Read(data)
		enc := base64.StdEncoding.EncodeToString(data)
		var b strings.Builder
		line := []int{76, 76, 64, 4, 1, 73, 200}[rng.Intn(7)]
		for len(enc) > 0 {
			n := min(len(enc), line)
			if rng.Intn(10) == 0 {
				n = min(len(enc), 1+rng.Intn(100))
			}
			b.WriteString(enc[:n])
			enc = enc[n:]
			b.WriteString([]string{"\r\n", "\r\n", "\n", " \r\n", "\t\n", "\r\n\r\n", "\r"}[rng.Intn(7)])
		}
		body := []byte(b.String())
		switch rng.Intn(8) {
		case 0: // a bad character
			if len(body) > 0 {
				body[rng.Intn(len(body))] = "!-*."[rng.Intn(4)]
			}
		case 1: // data after the final padding
			body = append(body, "QUJD\r\n"...)
		case 2: // a quantum short
			if len(body) > 3 {
				body = bytes.TrimRight(body, "\r\n \t")
				body = body[:len(body)-1]
			}
		}
		checkDecodeBase64(t, body)
	}
	// Large bodies cross pieces: 76-column lines, and one long line.
	data := make([]byte, 200<<10)
	rng.Read(data)
	var wrapped bytes.Buffer
	if err := writeBase64(&wrapped, data); err != nil {
		t.Fatal(err)
	}
	checkDecodeBase64(t, wrapped.Bytes())
	checkDecodeBase64(t, []byte(base64.StdEncoding.EncodeToString(data)))
}

// FuzzDecodeBase64: any body decodes as base64Reference does, whatever the pieces.
func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("QUJD\r\nREVG\r\n"))
	f.Add([]byte("QUJDRA==\r\n"))
	f.Add([]byte("QU JD\r\nRE\tVG"))
	f.Add([]byte("QUJ\r\nDREVG\nQQ=="))
	f.Add([]byte("QQ==QUJD"))
	f.Add([]byte("+/+/QUJD09az\r\n/+9a"))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeQuanta(t, body)
		if bytes.Contains(body, []byte("--q")) {
			return // would end the part early
		}
		checkDecodeBase64(t, body)
	})
}

// A decoding error gives its buffer back whole: a later decoding reads into it (it once came
// back empty, and a plain reader then never got past the first read).
func TestDecodeBase64ErrorKeepsBuffer(t *testing.T) {
	for i := 0; i < 4; i++ {
		msg := "--q\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\nQU!D\r\n--q--\r\n"
		mr, _ := newMultipartReader(strings.NewReader(msg), "q")
		p, err := mr.nextPart()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeBase64(p); !errors.Is(err, ErrMalformed) {
			t.Fatalf("bad base64: %v", err)
		}
		mr.release()
		b := rawPool.Get().(*[]byte)
		if len(*b) < rawChunk {
			t.Fatalf("pooled buffer of %d bytes after an error", len(*b))
		}
		rawPool.Put(b)
	}
}

// Reading from a source that tells its length presizes at most once without proof of size:
// many large attachments cost a small multiple of the message, and none keeps much unused
// room.
func TestReadPresizeBounded(t *testing.T) {
	m := sampleMessage()
	for i := 0; i < 24; i++ {
		data := make([]byte, 150<<10)
		for j := range data {
			data[j] = byte(i * j)
		}
		m.Attachments = append(m.Attachments, Attachment{Filename: "a.bin", ContentType: "application/octet-stream", Data: data})
	}
	raw := compose(t, m, &ComposeOptions{MaxSize: -1})
	ReadMessage(bytes.NewReader(raw), nil) // warm the pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := ReadMessage(bytes.NewReader(raw), nil)
	runtime.ReadMemStats(&after)
	if err != nil || len(got.Attachments) != len(m.Attachments) {
		t.Fatal(err)
	}
	for i, a := range got.Attachments {
		if !bytes.Equal(a.Data, m.Attachments[i].Data) || cap(a.Data) > 2*len(a.Data) {
			t.Fatalf("attachment %d: %d bytes, capacity %d", i, len(a.Data), cap(a.Data))
		}
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(4*len(raw)) && !raceDetector {
		t.Errorf("allocated %d bytes to read a %d-byte message", grown, len(raw))
	}
}

// checkDecodeQuanta: decodeQuanta accepts s exactly when s is whole quanta of the standard
// alphabet, and then gives what encoding/base64 gives, writing only its len(s)/4*3 bytes.
func checkDecodeQuanta(t *testing.T, s []byte) {
	t.Helper()
	n := len(s) / 4 * 3
	buf := make([]byte, n+8)
	for i := range buf {
		buf[i] = 0xA5
	}
	ok := decodeQuanta(buf[:n:n], s)
	wantOK := len(s)%4 == 0 && !bytes.ContainsFunc(s, func(r rune) bool {
		return !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", r)
	})
	if ok != wantOK {
		t.Fatalf("%q: decodeQuanta says %v", s, ok)
	}
	if !bytes.Equal(buf[n:], bytes.Repeat([]byte{0xA5}, 8)) {
		t.Fatalf("%q: written past its room", s)
	}
	if ok {
		want, err := base64.StdEncoding.DecodeString(string(s))
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("%q: %x, encoding/base64 %x (%v)", s, buf[:n], want, err)
		}
	}
}

// Every byte value at every place of a quantum, in the 8-character steps and in the last
// quantum; every length up to 40.
func TestDecodeQuanta(t *testing.T) {
	for _, s := range []string{"QUJDREVG", "QUJDREVGSElK", "QUJD"} {
		for i := range len(s) {
			for c := range 256 {
				b := []byte(s)
				b[i] = byte(c)
				checkDecodeQuanta(t, b)
			}
		}
	}
	enc := []byte(base64.StdEncoding.EncodeToString([]byte("MSSanté: messagerie sécurisée de santé")))
	for n := 0; n <= 40; n++ {
		checkDecodeQuanta(t, enc[:n])
	}
}
