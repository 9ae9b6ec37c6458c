package annuaire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// searchAllReference is the search the extraction made before it selected pages on line
// offsets: build every matching entry, sort them all, cut the page. The page-first search
// must give the same answers and cursors.
func searchAllReference(x *Extraction, q Query) *Result {
	offset, _ := q.checkOffset()
	var all []Entry
	for i := range int32(x.Len()) {
		f := x.fields(i)
		e := f.Entry()
		if q.matchesFields(&f) && q.matches(&e, NameKey(&e)) {
			all = append(all, e)
		}
	}
	sortEntries(all, q.Name != "")
	return page(all, offset, q.limit())
}

// TestSearchPageMatchesFullSort compares every criterion combination, over several pages, with
// the full build-and-sort search.
func TestSearchPageMatchesFullSort(t *testing.T) {
	x := loadText(t, genText(t, 5000))
	ctx := context.Background()
	var some []Entry
	for i := int32(0); i < int32(x.Len()); i += 97 {
		some = append(some, x.entry(i))
	}
	e := some[3]
	count := map[string]int{}
	dup := "" // an address on several lines
	for i := range int32(x.Len()) {
		a := x.entry(i).Address
		if count[a]++; count[a] == 2 && dup == "" {
			dup = a
		}
	}
	if dup == "" {
		t.Fatal("the generated file has no address on several lines")
	}
	var per, org Entry
	for _, s := range some {
		if s.Type == PER && s.Person.NationalID != "" && per.Address == "" {
			per = s
		}
		if s.Structure.ID != "" && org.Address == "" {
			org = s
		}
	}
	queries := []Query{
		{},
		{Type: PER},
		{Type: ORG},
		{Departement: e.Postal.Departement},
		{PostalCode: e.Postal.PostalCode, Type: e.Type},
		{Profession: per.Person.ProfessionCode},
		{Address: e.Address},
		{Address: strings.ToUpper(e.Address), Type: e.Type},
		{Address: per.Address, Type: ORG},
		{Address: dup},
		{NationalID: per.Person.NationalID},
		{NationalID: per.Person.NationalID, Departement: per.Postal.Departement},
		{StructureID: org.Structure.ID},
		{StructureID: org.Structure.ID, StructureIDType: org.Structure.IDType},
		{StructureID: org.Structure.ID, Type: ORG},
		{Departement: "nowhere"},
		{Name: "L"},
		{Name: NameKey(&per)[:3], Type: PER},
		{Name: NameKey(&e)},
		{Name: "ZZZZZZ"},
	}
	for _, q := range queries {
		for _, limit := range []int{1, 7, 100} {
			q := q
			q.Limit = limit
			for pages := 0; pages < 4; pages++ {
				want := searchAllReference(x, q)
				got, err := x.Search(ctx, q)
				if err != nil {
					t.Fatalf("%+v: %v", q, err)
				}
				if got.Next != want.Next || !slices.Equal(got.Entries, want.Entries) {
					t.Fatalf("%+v: got %d entries next %q, want %d next %q", q, len(got.Entries), got.Next, len(want.Entries), want.Next)
				}
				if got.Next == "" {
					break
				}
				q.Cursor = got.Next
			}
		}
	}
	// Every page of a search with no criterion, through the lines that share an address.
	q := Query{Limit: 1500}
	for {
		want := searchAllReference(x, q)
		got, err := x.Search(ctx, q)
		if err != nil || got.Next != want.Next || !slices.Equal(got.Entries, want.Entries) {
			t.Fatalf("%+v: got %d entries next %q (%v), want %d next %q", q, len(got.Entries), got.Next, err, len(want.Entries), want.Next)
		}
		if got.Next == "" {
			break
		}
		q.Cursor = got.Next
	}
	// A cursor past the end gives an empty last page, whatever the criteria.
	for _, cursor := range []string{fmt.Sprint(x.Len()), fmt.Sprint(x.Len() + 5), fmt.Sprint(math.MaxInt)} {
		for _, q := range []Query{{}, {Type: PER}, {Address: dup}, {Name: "A"}} {
			q.Cursor = cursor
			got, err := x.Search(ctx, q)
			if err != nil || len(got.Entries) != 0 || got.Next != "" {
				t.Fatalf("cursor %s past the end: %+v, %v", cursor, got, err)
			}
		}
	}
}

// TestSearchAllAllocs checks that a search with no criterion builds the page only: its
// allocations and bytes do not grow with the file (before, a 200,000-line file cost about
// 100 MB per search).
func TestSearchAllAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("large generated file")
	}
	x := loadText(t, genText(t, 200000))
	ctx := context.Background()
	q := Query{Limit: 10}
	if r, err := x.Search(ctx, q); err != nil || len(r.Entries) != 10 || r.Next != "10" {
		t.Fatalf("first page: %v, %v", r, err)
	}
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := x.Search(ctx, q); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("%.0f allocations per search of 10 entries, want <= 10", allocs)
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x.Search(ctx, q)
		}
	})
	if per := res.AllocedBytesPerOp(); per > 64<<10 {
		t.Errorf("%d bytes allocated per search of 10 entries, want <= 64 KiB", per)
	}
}

