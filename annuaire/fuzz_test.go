package annuaire

import (
	"context"
	"path/filepath"
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
	f.Add(HeaderLine() + "\n")
	f.Add(HeaderLine())
	f.Add(HeaderLine() + "\n\n\r\n" + strings.Repeat("|", 30))
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

// FuzzFHIRBundle: any answer of the FHIR API either fails to decode or yields entries that
// are MSSanté BALs with an address, none flagged listeRouge.
func FuzzFHIRBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Organization","name":["x"],"_line":[null]}}]}`))
	fuzzBundles(f, []string{"practitioner-page1.json", "practitioner-page2.json", "practitionerrole.json", "organization.json"}, func(t *testing.T, fh *FHIR, b *fhirBundle) {
		published := map[string]bool{} // addresses of telecoms not flagged listeRouge
		for _, be := range b.Entry {
			for _, tc := range be.Resource.Telecom {
				rouge := false
				for _, x := range tc.Extension {
					for _, sub := range x.Extension {
						if x.URL == fhirMailboxMetaURL && sub.URL == "listeRouge" && sub.ValueBoolean != nil && *sub.ValueBoolean {
							rouge = true
						}
					}
				}
				if !rouge {
					published[tc.Value] = true
				}
			}
		}
		q := Query{}
		q.check()
		for _, e := range fh.bundleEntries(b, &q) {
			if e.Address == "" || !published[e.Address] {
				t.Fatalf("returned %q: empty or flagged listeRouge", e.Address)
			}
		}
		fh.nextLink(b)
	})
}

// FuzzContentDisposition: a file name is accepted only in the published pattern.
func FuzzContentDisposition(f *testing.F) {
	f.Add(`attachment; filename=Extraction_Correspondance_MSSante_202611280130.zip`)
	f.Add(`attachment; filename="../../Extraction_Correspondance_MSSante_202611280130.zip"`)
	f.Add(`attachment; filename*=UTF-8''Extraction_Correspondance_MSSante_202611280130.txt`)
	f.Fuzz(func(t *testing.T, cd string) {
		name, err := fileName(cd)
		if err != nil {
			return
		}
		if filepath.Base(name) != name || !extractionName.MatchString(name) {
			t.Fatalf("accepted %q", name)
		}
	})
}
