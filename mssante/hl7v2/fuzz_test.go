package hl7v2_test

import (
	"strings"
	"testing"

	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// FuzzParse: any input gives a message or a named error, never a panic; what parses encodes,
// and what it encodes parses back to as many segments with the same values.
func FuzzParse(f *testing.F) {
	f.Add([]byte(mdmT02))
	f.Add([]byte("MSH#!*%@#A#B\rNTE#1#x%F%y%X0D0A%t%H%\r"))
	f.Add([]byte("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||FRA|8859/1\rNTE|1||caf\xe9\r"))
	f.Add([]byte("MSH|^~\\&|A\rMSA|AA|1\rERR||MSH^1^12|203^x^y|E\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7v2.Parse(data, &hl7v2.ReadOptions{MaxBytes: 1 << 16, MaxParts: 64, MaxFields: 64, MaxSegments: 64})
		if err != nil {
			return
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("parsed message does not encode: %v", err)
		}
		if strings.HasPrefix(strings.ToUpper(m.Header(18, 1)), "8859") {
			return // Encode writes UTF-8 text; the label is the caller's to change
		}
		back, err := hl7v2.Parse(out, nil)
		if err != nil {
			t.Fatalf("encoded message does not parse: %v\n%q", err, out)
		}
		if len(back.Segments) != len(m.Segments) {
			t.Fatalf("%d segments, then %d", len(m.Segments), len(back.Segments))
		}
		for i, s := range m.Segments {
			b := back.Segments[i]
			for f := 1; f <= s.Fields(); f++ {
				for r := 0; r < s.Reps(f); r++ {
					for c := 1; c <= len(s.Value(f, r)); c++ {
						if s.At(f, r, c, 1) != b.At(f, r, c, 1) {
							t.Fatalf("%s-%d.%d: %q then %q", s.Name, f, c, s.At(f, r, c, 1), b.At(f, r, c, 1))
						}
					}
				}
			}
		}
	})
}
