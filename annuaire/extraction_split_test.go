package annuaire

import (
	"slices"
	"strings"
	"testing"
)

// TestSplitNoFalseSeparator: a '}' (0x7D) just after a '|' in the same eight bytes was once
// taken for a separator by the eight-bytes-at-a-time split.
func TestSplitNoFalseSeparator(t *testing.T) {
	cols := make([]string, NumColumns)
	for i := range cols {
		cols[i] = "}"
	}
	cols[ColType], cols[ColAddress], cols[ColCountry] = "PER", "a}b@x.fr", "FRANCE"
	line := strings.Join(cols, "|")
	f, err := ParseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f {
		if f[i] != cols[i] {
			t.Fatalf("field %d = %q, want %q", i, f[i], cols[i])
		}
	}
	x := loadText(t, HeaderLine()+"\n"+line+"\n")
	if got := x.Lookup(nil, "A}B@X.FR"); len(got) != 1 || got[0].Postal.Country != "FRANCE" || got[0].Structure.Service != "}" {
		t.Fatalf("Lookup = %+v", got)
	}
}

// TestFieldsAtMatchesParseLine: the index's line cutter, which stops at the 30th separator,
// gives the columns ParseLine gives, for every line of a generated file and of the sample
// (CRLF line ends, a trailing '|', a last line without its line end).
func TestFieldsAtMatchesParseLine(t *testing.T) {
	for _, text := range []string{genText(t, 3000), sample, strings.TrimSuffix(sample, "\r\n"),
		HeaderLine() + "\n" + "PER|a}b@c" + strings.Repeat("|}", 29) + "x|"} {
		x, err := Load(strings.NewReader(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		checkIndex(t, x)
	}
}

// TestEntryAtTrims: the values the index's line parser must trim (spaces, a no-break space,
// a tab) and those it must keep (ending with an accented letter, a '}' after a separator), on
// lines with CRLF ends, a trailing '|', a line longer than 255 bytes, an empty last column at
// the end of the text.
func TestEntryAtTrims(t *testing.T) {
	line := func(vals map[Column]string) string {
		var f Fields
		f[ColType], f[ColAddress] = "PER", "a@b.fr"
		for c, v := range vals {
			f[c] = v
		}
		return strings.Join(f[:], "|")
	}
	lines := []string{
		line(map[Column]string{ColAddress: " x@b.fr", ColLastName: "DUPONT ", ColFirstName: "\u00a0Zoé", ColCountry: "FRANCE"}),
		line(map[Column]string{ColAddress: "y@b.fr", ColFirstName: "Zoé", ColLastName: "ANDRÉ", ColCountry: " FRANCE\t"}),
		line(map[Column]string{ColAddress: "z@b.fr", ColService: "}", ColStructureName: strings.Repeat("CENTRE HOSPITALIER ", 20)}) + "|",
		line(map[Column]string{ColType: " ORG", ColAddress: "w@b.fr", ColPPIDType: "8", ColPPID: "10000000001", ColDematerialisation: " O "}),
		line(map[Column]string{ColAddress: "v@b.fr"}),
		line(map[Column]string{ColAddress: "u@b.fr", ColFirstName: "Zoé", ColLastName: "ANDRÉ", ColService: "Maternité\u00a0"}),
		line(map[Column]string{ColAddress: "t@b.fr", ColFirstName: "Zoé", ColLastName: "ANDRÉ", ColService: "Maternité"}),
		// identifier types by name, outside the tables, and a flag in another spelling: the
		// record's flags, or a read of the line, give what finish gives
		line(map[Column]string{ColAddress: "s@b.fr", ColPPIDType: "RPPS", ColPPID: "10000000001", ColStructureIDType: "9", ColDematerialisation: "oui"}),
		line(map[Column]string{ColAddress: "r@b.fr", ColPPIDType: "X", ColStructureIDType: "3", ColStructureID: "12345678901234"}),
	}
	x := loadText(t, HeaderLine()+"\r\n"+strings.Join(lines, "\r\n"))
	checkIndex(t, x)
	for i, want := range []byte{recordTrim, recordTrim, recordLong, recordTrim, 0, recordTrim, 0, 0, 0} {
		if got := x.records[i][0] & (recordLong | recordTrim); got != want {
			t.Errorf("line %d: record flags %d, want %d", i, got, want)
		}
	}
	for _, c := range []struct{ addr, first, last, country string }{
		{"x@b.fr", "Zoé", "DUPONT", "FRANCE"}, {"y@b.fr", "Zoé", "ANDRÉ", "FRANCE"}, {"v@b.fr", "", "", ""},
		{"u@b.fr", "Zoé", "ANDRÉ", ""}, {"t@b.fr", "Zoé", "ANDRÉ", ""},
	} {
		es := x.Lookup(nil, c.addr)
		if len(es) != 1 || es[0].Person.FirstName != c.first || es[0].Person.LastName != c.last || es[0].Postal.Country != c.country {
			t.Errorf("Lookup(%q) = %+v", c.addr, es)
		}
	}
	if es := x.Lookup(nil, "w@b.fr"); len(es) != 1 || es[0].Type != ORG || !es[0].Dematerialisation || es[0].Person.NationalID != "810000000001" {
		t.Errorf("Lookup(w@b.fr) = %+v", es)
	}
}

// TestLookupPastSlotLines: a line whose index a slot cannot hold (past 2^21-1 lines, noLine) is
// cut, not read from the record of line noLine. Simulated on a small file by giving every slot
// that index; the entries must still be those of their own lines.
func TestLookupPastSlotLines(t *testing.T) {
	x := loadText(t, genText(t, 300))
	// A record for line noLine, with offsets that would give wrong entries if it were read.
	x.records = append(x.records, make([]lineRecord, noLine+1-len(x.records))...)
	x.records[noLine] = lineRecord{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38,
		40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62}
	for j, s := range x.addrSlots {
		if s != 0 && s&addrMany == 0 {
			x.addrSlots[j] = s | noLine<<lineShift
		}
	}
	checkIndex(t, x)
}

// FuzzIndex: for any text that loads, every line cuts as ParseLine cuts it, and its address
// is found by TypeOf and Lookup, in any ASCII case.
func FuzzIndex(f *testing.F) {
	f.Add(sample)
	f.Add(HeaderLine() + "\n" + "PER|a}b@c" + strings.Repeat("|}", 29) + "x|")
	f.Add(HeaderLine() + "\nORG| A@b |" + strings.Repeat("|", 29) + "\r\nPER|a@B" + strings.Repeat("|", 29))
	f.Fuzz(func(t *testing.T, text string) {
		x, err := Load(strings.NewReader(text), &LoadOptions{MaxSize: 1 << 20})
		if err != nil {
			return
		}
		checkIndex(t, x)
	})
}

func checkIndex(t *testing.T, x *Extraction) {
	t.Helper()
	for i, at := range x.starts {
		line := x.data[at:]
		if end := strings.IndexByte(line, '\n'); end >= 0 {
			line = line[:end]
		}
		want, err := ParseLine(strings.TrimSuffix(line, "\r"))
		if err != nil {
			t.Fatal(err)
		}
		var got Fields
		x.fieldsAt(at, &got)
		if got != want {
			t.Fatalf("line %d:\n got %q\nwant %q", i, got, want)
		}
		// The entries the index builds without Fields, from the line's record and by cutting
		// the line (trimming only the lines that need it), are the one ParseLine's Fields give.
		var fromRecord, fromCut Entry
		x.entryOf(at, i, x.recordFlags(i), &fromRecord)
		x.entryAt(at, &fromCut)
		if wantEntry := want.Entry(); fromRecord != wantEntry || fromCut != wantEntry {
			t.Fatalf("line %d: entry\nrecord %+v\n   cut %+v\n  want %+v", i, fromRecord, fromCut, wantEntry)
		}
		a := strings.TrimSpace(want[ColAddress])
		upper := strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, a)
		for _, q := range []string{a, upper} {
			typ, ok := x.TypeOf(q)
			es := x.Lookup(nil, q)
			if !ok || typ != BALType(trim(want[ColType])) && len(es) < 2 || !slices.ContainsFunc(es, func(e Entry) bool { return e.Address == a }) {
				t.Fatalf("line %d: address %q: TypeOf = %q, %v; Lookup = %d entries", i, q, typ, ok, len(es))
			}
		}
	}
}

func TestTypeOf(t *testing.T) {
	x := loadText(t, sample)
	for _, c := range []struct {
		addr string
		typ  BALType
		ok   bool
	}{
		{"helene.lefevre@medecin.mssante.fr", PER, true},
		{"CARDIO@ch-dax.mssante.fr", ORG, true}, // on two lines
		{"J.Lefebvre@Pharmacien.MSSante.fr", PER, true},
		{"nobody@medecin.mssante.fr", "", false},
		{"helene.lefevre@medecin.mssante.f", "", false},
		{"", "", false},
	} {
		if typ, ok := x.TypeOf(c.addr); typ != c.typ || ok != c.ok {
			t.Errorf("TypeOf(%q) = %q, %v; want %q, %v", c.addr, typ, ok, c.typ, c.ok)
		}
	}
	// On a generated file, TypeOf agrees with Lookup for every address.
	x = loadText(t, genText(t, 3000))
	for _, at := range x.starts {
		a := lineAddress(x.data, at)
		typ, ok := x.TypeOf(a)
		if es := x.Lookup(nil, a); !ok || len(es) == 0 || es[0].Type != typ {
			t.Fatalf("TypeOf(%q) = %q, %v; Lookup: %+v", a, typ, ok, es)
		}
	}
	if n := testing.AllocsPerRun(100, func() { x.TypeOf("Nobody@Nowhere.example") }); n != 0 {
		t.Errorf("TypeOf allocates %v times", n)
	}
}

// TestLookupSpacedAddress: an address with spaces around it in the file is found without
// them, and a query with spaces finds nothing (the address column is trimmed, the query not).
func TestLookupSpacedAddress(t *testing.T) {
	_, body, _ := strings.Cut(sample, "\n")
	text := HeaderLine() + "\n" + strings.Replace(body, "|helene.lefevre@medecin.mssante.fr|", "| helene.lefevre@medecin.mssante.fr\u00a0|", 1)
	x := loadText(t, text)
	if got := x.Lookup(nil, "Helene.Lefevre@medecin.mssante.fr"); len(got) != 1 || got[0].Person.LastName != "LEFÈVRE" {
		t.Fatalf("Lookup = %+v", got)
	}
	for _, q := range []string{" helene.lefevre@medecin.mssante.fr", " helene.lefevre@medecin.mssante.fr\u00a0", "helene.lefevre@medecin.mssante.fr\u00a0"} {
		if _, ok := x.TypeOf(q); ok {
			t.Errorf("TypeOf(%q) found an address", q)
		}
	}
}

// FuzzEqualFoldASCII checks the eight-bytes-at-a-time address comparison and capital-letter
// test against byte-by-byte references, on any bytes (the high bit set too: no carry may cross
// a byte).
func FuzzEqualFoldASCII(f *testing.F) {
	f.Add("Jean.Dupont@Medecin.MSSante.fr", "jean.dupont@medecin.mssante.fr")
	f.Add("@[`{\x80\xc1\xdaZ", "@[`{\x80\xe1\xfaz")
	f.Add("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
	f.Fuzz(func(t *testing.T, a, b string) {
		lower := func(s string) string {
			r := []byte(s)
			for i, c := range r {
				if 'A' <= c && c <= 'Z' {
					r[i] = c + 'a' - 'A'
				}
			}
			return string(r)
		}
		if got, want := equalFoldASCII(a, b), lower(a) == lower(b); got != want {
			t.Errorf("equalFoldASCII(%q, %q) = %v, want %v", a, b, got, want)
		}
		if got, want := hasUpperASCII(a), lower(a) != a; got != want {
			t.Errorf("hasUpperASCII(%q) = %v, want %v", a, got, want)
		}
	})
}