// BenchmarkSearchAll is a search with no criterion, first page of 10, on 100,000 lines.
func BenchmarkSearchAll(b *testing.B) {
	x := loadText(b, genText(b, 100000))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := x.Search(ctx, Query{Limit: 10}); len(r.Entries) != 10 {
			b.Fatal("short page")
		}
	}
}

// BenchmarkSearchDepartement is a broad search (one département), first page of 10.
func BenchmarkSearchDepartement(b *testing.B) {
	x := loadText(b, genText(b, 100000))
	ctx := context.Background()
	dep := ""
	for i := int32(0); dep == ""; i++ {
		dep = x.entry(i).Postal.Departement
	}
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := x.Search(ctx, Query{Departement: dep, Limit: 10}); len(r.Entries) == 0 {
			b.Fatal("empty page")
		}
	}
}

// TestTrim checks trim against strings.TrimSpace: accented letters at either end are kept
// without the slow path, Unicode spaces are still trimmed.
func TestTrim(t *testing.T) {
	for _, s := range []string{
		"", " ", "a", " a ", "\ta\r\n", "DUPONT", "Hélène", "LEFÈVRE", "É", "é", "Éloïse", "\u00a0",
		"ANDRÉ\u00a0", "\u00a0ANDRÉ", "x\u2029", "\u2029x", "x\u3000", "\u3000é\u3000", "x\u0085",
		"\u0085x", "x\u202f", "x\u1680", "x\u200b", "\u200bx", "x\x7f", "\x01x\x01", "\v\fx",
		"x\xe9", "\xe9x", "\xc2", "x\xc2\xa0", "日本", " 日本 ", "x\ufeff", "x\u07ff", "\u07ffx",
		"x\u0100", "Œ", "xÿ", "x\u00bf", "\u00bfx", "\xc3", "x\xc3", "x\xc3\xc3", "\xc3 ", " \xc3",
		"\xdf\x80\u3000", "x\xc3\x85", "x\xc2\x85",
	} {
		if got, want := trim(s), strings.TrimSpace(s); got != want {
			t.Errorf("trim(%q) = %q, want %q", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { trimSink = trim("Hélène") }); n != 0 {
		t.Errorf("trim allocates %v times", n)
	}
}

// trimSink keeps the result of trim alive in TestTrim, so that the compiler cannot drop a
// call whose result is unused and the allocation count is that of a real call.
var trimSink string

// BenchmarkTrimAccented trims values with accented letters, some at the end: trim and
// trimSlow keep them as they are, without calling strings.TrimSpace.
func BenchmarkTrimAccented(b *testing.B) {
	vals := []string{"LEFÈVRE", "Hélène", "ANDRÉ", "DUPONT", "Médecin", "CHÂTEAU-THIERRY", "René"}
	for b.Loop() {
		for _, v := range vals {
			if trim(v) == "" {
				b.Fatal("empty")
			}
		}
	}
}

// FuzzTrim checks trim against strings.TrimSpace on any bytes.
func FuzzTrim(f *testing.F) {
	for _, s := range []string{"Hélène", "ANDRÉ\u00a0", "x\u2029", "\xc3", " a "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := trim(s), strings.TrimSpace(s); got != want {
			t.Errorf("trim(%q) = %q, want %q", s, got, want)
		}
	})
}

// FuzzSearchPage checks any query without a name (criteria, limit, cursor) against the full
// build-and-sort search, on a generated extraction whose lines share values.
func FuzzSearchPage(f *testing.F) {
	x := loadText(f, genText(f, 300))
	e := x.entry(7)
	f.Add("", "", "", "", "", 0, "")
	f.Add(string(e.Type), e.Postal.Departement, "", "", "", 3, "2")
	f.Add("", "", e.Postal.PostalCode, e.Person.ProfessionCode, "", 1, "0")
	f.Add("", "", "", "", strings.ToUpper(e.Address), 5, "")
	f.Add("ORG", "", "", "", "", 10, "299")
	f.Fuzz(func(t *testing.T, typ, dep, postal, profession, address string, limit int, cursor string) {
		q := Query{Type: BALType(typ), Departement: dep, PostalCode: postal, Profession: profession,
			Address: address, Limit: limit, Cursor: cursor}
		got, err := x.Search(context.Background(), q)
		if err != nil {
			if !errors.Is(err, ErrInvalidQuery) {
				t.Fatalf("%+v: %v", q, err)
			}
			return
		}
		if want := searchAllReference(x, q); got.Next != want.Next || !slices.Equal(got.Entries, want.Entries) {
			t.Fatalf("%+v: got %d entries next %q, want %d next %q", q, len(got.Entries), got.Next, len(want.Entries), want.Next)
		}
	})
}
