package annuaire

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseLine: any line either fails with ErrFormat or gives an Entry that survives a
// round trip through its columns.
func FuzzParseLine(f *testing.F) {
	_, body, _ := strings.Cut(sample, "\n")
	for _, l := range strings.Split(body, "\r\n") {
		f.Add(l)
	}
	f.Add(strings.Repeat("|", 30))
	f.Add(strings.Repeat("|", 31))
	f.Add("PER|a@b|RPPS|1|||||||||||||||||||||||||||")
	f.Fuzz(func(t *testing.T, line string) {
		fl, err := ParseLine(line)
		// The reference split: 31 fields, or 32 with an empty last one.
		ref := strings.Split(line, "|")
		refOK := len(ref) == int(NumColumns) || len(ref) == int(NumColumns)+1 && ref[NumColumns] == ""
		if utf8.ValidString(line) && len(line) <= MaxLineSize && refOK != (err == nil) {
			t.Fatalf("ParseLine: %v, reference split: %d fields", err, len(ref))
		}
		if err != nil {
			return
		}
		for i := range fl {
			if fl[i] != ref[i] {
				t.Fatalf("field %d: %q, reference %q", i, fl[i], ref[i])
			}
		}
		e := fl.Entry()
		f2 := e.Fields()
		again, err := ParseLine(strings.Join(f2[:], "|"))
		if err != nil {
			t.Fatalf("the columns of an entry do not parse: %v", err)
		}
		if e2 := again.Entry(); e2 != e {
			t.Fatalf("round trip:\n%+v\n%+v", e, e2)
		}
	})
}

// FuzzLoad: any file either fails or loads into an index whose every address is found.
func FuzzLoad(f *testing.F) {
	f.Add(sample)
	f.Add(HeaderLine + "\n")
	f.Add(HeaderLine)
	f.Add(HeaderLine + "\n\n\r\n" + strings.Repeat("|", 30))
	f.Fuzz(func(t *testing.T, text string) {
		x, err := Load(strings.NewReader(text), &LoadOptions{MaxSize: 1 << 20})
		if err != nil {
			return
		}
		for i := range int32(x.Len()) {
			e := x.entry(i)
			if len(x.Lookup(nil, e.Address)) == 0 {
				t.Fatalf("line %d: address %q not found", i, e.Address)
			}
			if k := NameKey(&e); k != "" {
				r, err := x.Search(context.Background(), Query{Name: k, Limit: MaxLimit})
				if err != nil || len(r.Entries) == 0 {
					t.Fatalf("line %d: name %q not found: %v", i, k, err)
				}
			}
		}
	})
}
