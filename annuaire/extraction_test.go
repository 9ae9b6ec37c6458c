package annuaire

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mssante-go/sdk/annuaire/annuairetest"
)

// genText returns a generated extraction of n lines (cached per n).
var genCache sync.Map

func genText(t testing.TB, n int) string {
	t.Helper()
	if v, ok := genCache.Load(n); ok {
		return v.(string)
	}
	var b bytes.Buffer
	if err := annuairetest.WriteExtraction(&b, n, 42); err != nil {
		t.Fatal(err)
	}
	genCache.Store(n, b.String())
	return b.String()
}

func loadText(t testing.TB, text string) *Extraction {
	t.Helper()
	x, err := Load(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// sample is a hand-written extraction: two lines share an address, names carry accents.
const sample = "Type de BAL|Adresse BAL|Type Identifiant PP|Identifiant PP|Identification nationale PP|Type identifiant structure|Identification Structure|Service de rattachement|Civilité d'exercice|Nom d'exercice|Prénom d'exercice|Catégorie profession|Libellé de catégorie profession|Code Profession|Libellé Profession|Code savoir-faire|Libellé savoir-faire|Dématérialisation|Raison Sociale structure BAL|Enseigne commerciale structure BAL|L2COMPLEMENTLOCALISATION|L3COMPLEMENTDISTRIBUTION|L4NUMEROVOIE|L4COMPLEMENTNUMEROVOIE|NL4TYPEVOIE|L4LIBELLEVOIE|L5LIEUDITMENTION|L6LIGNEACHEMINEMENT|Code postal|Département|Pays\r\n" +
	"PER|helene.lefevre@medecin.mssante.fr|8|10003456786|810003456786||||MME|LEFÈVRE|Hélène|C|Civil|10|Médecin|SM54|Qualifié en Médecine Générale (SM)|O|||||12||R|DE LA PAIX||40100 DAX|40100|40|FRANCE\r\n" +
	"ORG|cardio@ch-dax.mssante.fr||||1|1400780284|Cardiologie||||||||||N|CENTRE HOSPITALIER DE DAX|CH Dax||BP 323||||BD YVES DU MANOIR||40107 DAX CEDEX|40107|40|FRANCE|\r\n" +
	"ORG|cardio@ch-dax.mssante.fr||||1|1400780284|Cardiologie pédiatrique||||||||||O|CENTRE HOSPITALIER DE DAX|CH Dax||BP 323||||BD YVES DU MANOIR||40107 DAX CEDEX|40107|40|FRANCE\r\n" +
	"PER|j.lefebvre@pharmacien.mssante.fr|0|401234567|0401234567|3|312345678901234||M|LEFEBVRE|Jean-Noël|C|Civil|21|Pharmacien|||1|PHARMACIE DU CENTRE||||3|B|PL|DU MARCHÉ||75012 PARIS|75012|75|FRANCE\r\n"

func TestExtractionSample(t *testing.T) {
	x := loadText(t, sample)
	if x.Len() != 4 {
		t.Fatalf("Len = %d, want 4", x.Len())
	}
	ctx := context.Background()
	got := x.Lookup(nil, "Cardio@CH-Dax.mssante.fr")
	if len(got) != 2 || got[0].Structure.Service != "Cardiologie" || got[1].Structure.Service != "Cardiologie pédiatrique" {
		t.Fatalf("Lookup of a duplicated address = %+v", got)
	}
	e := x.Lookup(nil, "helene.lefevre@medecin.mssante.fr")[0]
	want := Entry{
		Address: "helene.lefevre@medecin.mssante.fr", Type: PER,
		Person: Person{NationalID: "810003456786", IDType: "RPPS", ID: "10003456786", Civility: "MME",
			LastName: "LEFÈVRE", FirstName: "Hélène", ProfessionCategory: "C", ProfessionCategoryLabel: "Civil",
			ProfessionCode: "10", ProfessionLabel: "Médecin", SpecialtyCode: "SM54",
			SpecialtyLabel: "Qualifié en Médecine Générale (SM)"},
		Postal:            PostalAddress{Number: "12", StreetType: "R", Street: "DE LA PAIX", CityLine: "40100 DAX", PostalCode: "40100", Departement: "40", Country: "FRANCE"},
		Dematerialisation: true,
	}
	if e != want {
		t.Fatalf("entry\n got %+v\nwant %+v", e, want)
	}
	if e.Person.RPPS() != "10003456786" {
		t.Errorf("RPPS() = %q", e.Person.RPPS())
	}
	tests := []struct {
		name  string
		q     Query
		addrs []string
	}{
		{"name prefix, accents and case ignored", Query{Name: "lefe"}, []string{"j.lefebvre@pharmacien.mssante.fr", "helene.lefevre@medecin.mssante.fr"}},
		{"name with first name", Query{Name: "Lefèvre hel"}, []string{"helene.lefevre@medecin.mssante.fr"}},
		{"structure name", Query{Name: "centre hosp"}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr"}},
		{"rpps", Query{RPPS: "10003456786"}, []string{"helene.lefevre@medecin.mssante.fr"}},
		{"national id adeli", Query{NationalID: "0401234567"}, []string{"j.lefebvre@pharmacien.mssante.fr"}},
		{"rpps and other national id", Query{RPPS: "10003456786", NationalID: "0401234567"}, nil},
		{"finess without prefix", Query{StructureID: "400780284"}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr"}},
		{"finess with prefix and type", Query{StructureID: "1400780284", StructureIDType: "FINESS"}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr"}},
		{"siret typed as finess", Query{StructureID: "12345678901234", StructureIDType: "FINESS"}, nil},
		{"siret", Query{StructureID: "12345678901234"}, []string{"j.lefebvre@pharmacien.mssante.fr"}},
		{"postal code", Query{PostalCode: "40107"}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr"}},
		{"departement", Query{Departement: "40"}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr", "helene.lefevre@medecin.mssante.fr"}},
		{"profession and type", Query{Profession: "21", Type: PER}, []string{"j.lefebvre@pharmacien.mssante.fr"}},
		{"type", Query{Type: ORG}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr"}},
		{"address and wrong type", Query{Address: "cardio@ch-dax.mssante.fr", Type: PER}, nil},
		{"everything", Query{}, []string{"cardio@ch-dax.mssante.fr", "cardio@ch-dax.mssante.fr", "helene.lefevre@medecin.mssante.fr", "j.lefebvre@pharmacien.mssante.fr"}},
		{"unknown address", Query{Address: "nobody@nowhere.mssante.fr"}, nil},
		{"wildcard is literal", Query{Name: "*a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := x.Search(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, e := range r.Entries {
				addrs = append(addrs, e.Address)
			}
			if strings.Join(addrs, " ") != strings.Join(tt.addrs, " ") {
				t.Errorf("got %v, want %v", addrs, tt.addrs)
			}
		})
	}
}

func TestExtractionPaging(t *testing.T) {
	x := loadText(t, genText(t, 3000))
	ctx := context.Background()
	for _, q := range []Query{{Type: PER}, {Name: "M"}, {Departement: "75"}} {
		full, err := x.Search(ctx, Query{Type: q.Type, Name: q.Name, Departement: q.Departement, Limit: MaxLimit})
		if err != nil || full.Next != "" {
			t.Fatal(err, full.Next)
		}
		if len(full.Entries) < 20 {
			t.Fatalf("%+v: only %d entries", q, len(full.Entries))
		}
		var paged []Entry
		q.Limit = 97
		for pages := 0; ; pages++ {
			r, err := x.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, r.Entries...)
			if r.Next == "" {
				break
			}
			if pages > 1000 {
				t.Fatal("paging does not end")
			}
			q.Cursor = r.Next
		}
		if len(paged) != len(full.Entries) {
			t.Fatalf("%+v: %d paged entries, %d in one page", q, len(paged), len(full.Entries))
		}
		for i := range paged {
			if paged[i] != full.Entries[i] {
				t.Fatalf("%+v: entry %d differs between paged and full", q, i)
			}
		}
	}
	if _, err := x.Search(ctx, Query{Cursor: "x"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad cursor: %v", err)
	}
	if _, err := x.Search(ctx, Query{Type: "XYZ"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad type: %v", err)
	}
	if _, err := x.Search(ctx, Query{Name: "*"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("name without letters: %v", err)
	}
	if _, err := x.Search(ctx, Query{RPPS: "123"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad RPPS: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := x.Search(cctx, Query{Departement: "75"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled scan: %v", err)
	}
}

func TestExtractionFormatErrors(t *testing.T) {
	header, body, _ := strings.Cut(sample, "\n")
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "the header has 1 columns, want 31"},
		{"column renamed", strings.Replace(header, "Code postal", "Code INSEE", 1) + "\n" + body, `column 29 is "Code INSEE"`},
		{"column missing", strings.Replace(header, "|Pays", "", 1) + "\n" + body, "the header has 30 columns"},
		{"column added", strings.Replace(header, "|Pays", "|Pays|Téléphone", 1) + "\n" + body, "the header has 32 columns"},
		{"short line", header + "\nPER|a@b.fr|8\n", "3 fields"},
		{"long line", header + "\n" + strings.Repeat("x|", 40) + "\n", "more than 31"},
		{"not utf-8", header + "\nPER|\xff" + strings.Repeat("|", 30) + "\n", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.text), nil)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrFormat containing %q", err, tt.want)
			}
		})
	}
	if _, err := Load(strings.NewReader(sample), &LoadOptions{MaxSize: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxSize: %v", err)
	}
	// A header with a BOM and other case/accents is the same header.
	if _, err := Load(strings.NewReader("\uFEFF"+strings.ToUpper(strings.ReplaceAll(sample, "é", "e"))), nil); err != nil {
		t.Errorf("BOM and case: %v", err)
	}
}

func TestLoadFileZip(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, files map[string]string) string {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for n, c := range files {
			w, _ := zw.Create(n)
			w.Write([]byte(c))
		}
		zw.Close()
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o600)
		return p
	}
	x, err := LoadFile(write("ok.zip", map[string]string{"Extraction_Correspondance_MSSante_202611280130.txt": sample}), nil)
	if err != nil || x.Len() != 4 {
		t.Fatalf("zip: %v", err)
	}
	if _, err := LoadFile(write("two.zip", map[string]string{"a.txt": sample, "b.txt": sample}), nil); !errors.Is(err, ErrFormat) {
		t.Errorf("two files: %v", err)
	}
	if _, err := LoadFile(write("none.zip", map[string]string{"a.csv": sample}), nil); !errors.Is(err, ErrFormat) {
		t.Errorf("no txt: %v", err)
	}
	if _, err := LoadFile(write("big.zip", map[string]string{"a.txt": sample}), &LoadOptions{MaxSize: 10}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	p := filepath.Join(dir, "x.txt")
	os.WriteFile(p, []byte(sample), 0o600)
	if x, err := LoadFile(p, nil); err != nil || x.Len() != 4 {
		t.Errorf("txt: %v", err)
	}
}

func BenchmarkLookup(b *testing.B) {
	x := loadText(b, genText(b, 100000))
	r, _ := x.Search(context.Background(), Query{Limit: 1000})
	var buf []Entry
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if buf = x.Lookup(buf[:0], r.Entries[i%len(r.Entries)].Address); len(buf) == 0 {
			b.Fatal("not found")
		}
	}
}

func BenchmarkNamePrefix(b *testing.B) {
	x := loadText(b, genText(b, 100000))
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if r, _ := x.Search(ctx, Query{Name: "DUPO", Limit: 20}); len(r.Entries) == 0 {
			b.Fatal("not found")
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	text := genText(b, 100000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		loadText(b, text)
	}
}

func BenchmarkLookupIndexOnly(b *testing.B) {
	x := loadText(b, genText(b, 100000))
	r, _ := x.Search(context.Background(), Query{Limit: 1000})
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := x.findSlot(r.Entries[i%len(r.Entries)].Address, x.hashAddress(r.Entries[i%len(r.Entries)].Address)); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkLookupFullSize looks up 20,000 addresses spread over a full-size extraction (the
// index is far larger than the caches, as in production): the index alone (TypeOf), the full
// entry (Lookup), and a Go map keyed into the same text (GoMapSameText, the peer of TypeOf).
// bench/annuaire/run.sh measures the same on the file it generates, and prints other peers.
func BenchmarkLookupFullSize(b *testing.B) {
	path := filepath.Join(b.TempDir(), "extraction.txt")
	if err := os.WriteFile(path, []byte(genText(b, annuairetest.FullSize)), 0o600); err != nil {
		b.Fatal(err)
	}
	genCache.Delete(annuairetest.FullSize)
	x, err := LoadFile(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	addrs := make([]string, 0, 20000)
	for i := 0; i < x.Len() && len(addrs) < cap(addrs); i += x.Len() / cap(addrs) {
		addrs = append(addrs, strings.Clone(lineAddress(x.data, x.starts[i]))) // the caller's own string
	}
	b.Run("TypeOf", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := x.TypeOf(addrs[i%len(addrs)]); !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("Lookup", func(b *testing.B) {
		var buf []Entry
		for i := 0; b.Loop(); i++ {
			if buf = x.Lookup(buf[:0], addrs[i%len(addrs)]); len(buf) == 0 {
				b.Fatal("not found")
			}
		}
	})
	// The peer of TypeOf: a Go map whose keys are the addresses in the same text (the same
	// memory to read), exact match only.
	peer := make(map[string]int32, x.Len())
	for i, at := range x.starts {
		peer[lineAddress(x.data, at)] = int32(i)
	}
	b.Run("GoMapSameText", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := peer[addrs[i%len(addrs)]]; !ok {
				b.Fatal("not found")
			}
		}
	})
}
