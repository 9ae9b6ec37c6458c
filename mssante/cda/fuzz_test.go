package cda

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it must return a document or an error, never
// panic, and whatever it accepts must marshal.
func FuzzParse(f *testing.F) {
	for _, k := range []Kind{KindLDLSES, KindN1} {
		d, err := Build(Sample(k))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := Marshal(d)
		f.Add(b)
	}
	f.Add([]byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><component><nonXMLBody><text representation="B64">QUJD</text></nonXMLBody></component></ClinicalDocument>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseBytes(data, &ParseOptions{Strict: len(data)%2 == 0})
		if err != nil {
			return
		}
		Validate(d)
		d.Patient()
		d.Content()
		if _, err := Marshal(d); err != nil {
			t.Fatalf("accepted document does not marshal: %v", err)
		}
		_ = bytes.MinRead
	})
}
