package annuaire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the clock of the FHIR client under test: it only moves when slept on.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	return nil
}

// fhirServer replays the fixtures of testdata/fhir over HTTPS and records what it is asked.
type fhirServer struct {
	*httptest.Server
	clock *fakeClock
	mu    sync.Mutex
	reqs  []string    // path?query of each request
	times []time.Time // the fake time of each request
	// fail, when set, answers instead of the fixtures.
	fail func(w http.ResponseWriter, r *http.Request) bool
	// iterate honours _include:iterate=PractitionerRole:organization on a name search: the
	// Organizations of organization.json come with the page as includes.
	iterate bool
}

func newFHIRServer(t *testing.T) (*fhirServer, *FHIR) {
	t.Helper()
	s := &fhirServer{clock: &fakeClock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}}
	fixture := func(name string) []byte {
		b, err := os.ReadFile("testdata/fhir/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(strings.ReplaceAll(string(b), "{{base}}", s.URL+"/fhir/v2"))
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.URL.Path+"?"+r.URL.RawQuery)
		s.times = append(s.times, s.clock.Now())
		fail, iterate := s.fail, s.iterate
		s.mu.Unlock()
		if r.Header.Get("ESANTE-API-KEY") != "test-key" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write(fixture("operationoutcome.json"))
			return
		}
		if fail != nil && fail(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		switch r.URL.Path {
		case "/fhir/v2/Practitioner":
			q := r.URL.Query()
			if q.Has("_revinclude") {
				// A Name search, with the PractitionerRoles that reference the Practitioners.
				page := fixture("practitioner-revinclude.json")
				if q.Get("_page") == "2" {
					page = fixture("practitioner-revinclude-page2.json")
				}
				if iterate && q.Get("_include:iterate") == "PractitionerRole:organization" {
					page = withIncludes(t, page, fixture("organization.json"))
				}
				w.Write(page)
			} else if q.Has("identifier") && !q.Has("mailbox-mss:contains") && !q.Has("mailbox-mss:exact") && !q.Has("mailbox-mss-type") {
				// The lookup of a PractitionerRole search: this one filters, by identifier.
				w.Write(withIdentifier(t, fixture("practitioner-identifier.json"), q.Get("identifier")))
			} else if q.Get("_page") == "2" {
				w.Write(fixture("practitioner-page2.json"))
			} else {
				w.Write(fixture("practitioner-page1.json"))
			}
		case "/fhir/v2/PractitionerRole":
			w.Write(fixture("practitionerrole.json"))
		case "/fhir/v2/Organization":
			if ids := r.URL.Query().Get("_id"); ids != "" {
				w.Write(withIDs(t, fixture("organization.json"), strings.Split(ids, ",")))
			} else {
				w.Write(fixture("organization.json"))
			}
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	f, err := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: "test-key", HTTPClient: s.Client(),
		Now: s.clock.Now, Sleep: s.clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

// withIdentifier keeps the entries of a Bundle whose resource has the identifier token
// (system|value).
func withIdentifier(t *testing.T, bundle []byte, token string) []byte {
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	system, value, _ := strings.Cut(token, "|")
	var kept []any
	for _, e := range b["entry"].([]any) {
		for _, id := range e.(map[string]any)["resource"].(map[string]any)["identifier"].([]any) {
			if id := id.(map[string]any); id["system"] == system && id["value"] == value {
				kept = append(kept, e)
				break
			}
		}
	}
	b["entry"] = kept
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withIDs keeps the entries of a Bundle whose resource has one of the logical ids.
func withIDs(t *testing.T, bundle []byte, ids []string) []byte {
	return editBundle(t, bundle, func(entries []any) []any {
		var kept []any
		for _, e := range entries {
			if slices.Contains(ids, e.(map[string]any)["resource"].(map[string]any)["id"].(string)) {
				kept = append(kept, e)
			}
		}
		return kept
	})
}

// withIncludes adds the resources of another Bundle to a Bundle, with search mode include.
func withIncludes(t *testing.T, bundle, other []byte) []byte {
	return editBundle(t, bundle, func(entries []any) []any {
		var o map[string]any
		if err := json.Unmarshal(other, &o); err != nil {
			t.Fatal(err)
		}
		for _, e := range o["entry"].([]any) {
			e.(map[string]any)["search"] = map[string]any{"mode": "include"}
			entries = append(entries, e)
		}
		return entries
	})
}

// editBundle replaces the entries of a Bundle by what edit returns.
func editBundle(t *testing.T, bundle []byte, edit func([]any) []any) []byte {
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	entries, _ := b["entry"].([]any)
	b["entry"] = edit(entries)
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *fhirServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// daxPostal is the address of organization.json's Organization.
var daxPostal = PostalAddress{Number: "1", StreetType: "BD", Street: "YVES DU MANOIR", CityLine: "40107 DAX", PostalCode: "40107", Departement: "40", Country: "FRANCE"}

func addresses(entries []Entry) string {
	var a []string
	for _, e := range entries {
		a = append(a, string(e.Type)+":"+e.Address)
	}
	return strings.Join(a, " ")
}

func TestFHIRSearch(t *testing.T) {
	s, f := newFHIRServer(t)
	ctx := context.Background()
	r, err := f.Search(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	// Every BAL of the fixtures but the listeRouge one, the APICRYPT address and those of
	// the Practitioners included in the PractitionerRole Bundle.
	want := "PER:jean-marie.dupont@infirmier.mssante.fr PER:sophie.martin@medecin.mssante.fr " +
		"CAB:cabinet.lefevre@medecin.mssante.fr PER:jm.dupont@ch-dax.mssante.fr " +
		"PER:c.bernard@ch-dax.mssante.fr PER:l.petit@pharmacie.mssante.fr PER:sans.nom@ch-dax.mssante.fr " +
		"ORG:cardiologie@ch-dax.mssante.fr APP:dpi-cardio@ch-dax.mssante.fr"
	if got := addresses(r.Entries); got != want || r.Next != "" {
		t.Fatalf("got  %s (next %q)\nwant %s", got, r.Next, want)
	}
	for _, e := range r.Entries {
		if strings.Contains(e.Address, "rouge") || strings.Contains(e.Address, "apicrypt") {
			t.Fatalf("returned %s", e.Address)
		}
	}
	dupont := r.Entries[0]
	if dupont.Person.RPPS() != "10003456786" || dupont.Person.NationalID != "810003456786" ||
		dupont.Person.LastName != "DUPONT" || dupont.Person.FirstName != "Jean-Marie" || dupont.Person.Civility != "DR" ||
		dupont.Person.ProfessionCode != "60" || dupont.Person.ProfessionCategory != "C" {
		t.Errorf("Practitioner: %+v", dupont.Person)
	}
	if m := r.Entries[1]; m.Person.LastName != "MARTIN" || !m.Dematerialisation {
		t.Errorf("official name and digitization: %+v", m)
	}
	role := r.Entries[3]
	if role.Person.NationalID != "810003456786" || role.Structure.ID != "1400780284" || role.Structure.IDType != "FINESS" || role.Structure.Service != "Urgences" {
		t.Errorf("PractitionerRole: %+v", role)
	}
	// Names, identifiers and profession of PractitionerRole entries come from the included
	// Practitioner their reference designates; the role's own codes come first.
	wantPersons := []Person{
		{NationalID: "810003456786", IDType: "RPPS", ID: "10003456786", Civility: "DR", LastName: "DUPONT", FirstName: "Jean-Marie",
			ProfessionCategory: "C", ProfessionCategoryLabel: "Civil", ProfessionCode: "60", ProfessionLabel: "Infirmier"},
		{NationalID: "810100000016", IDType: "RPPS", ID: "10100000016", Civility: "DR", LastName: "BERNARD", FirstName: "Claire",
			ProfessionCode: "10", ProfessionLabel: "Médecin", SpecialtyCode: "SM26", SpecialtyLabel: "Qualifié en Médecine Générale"},
		{NationalID: "810200000023", IDType: "RPPS", ID: "10200000023", LastName: "PETIT", FirstName: "Louis",
			ProfessionCategory: "C", ProfessionCategoryLabel: "Civil", ProfessionCode: "21", ProfessionLabel: "Pharmacien"},
		{}, // its Practitioner is not in the Bundle: no names, never another one's
	}
	for i, want := range wantPersons {
		if got := r.Entries[3+i].Person; got != want {
			t.Errorf("PractitionerRole %s:\n got %+v\nwant %+v", r.Entries[3+i].Address, got, want)
		}
	}
	// The structure of a PractitionerRole entry comes from its included Organization.
	dax := Structure{IDType: "FINESS", ID: "1400780284", Name: "CENTRE HOSPITALIER DE DAX", TradeName: "CH Dax"}
	for i, want := range []Structure{{IDType: "FINESS", ID: "1400780284", Name: dax.Name, TradeName: dax.TradeName, Service: "Urgences"}, dax, {}, {}} {
		wantPostal := daxPostal
		if want == (Structure{}) {
			wantPostal = PostalAddress{}
		}
		if e := r.Entries[3+i]; e.Structure != want || e.Postal != wantPostal {
			t.Errorf("PractitionerRole %s:\n got %+v %+v\nwant %+v %+v", e.Address, e.Structure, e.Postal, want, wantPostal)
		}
	}
	org := r.Entries[7]
	wantOrg := Entry{Address: "cardiologie@ch-dax.mssante.fr", Type: ORG, Dematerialisation: true,
		Description: "Secrétariat de cardiologie",
		Structure:   Structure{IDType: "FINESS", ID: "1400780284", Name: "CENTRE HOSPITALIER DE DAX", TradeName: "CH Dax", Service: "Cardiologie"},
		Postal:      PostalAddress{Number: "1", StreetType: "BD", Street: "YVES DU MANOIR", CityLine: "40107 DAX", PostalCode: "40107", Departement: "40", Country: "FRANCE"}}
	if org != wantOrg {
		t.Errorf("Organization:\n got %+v\nwant %+v", org, wantOrg)
	}
	if r, err := f.Search(ctx, Query{Departement: "40"}); err != nil || addresses(r.Entries) != "ORG:cardiologie@ch-dax.mssante.fr APP:dpi-cardio@ch-dax.mssante.fr" {
		t.Errorf("Departement: %v %s", err, addresses(r.Entries))
	}
	if r, err := f.Search(ctx, Query{Departement: "33"}); err != nil || len(r.Entries) != 0 {
		t.Errorf("another Departement: %v %s", err, addresses(r.Entries))
	}
	reqs := s.requests()[:4]
	if len(reqs) != 4 || !strings.HasPrefix(reqs[0], "/fhir/v2/Practitioner?") || !strings.Contains(reqs[0], "mailbox-mss%3Acontains=%40") ||
		!strings.Contains(reqs[1], "_page=2") {
		t.Errorf("requests: %q", reqs)
	}
}

const (
	g15      = "https%3A%2F%2Fmos.esante.gouv.fr%2FNOS%2FTRE_G15-ProfessionSante%2FFHIR%2FTRE-G15-ProfessionSante"
	iterate  = "_include%3Aiterate=PractitionerRole%3Aorganization"
	orgsByID = "/fhir/v2/Organization?_count=2&_id=158480DP%2Ccab-dupont" // the organizations of page 1's roles
)

func TestFHIRQueryParameters(t *testing.T) {
	tests := []struct {
		q    Query
		reqs []string // expected requests, in order (query strings as url.Values encodes them)
	}{
		{Query{Type: APP}, []string{"/fhir/v2/Organization?_count=50&mailbox-mss-type=APP"}},
		{Query{Address: "DPI-Cardio@ch-dax.mssante.fr"}, []string{
			"/fhir/v2/Practitioner?_count=50&mailbox-mss%3Aexact=dpi-cardio%40ch-dax.mssante.fr",
			"/fhir/v2/Practitioner?mailbox-mss-type=PER&_page=2", // the fixture's next link
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Aexact=dpi-cardio%40ch-dax.mssante.fr",
			"/fhir/v2/Organization?_count=50&mailbox-mss%3Aexact=dpi-cardio%40ch-dax.mssante.fr"}},
		{Query{RPPS: "10003456786", Type: PER}, []string{
			"/fhir/v2/Practitioner?_count=50&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810003456786&mailbox-mss-type=PER",
			"/fhir/v2/Practitioner?mailbox-mss-type=PER&_page=2",
			"/fhir/v2/Practitioner?_count=50&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810003456786",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss-type=PER&practitioner=Practitioner%2Fas-practitioner-bal-per-dupont"}},
		// A structure and a postal code: the roles the organization reference selects (their
		// Organization's postal code checked on the client), its Organizations of the code.
		{Query{StructureID: "400780284", PostalCode: "40107"}, []string{
			"/fhir/v2/Organization?_count=50&identifier=400780284",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Acontains=%40&organization=Organization%2F158480DP",
			"/fhir/v2/Organization?_count=50&address-postalcode=40107&identifier=400780284&mailbox-mss%3Acontains=%40"}},
		{Query{Departement: "40", Type: ORG}, []string{"/fhir/v2/Organization?_count=50&address-postalcode=40&mailbox-mss-type=ORG"}},
		// A name: the Practitioners of that name, with or without a BAL of their own, and the
		// PractitionerRoles that reference them.
		// Then the Organizations of the page's roles that the server did not include (it
		// ignores _include:iterate), in one request.
		{Query{Name: "dupont", Type: PER}, []string{"/fhir/v2/Practitioner?_count=50&" + iterate + "&_revinclude=PractitionerRole%3Apractitioner&name=dupont",
			orgsByID, "/fhir/v2/Practitioner?name=dupont&_revinclude=PractitionerRole:practitioner&_page=2"}},
		{Query{Name: "Dupont", RPPS: "10003456786", Profession: "60"}, []string{
			"/fhir/v2/Practitioner?_count=50&" + iterate + "&_revinclude=PractitionerRole%3Apractitioner&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810003456786&name=Dupont&qualification-code=" + g15 + "%7C60",
			orgsByID, "/fhir/v2/Practitioner?name=dupont&_revinclude=PractitionerRole:practitioner&_page=2"}},
		{Query{Name: "dupont"}, []string{"/fhir/v2/Practitioner?_count=50&" + iterate + "&_revinclude=PractitionerRole%3Apractitioner&name=dupont",
			orgsByID, "/fhir/v2/Practitioner?name=dupont&_revinclude=PractitionerRole:practitioner&_page=2",
			"/fhir/v2/Organization?_count=50&mailbox-mss%3Acontains=%40&name=dupont"}},
		// A name and a structure: no Practitioner search, the roles of the structure's
		// Organizations (no name parameter: checked on their Practitioners), its
		// Organizations of that name.
		{Query{Name: "dupont", StructureID: "400780284"}, []string{
			"/fhir/v2/Organization?_count=50&identifier=400780284",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Acontains=%40&organization=Organization%2F158480DP",
			"/fhir/v2/Organization?_count=50&identifier=400780284&mailbox-mss%3Acontains=%40&name=dupont"}},
		{Query{Name: "dupont", RPPS: "10003456786", StructureIDType: "FINESS"}, []string{
			"/fhir/v2/Practitioner?_count=50&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810003456786",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Acontains=%40&practitioner=Practitioner%2Fas-practitioner-bal-per-dupont"}},
		// A name and a structure type or a postal criterion alone: no reference bounds the
		// roles, so the Practitioners of the name and their roles, whose structure is checked
		// on the client (no structure parameter reaches a Practitioner search), then the
		// Organizations of the name.
		{Query{Name: "dupont", StructureIDType: "FINESS"}, []string{
			"/fhir/v2/Practitioner?_count=50&" + iterate + "&_revinclude=PractitionerRole%3Apractitioner&name=dupont",
			orgsByID, "/fhir/v2/Practitioner?name=dupont&_revinclude=PractitionerRole:practitioner&_page=2",
			"/fhir/v2/Organization?_count=50&mailbox-mss%3Acontains=%40&name=dupont"}},
		{Query{Name: "dupont", Departement: "40", Type: PER}, []string{
			"/fhir/v2/Practitioner?_count=50&" + iterate + "&_revinclude=PractitionerRole%3Apractitioner&name=dupont",
			orgsByID, "/fhir/v2/Practitioner?name=dupont&_revinclude=PractitionerRole:practitioner&_page=2"}},
		// Profession: qualification-code on Practitioner, role on PractitionerRole, no Organization.
		{Query{Profession: "10"}, []string{
			"/fhir/v2/Practitioner?_count=50&mailbox-mss%3Acontains=%40&qualification-code=" + g15 + "%7C10",
			"/fhir/v2/Practitioner?mailbox-mss-type=PER&_page=2",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Acontains=%40&role=" + g15 + "%7C10"}},
		{Query{Profession: "10", Type: APP}, nil},
		// A structure: its Organizations first, then the PractitionerRoles that reference them.
		{Query{StructureID: "400780284"}, []string{
			"/fhir/v2/Organization?_count=50&identifier=400780284",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss%3Acontains=%40&organization=Organization%2F158480DP",
			"/fhir/v2/Organization?_count=50&identifier=400780284&mailbox-mss%3Acontains=%40"}},
		// "Every médecin with a BAL in this FINESS".
		{Query{StructureID: "400780284", Profession: "10", Type: PER}, []string{
			"/fhir/v2/Organization?_count=50&identifier=400780284",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss-type=PER&organization=Organization%2F158480DP&role=" + g15 + "%7C10"}},
		{Query{Profession: "21", Type: PER, RPPS: "10200000023"}, []string{
			"/fhir/v2/Practitioner?_count=50&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810200000023&mailbox-mss-type=PER&qualification-code=" + g15 + "%7C21",
			"/fhir/v2/Practitioner?mailbox-mss-type=PER&_page=2",
			"/fhir/v2/Practitioner?_count=50&identifier=urn%3Aoid%3A1.2.250.1.71.4.2.1%7C810200000023",
			"/fhir/v2/PractitionerRole?_count=50&_include=PractitionerRole%3Apractitioner&_include=PractitionerRole%3Aorganization&mailbox-mss-type=PER&practitioner=Practitioner%2F003-200000&role=" + g15 + "%7C21"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.q), func(t *testing.T) {
			s, f := newFHIRServer(t)
			r, err := f.Search(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.requests(); strings.Join(got, "\n") != strings.Join(tt.reqs, "\n") {
				t.Errorf("requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.reqs, "\n"))
			}
			q := tt.q
			if err := q.check(); err != nil {
				t.Fatal(err)
			}
			for _, e := range r.Entries {
				if !q.matches(&e, NameKey(&e)) {
					t.Errorf("%s does not match the query", e.Address)
				}
			}
		})
	}
	_, f := newFHIRServer(t)
	for _, p := range []string{"10|x", "10,21", "a b", "10&_include=*"} {
		if _, err := f.Search(context.Background(), Query{Profession: p}); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("Profession %q: %v", p, err)
		}
	}
	for _, q := range []Query{{Departement: "40", Profession: "10"}, {PostalCode: "40107", Type: PER}, {PostalCode: "40107", Type: CAB}} {
		if _, err := f.Search(context.Background(), q); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%+v: %v", q, err)
		}
		// With a name, a structure or a person, their roles answer it.
		for _, bound := range []Query{{Name: "dupont"}, {StructureID: "400780284"}, {RPPS: "10003456786"}} {
			b := q
			b.Name, b.StructureID, b.RPPS = bound.Name, bound.StructureID, bound.RPPS
			if r, err := f.Search(context.Background(), b); err != nil || q.Type == PER && len(r.Entries) == 0 { // Dupont, PER at Dax
				t.Errorf("%+v: %v", b, err)
			}
		}
	}
}

func TestFHIRPaging(t *testing.T) {
	_, f := newFHIRServer(t)
	ctx := context.Background()
	all, err := f.Search(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 4} {
		var got []Entry
		q := Query{Limit: limit}
		for n := 0; ; n++ {
			r, err := f.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Entries) > limit || n > 20 {
				t.Fatalf("page of %d entries, limit %d", len(r.Entries), limit)
			}
			got = append(got, r.Entries...)
			if r.Next == "" {
				break
			}
			q.Cursor = r.Next
		}
		if addresses(got) != addresses(all.Entries) {
			t.Errorf("limit %d:\n%s\nwant\n%s", limit, addresses(got), addresses(all.Entries))
		}
	}
	if _, err := f.Search(ctx, Query{Cursor: "!!"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad cursor: %v", err)
	}
}

func TestFHIRRateLimit(t *testing.T) {
	s, f := newFHIRServer(t)
	ctx := context.Background()
	for range 15 { // 4 requests each
		if _, err := f.Search(ctx, Query{}); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	times := append([]time.Time(nil), s.times...)
	s.mu.Unlock()
	if len(times) != 60 {
		t.Fatalf("%d requests", len(times))
	}
	for i := 17; i < len(times); i++ {
		if d := times[i].Sub(times[i-17]); d < time.Second {
			t.Fatalf("requests %d and %d are %v apart: more than 17 in one second", i-17, i, d)
		}
	}
	if len(s.clock.sleeps) == 0 {
		t.Fatal("the client never waited")
	}
}

func TestFHIRErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("429 then OK", func(t *testing.T) {
		s, f := newFHIRServer(t)
		n := 0
		s.fail = func(w http.ResponseWriter, r *http.Request) bool {
			if n++; n <= 2 {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			}
			return false
		}
		if _, err := f.Search(ctx, Query{Type: APP}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(s.clock.sleeps) != "[7s 7s]" {
			t.Errorf("sleeps %v, want the Retry-After twice", s.clock.sleeps)
		}
	})
	tests := []struct {
		name   string
		key    string
		fail   func(w http.ResponseWriter, r *http.Request) bool
		target error
		text   string
	}{
		{"always 429", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}, ErrRateLimited, "rate limit"},
		{"bad key", "wrong", nil, ErrHTTP, "HTTP 401: invalid Unknown search parameter"},
		{"server error", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"code":"exception","diagnostics":"boom"}]}`))
			return true
		}, ErrHTTP, "HTTP 500: exception boom"},
		{"bad JSON", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write([]byte(`{"resourceType":`))
			return true
		}, nil, "bad JSON"},
		{"not a Bundle", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write([]byte(`{"resourceType":"Patient"}`))
			return true
		}, nil, "not a Bundle"},
		{"next link to another host", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write([]byte(`{"resourceType":"Bundle","link":[{"relation":"next","url":"https://evil.example/fhir?x"}]}`))
			return true
		}, nil, "refused"},
		{"answer too large", "test-key", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write([]byte(`{"resourceType":"Bundle","x":"` + strings.Repeat("a", 17<<20) + `"}`))
			return true
		}, nil, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newFHIRServer(t)
			s.fail = tt.fail
			f, err := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: tt.key, HTTPClient: s.Client(), Now: s.clock.Now, Sleep: s.clock.Sleep})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Search(ctx, Query{Type: APP})
			if err == nil || tt.target != nil && !errors.Is(err, tt.target) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.target, tt.text)
			}
		})
	}
	t.Run("untrusted server certificate", func(t *testing.T) {
		s, _ := newFHIRServer(t)
		f, _ := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: "test-key"})
		if _, err := f.Search(ctx, Query{Type: APP}); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		_, f := newFHIRServer(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := f.Search(cctx, Query{Type: APP}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	if _, err := NewFHIR(&FHIROptions{BaseURL: "http://gateway.example/fhir"}); err == nil {
		t.Error("plain http base accepted")
	}
}

func TestFHIRProfession(t *testing.T) {
	s, f := newFHIRServer(t)
	scan, err := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: "test-key", HTTPClient: s.Client(),
		Now: s.clock.Now, Sleep: s.clock.Sleep, ScanRolesForProfession: true})
	if err != nil {
		t.Fatal(err)
	}
	// The test server ignores every search parameter: whatever it sends back, only the
	// entries of the profession asked for are returned, from Practitioner (qualification)
	// and PractitionerRole (its own code first, else its included Practitioner's).
	tests := []struct{ profession, want string }{
		{"10", "PER:sophie.martin@medecin.mssante.fr PER:c.bernard@ch-dax.mssante.fr"},
		{"21", "PER:l.petit@pharmacie.mssante.fr"}, // the role's code, not its Practitioner's 10
		{"60", "PER:jean-marie.dupont@infirmier.mssante.fr PER:jm.dupont@ch-dax.mssante.fr"},
		{"40", ""},
	}
	for _, tt := range tests {
		for _, d := range []*FHIR{f, scan} { // scan last: its request is checked below
			name := map[*FHIR]string{f: "role", scan: "scan"}[d]
			r, err := d.Search(context.Background(), Query{Profession: tt.profession})
			if err != nil {
				t.Fatal(err)
			}
			if got := addresses(r.Entries); got != tt.want {
				t.Errorf("%s, profession %s:\n got %s\nwant %s", name, tt.profession, got, tt.want)
			}
			for _, e := range r.Entries {
				if e.Person.ProfessionCode != tt.profession || e.Person.LastName == "" {
					t.Errorf("%s: %+v", e.Address, e.Person)
				}
			}
		}
	}
	// With ScanRolesForProfession the PractitionerRole search carries no role filter.
	reqs := s.requests()
	last := reqs[len(reqs)-1]
	if !strings.HasPrefix(last, "/fhir/v2/PractitionerRole?") || strings.Contains(last, "role=") || !strings.Contains(last, "_include=") {
		t.Errorf("scan request: %s", last)
	}
	// Profession with a name, an RPPS and a type, paged one entry at a time.
	q := Query{Profession: "10", Type: PER, Limit: 1}
	var got []Entry
	for range 5 {
		r, err := f.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Entries...)
		if q.Cursor = r.Next; q.Cursor == "" {
			break
		}
	}
	if addresses(got) != "PER:sophie.martin@medecin.mssante.fr PER:c.bernard@ch-dax.mssante.fr" {
		t.Errorf("paged: %s", addresses(got))
	}
	if r, err := f.Search(context.Background(), Query{Profession: "10", RPPS: "10100000016"}); err != nil || addresses(r.Entries) != "PER:c.bernard@ch-dax.mssante.fr" {
		t.Errorf("profession and RPPS: %v %s", err, addresses(r.Entries))
	}
	// An RPPS no Practitioner carries: no PractitionerRole search.
	n := len(s.requests())
	if r, err := f.Search(context.Background(), Query{RPPS: "10300000006"}); err != nil || len(r.Entries) != 0 {
		t.Errorf("unknown RPPS: %v %s", err, addresses(r.Entries))
	}
	if reqs := s.requests()[n:]; len(reqs) != 3 || !strings.Contains(reqs[2], "identifier=") || strings.Contains(strings.Join(reqs, " "), "PractitionerRole") {
		t.Errorf("unknown RPPS: requests %q", reqs)
	}
}

// TestFHIRIncludes: names come from the included Practitioner that the PractitionerRole
// references, and from no other; included resources are never results.
func TestFHIRIncludes(t *testing.T) {
	const role = `{"fullUrl":"https://fhir.example/fhir/v2/PractitionerRole/r1","search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r1",
"practitioner":%s,"telecom":[{"system":"email","value":"role@ch.mssante.fr","extension":[
{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}}`
	prac := func(mode, fullURL, id, idnat, family string) string {
		m := ""
		if mode != "" {
			m = `"search":{"mode":"` + mode + `"},`
		}
		return `{"fullUrl":"` + fullURL + `",` + m + `"resource":{"resourceType":"Practitioner","id":"` + id + `",
"identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"` + idnat + `"}],"name":[{"family":"` + family + `"}],
"telecom":[{"system":"email","value":"` + strings.ToLower(family) + `@medecin.mssante.fr","extension":[
{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}}`
	}
	const base = "https://fhir.example/fhir/v2/Practitioner/"
	a := prac("include", base+"p1", "p1", "810100000016", "ALPHA")
	b := prac("include", base+"p2", "p2", "810200000023", "BRAVO")
	tests := []struct {
		name, ref, nationalID, lastName string
		includes                        []string
	}{
		{"relative reference", `{"reference":"Practitioner/p2"}`, "810200000023", "BRAVO", []string{a, b}},
		{"versioned reference", `{"reference":"Practitioner/p1/_history/3"}`, "810100000016", "ALPHA", []string{a, b}},
		{"absolute reference", `{"reference":"` + base + `p2"}`, "810200000023", "BRAVO", []string{a, b}},
		{"identifier", `{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810100000016"}}`, "810100000016", "ALPHA", []string{b, a}},
		{"include without search mode", `{"reference":"Practitioner/p1"}`, "810100000016", "ALPHA", []string{prac("", base+"p1", "p1", "810100000016", "ALPHA")}},
		// Negative: no name rather than a wrong one.
		{"include missing", `{"reference":"Practitioner/p3"}`, "", "", []string{a, b}},
		{"include for another role only", `{"reference":"Practitioner/p3"}`, "", "", []string{a}},
		{"no include at all", `{"reference":"Practitioner/p1"}`, "", "", nil},
		{"missing include, identifier kept", `{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810300000006"}}`, "810300000006", "", []string{a, b}},
		{"absolute reference to another server", `{"reference":"https://other.example/fhir/Practitioner/p1"}`, "", "", []string{a, b}},
		{"reference to another type", `{"reference":"Organization/p1"}`, "", "", []string{a, b}},
		{"reference and identifier disagree", `{"reference":"Practitioner/p1","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810200000023"}}`, "810200000023", "", []string{a, b}},
		{"two includes with the identifier", `{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810100000016"}}`, "810100000016", "",
			[]string{a, prac("include", base+"p9", "p9", "810100000016", "CHARLIE")}},
		{"two includes with the id", `{"reference":"Practitioner/p1"}`, "", "", []string{a, prac("include", base+"p1", "p1", "810100000016", "CHARLIE")}},
		{"identifier without system", `{"identifier":{"value":"810100000016"}}`, "", "", []string{a}},
		{"matched Practitioner is not an include", `{"reference":"Practitioner/p1"}`, "", "", []string{prac("match", base+"p1", "p1", "810100000016", "ALPHA")}},
	}
	fh, err := NewFHIR(&FHIROptions{BaseURL: "https://fhir.example/fhir/v2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"resourceType":"Bundle","type":"searchset","entry":[` + strings.Join(append([]string{fmt.Sprintf(role, tt.ref)}, tt.includes...), ",") + `]}`
			var bundle fhirBundle
			if err := json.Unmarshal([]byte(body), &bundle); err != nil {
				t.Fatal(err)
			}
			bundle.searched = "PractitionerRole"
			q := Query{}
			q.check()
			entries := fh.bundleEntries(&bundle, &q)
			if len(entries) != 1 || entries[0].Address != "role@ch.mssante.fr" {
				t.Fatalf("entries %s: only the role's BAL is a result", addresses(entries))
			}
			if p := entries[0].Person; p.NationalID != tt.nationalID || p.LastName != tt.lastName {
				t.Errorf("person %+v, want %q %q", p, tt.nationalID, tt.lastName)
			}
		})
	}
}

// TestFHIRStructure: a structure criterion reaches PractitionerRole through the references
// of its Organizations.
func TestFHIRStructure(t *testing.T) {
	ctx := context.Background()
	s, f := newFHIRServer(t)
	for _, tt := range []struct {
		q    Query
		want string
	}{
		{Query{StructureID: "400780284", Profession: "10"}, "PER:c.bernard@ch-dax.mssante.fr"},
		{Query{StructureID: "1400780284", StructureIDType: "FINESS"}, "PER:jm.dupont@ch-dax.mssante.fr PER:c.bernard@ch-dax.mssante.fr " +
			"ORG:cardiologie@ch-dax.mssante.fr APP:dpi-cardio@ch-dax.mssante.fr"},
		{Query{StructureID: "400780284", RPPS: "10003456786"}, "PER:jm.dupont@ch-dax.mssante.fr"},
		{Query{StructureID: "330781196", Profession: "10"}, ""}, // the roles the server sends are of another structure
	} {
		r, err := f.Search(ctx, tt.q)
		if err != nil || addresses(r.Entries) != tt.want {
			t.Errorf("%+v: %v\n got %s\nwant %s", tt.q, err, addresses(r.Entries), tt.want)
		}
	}
	// No Organization has the identifier: no PractitionerRole search at all.
	s.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/fhir/v2/Organization" {
			w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[
{"search":{"mode":"match"},"resource":{"resourceType":"Organization","id":"bad,id"}},
{"search":{"mode":"include"},"resource":{"resourceType":"Organization","id":"included"}}]}`))
			return true
		}
		return false
	}
	n := len(s.requests())
	if r, err := f.Search(ctx, Query{StructureID: "400780284", Profession: "10"}); err != nil || len(r.Entries) != 0 {
		t.Errorf("unknown structure: %v %s", err, addresses(r.Entries))
	}
	if reqs := s.requests()[n:]; len(reqs) != 1 || !strings.HasPrefix(reqs[0], "/fhir/v2/Organization?") {
		t.Errorf("unknown structure: requests %q", reqs)
	}
	// More Organizations than a page: refused, not half searched.
	s.fail = func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"` + s.URL + `/fhir/v2/Organization?_page=2"}],
"entry":[{"resource":{"resourceType":"Organization","id":"o1"}}]}`))
		return true
	}
	if _, err := f.Search(ctx, Query{StructureID: "400780284", Type: PER}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("too many Organizations: %v", err)
	}
}

// BenchmarkFHIRRolePage: the entries of one page of 50 PractitionerRoles with their 50
// included Practitioners and Organizations (decoded once; the include index and the matching
// are measured).
func BenchmarkFHIRRolePage(b *testing.B) {
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`{"search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r%d",
"practitioner":{"reference":"Practitioner/p%d"},"organization":{"reference":"Organization/o%d"},
"telecom":[{"system":"email","value":"per%d@ch.mssante.fr","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}}`, i, i, i, i),
			fmt.Sprintf(`{"search":{"mode":"include"},"resource":{"resourceType":"Practitioner","id":"p%d","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"8%011d"}],
"name":[{"use":"official","family":"NOM%d","given":["Prénom"]}],"qualification":[{"code":{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"10"}]}}]}}`, i, i, i),
			fmt.Sprintf(`{"search":{"mode":"include"},"resource":{"resourceType":"Organization","id":"o%d","name":"STRUCTURE %d","identifier":[{"system":"https://finess.esante.gouv.fr","value":"%09d"}]}}`, i, i, i))
	}
	var bundle fhirBundle
	if err := json.Unmarshal([]byte(`{"resourceType":"Bundle","entry":[`+strings.Join(entries, ",")+`]}`), &bundle); err != nil {
		b.Fatal(err)
	}
	bundle.searched = "PractitionerRole"
	fh, _ := NewFHIR(nil)
	q := Query{Profession: "10"}
	q.check()
	if n := len(fh.bundleEntries(&bundle, &q)); n != 50 {
		b.Fatalf("%d entries", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		fh.bundleEntries(&bundle, &q)
	}
}

// TestFHIRSeveralProfessions: a Practitioner with two professions is found by either; a
// PractitionerRole's own profession is not replaced by another of its Practitioner's.
func TestFHIRSeveralProfessions(t *testing.T) {
	const body = `{"resourceType":"Bundle","entry":[
{"search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r1","practitioner":{"reference":"Practitioner/p1"},
 "code":[{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"21"}]}],
 "telecom":[{"system":"email","value":"pharma@ch.mssante.fr","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r2","practitioner":{"reference":"Practitioner/p1"},
 "telecom":[{"system":"email","value":"role@ch.mssante.fr","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Practitioner","id":"p1","name":[{"family":"DEUX"}],"qualification":[
 {"code":{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"10","display":"Médecin"}]}},
 {"code":{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"21","display":"Pharmacien"}]}}]}}]}`
	for profession, want := range map[string]string{"10": "PER:role@ch.mssante.fr", "21": "PER:pharma@ch.mssante.fr PER:role@ch.mssante.fr", "": "PER:pharma@ch.mssante.fr PER:role@ch.mssante.fr"} {
		entries := roleEntries(t, body, Query{Profession: profession})
		if got := addresses(entries); got != want {
			t.Errorf("profession %q: got %s, want %s", profession, got, want)
		}
		for _, e := range entries {
			if profession != "" && e.Person.ProfessionCode != profession {
				t.Errorf("profession %q: %s has %+v", profession, e.Address, e.Person)
			}
		}
	}
}

// roleEntries returns the entries q selects in body, the answer to a PractitionerRole search
// whose BALs carry no metadata (typed PER here).
func roleEntries(t *testing.T, body string, q Query) []Entry {
	t.Helper()
	var b fhirBundle
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatal(err)
	}
	b.searched = "PractitionerRole"
	q.check()
	fh, _ := NewFHIR(nil)
	entries := fh.bundleEntries(&b, &q)
	for i := range entries {
		entries[i].Type = PER
	}
	return entries
}

// TestFHIRNameRevinclude: a Name search returns, after a Practitioner's own BALs, those of
// the PractitionerRoles _revinclude brings that reference it, named from it; never those
// of a role of another Practitioner, of a role whose Practitioner is not a result of the
// page, of a role flagged listeRouge, nor of a role of another profession or type than asked.
func TestFHIRNameRevinclude(t *testing.T) {
	_, f := newFHIRServer(t)
	ctx := context.Background()
	const (
		own      = "PER:jean-marie.dupont@infirmier.mssante.fr"
		chDax    = "PER:jm.dupont@ch-dax.mssante.fr"
		pharma   = "PER:jm.dupont@pharmacie.mssante.fr" // role coded 21, its Practitioner 60
		claire   = "CAB:cabinet.dupont@medecin.mssante.fr"
		paulCab  = "CAB:cabinet.paul.dupont@medecin.mssante.fr"
		allNamed = own + " " + chDax + " " + pharma + " " + claire + " " + paulCab
	)
	for _, tt := range []struct {
		q    Query
		want string
	}{
		{Query{Name: "dupont"}, allNamed},
		{Query{Name: "DUPONT"}, allNamed},
		{Query{Name: "dupont", Type: CAB}, claire + " " + paulCab},
		{Query{Name: "dupont", Type: PER}, own + " " + chDax + " " + pharma},
		{Query{Name: "dupont", Profession: "60"}, own + " " + chDax},
		{Query{Name: "dupont", Profession: "21"}, pharma},
		{Query{Name: "dupont", Profession: "10"}, claire + " " + paulCab},
		{Query{Name: "dupont c"}, claire},
		{Query{Name: "dupont", RPPS: "10003456786"}, own + " " + chDax + " " + pharma},
		{Query{Name: "dupont", Address: "JM.Dupont@ch-dax.mssante.fr"}, chDax},
		{Query{Name: "roux"}, "PER:d.roux@ch-dax.mssante.fr"},
		{Query{Name: "martin"}, ""}, // its Practitioner is an include, not a result
	} {
		r, err := f.Search(ctx, tt.q)
		if err != nil || addresses(r.Entries) != tt.want || r.Next != "" {
			t.Errorf("%+v: %v\n got %s (next %q)\nwant %s", tt.q, err, addresses(r.Entries), r.Next, tt.want)
		}
	}
	r, err := f.Search(ctx, Query{Name: "dupont"})
	if err != nil {
		t.Fatal(err)
	}
	jm := Person{NationalID: "810003456786", IDType: "RPPS", ID: "10003456786", Civility: "DR", LastName: "DUPONT", FirstName: "Jean-Marie",
		ProfessionCategory: "C", ProfessionCategoryLabel: "Civil", ProfessionCode: "60", ProfessionLabel: "Infirmier"}
	pharmacien := jm
	pharmacien.ProfessionCode, pharmacien.ProfessionLabel = "21", "Pharmacien"
	for i, want := range []Entry{
		{Address: "jean-marie.dupont@infirmier.mssante.fr", Type: PER, Person: jm},
		// The structure of a role comes from its Organization, fetched by _id for the
		// pharmacie role's literal reference "Organization/158480DP", then found by the
		// ch-dax role's logical reference (identifier) as well.
		{Address: "jm.dupont@ch-dax.mssante.fr", Type: PER, Person: jm, Structure: Structure{IDType: "FINESS", ID: "1400780284",
			Name: "CENTRE HOSPITALIER DE DAX", TradeName: "CH Dax", Service: "Urgences"}, Postal: daxPostal},
		{Address: "jm.dupont@pharmacie.mssante.fr", Type: PER, Person: pharmacien, Structure: Structure{IDType: "FINESS", ID: "1400780284",
			Name: "CENTRE HOSPITALIER DE DAX", TradeName: "CH Dax"}, Postal: daxPostal},
		// Organization/cab-dupont is not found: no structure, and not an error.
		{Address: "cabinet.dupont@medecin.mssante.fr", Type: CAB, Person: Person{NationalID: "810400000047", IDType: "RPPS", ID: "10400000047",
			Civility: "MME", LastName: "DUPONT", FirstName: "Claire", ProfessionCategory: "C", ProfessionCategoryLabel: "Civil", ProfessionCode: "10", ProfessionLabel: "Médecin"}},
	} {
		if r.Entries[i] != want {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, r.Entries[i], want)
		}
	}
	// Paged: the entries of a page that holds includes are neither skipped nor repeated.
	for _, limit := range []int{1, 2, 3, 4} {
		var got []Entry
		q := Query{Name: "dupont", Limit: limit}
		for n := 0; ; n++ {
			r, err := f.Search(ctx, q)
			if err != nil || len(r.Entries) > limit || n > 10 {
				t.Fatalf("limit %d: %v, page of %d", limit, err, len(r.Entries))
			}
			got = append(got, r.Entries...)
			if q.Cursor = r.Next; q.Cursor == "" {
				break
			}
		}
		if addresses(got) != allNamed {
			t.Errorf("limit %d:\n got %s\nwant %s", limit, addresses(got), allNamed)
		}
	}
}

// TestFHIRRevincludeAsked: included PractitionerRoles give entries only to the Name search
// that asked for them; any other Practitioner search returns the Practitioners' own BALs.
func TestFHIRRevincludeAsked(t *testing.T) {
	body, err := os.ReadFile("testdata/fhir/practitioner-revinclude.json")
	if err != nil {
		t.Fatal(err)
	}
	var b fhirBundle
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(body), "{{base}}", "https://fhir.example/fhir/v2")), &b); err != nil {
		t.Fatal(err)
	}
	fh, _ := NewFHIR(nil)
	q := Query{}
	q.check()
	for _, tt := range []struct {
		revRoles bool
		want     string
	}{
		{false, "PER:jean-marie.dupont@infirmier.mssante.fr"},
		{true, "PER:jean-marie.dupont@infirmier.mssante.fr PER:jm.dupont@ch-dax.mssante.fr PER:jm.dupont@pharmacie.mssante.fr " +
			"CAB:cabinet.dupont@medecin.mssante.fr PER:d.roux@ch-dax.mssante.fr"},
	} {
		b.searched, b.revRoles = "Practitioner", tt.revRoles
		if got := addresses(fh.bundleEntries(&b, &q)); got != tt.want {
			t.Errorf("revRoles %v:\n got %s\nwant %s", tt.revRoles, got, tt.want)
		}
	}
}

// BenchmarkFHIRNamePage: the entries of one page of 50 Practitioners, each with a BAL of its
// own, and the 50 PractitionerRoles _revinclude brings with theirs (decoded once; the index
// of the matched Practitioners and the matching are measured), without and with the roles'
// Organizations.
func BenchmarkFHIRNamePage(b *testing.B) {
	const mss = `"extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]`
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`{"search":{"mode":"match"},"resource":{"resourceType":"Practitioner","id":"p%d","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"8%011d"}],
"name":[{"use":"official","family":"DUPONT","given":["Prénom%d"]}],"qualification":[{"code":{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"10"}]}}],
"telecom":[{"system":"email","value":"p%d@medecin.mssante.fr",%s}]}}`, i, i, i, i, mss),
			fmt.Sprintf(`{"search":{"mode":"include"},"resource":{"resourceType":"PractitionerRole","id":"r%d","practitioner":{"reference":"Practitioner/p%d"},
"organization":{"reference":"Organization/o%d","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"1%09d"}},
"telecom":[{"system":"email","value":"r%d@ch.mssante.fr",%s}]}}`, i, 49-i, i, i, i, mss))
	}
	var bundle fhirBundle
	if err := json.Unmarshal([]byte(`{"resourceType":"Bundle","entry":[`+strings.Join(entries, ",")+`]}`), &bundle); err != nil {
		b.Fatal(err)
	}
	bundle.searched, bundle.revRoles = "Practitioner", true
	fh, _ := NewFHIR(nil)
	q := Query{Name: "dupont", Profession: "10"}
	q.check()
	if n := len(fh.bundleEntries(&bundle, &q)); n != 100 {
		b.Fatalf("%d entries", n)
	}
	b.Run("entries", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fh.bundleEntries(&bundle, &q)
		}
	})
	// With the roles' Organizations: the ids a page lacks, the 50 Organizations of the _id
	// answer (decoded once) added, then the entries, structures filled.
	var orgs []string
	for i := range 50 {
		orgs = append(orgs, fmt.Sprintf(`{"search":{"mode":"match"},"resource":{"resourceType":"Organization","id":"o%d","name":"STRUCTURE %d",
"identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"1%09d"}],"address":[{"city":"DAX","postalCode":"40107"}]}}`, i, i, i))
	}
	var answer fhirBundle
	if err := json.Unmarshal([]byte(`{"resourceType":"Bundle","entry":[`+strings.Join(orgs, ",")+`]}`), &answer); err != nil {
		b.Fatal(err)
	}
	completed := func() []Entry {
		page := bundle
		page.Entry = slices.Clip(bundle.Entry) // addOrganizations appends to a copy
		addOrganizations(&page, &answer, missingOrganizations(&page))
		return fh.bundleEntries(&page, &q)
	}
	if e := completed(); len(e) != 100 || e[1].Structure.Name != "STRUCTURE 49" || e[1].Postal.PostalCode != "40107" {
		b.Fatalf("%d entries, %+v", len(e), e[1])
	}
	b.Run("organizations", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			completed()
		}
	})
}

// TestFHIRNameStructure: a Name with a structure (or a person and a structure type) reads
// the PractitionerRoles the references select and keeps those whose included Practitioner
// has the name; the structure's Organizations of that name come after.
func TestFHIRNameStructure(t *testing.T) {
	const dupontAtDax = "PER:jm.dupont@ch-dax.mssante.fr PER:jm.dupont@pharmacie.mssante.fr"
	_, f := newFHIRServer(t)
	ctx := context.Background()
	for _, tt := range []struct {
		q    Query
		want string
	}{
		{Query{Name: "dupont", StructureID: "400780284"}, "PER:jm.dupont@ch-dax.mssante.fr"},
		{Query{Name: "DUPONT jean", StructureID: "1400780284", StructureIDType: "FINESS"}, "PER:jm.dupont@ch-dax.mssante.fr"},
		{Query{Name: "Bernard Cl", StructureID: "400780284", Type: PER}, "PER:c.bernard@ch-dax.mssante.fr"},
		{Query{Name: "bernard j", StructureID: "400780284"}, ""},         // the whole of Name is checked
		{Query{Name: "dupont", StructureID: "400780284", Type: CAB}, ""}, // another type
		{Query{Name: "petit", StructureID: "400780284"}, ""},             // its role has no structure
		{Query{Name: "centre", StructureID: "400780284"}, "ORG:cardiologie@ch-dax.mssante.fr APP:dpi-cardio@ch-dax.mssante.fr"},
		{Query{Name: "dupont", RPPS: "10003456786", StructureIDType: "FINESS"}, "PER:jm.dupont@ch-dax.mssante.fr"},
		{Query{Name: "dupont", NationalID: "810003456786", StructureIDType: "SIRET"}, ""},
		{Query{Name: "bernard", RPPS: "10003456786", StructureIDType: "FINESS"}, ""}, // the server sends other persons' roles
		// No reference: the roles of the Practitioners of the name, their structure checked.
		// (Both of Dupont's roles are at the CH de Dax, one found only by name.)
		{Query{Name: "dupont", StructureIDType: "FINESS"}, dupontAtDax},
		{Query{Name: "dupont", StructureIDType: "SIRET"}, ""},
		{Query{Name: "dupont", Departement: "40", Type: PER}, dupontAtDax},
		{Query{Name: "dupont", PostalCode: daxPostal.PostalCode}, dupontAtDax},
		{Query{Name: "dupont", Departement: "33"}, ""},
		{Query{Name: "dupont", RPPS: "10003456786", Departement: "40"}, dupontAtDax},
	} {
		r, err := f.Search(ctx, tt.q)
		if err != nil || addresses(r.Entries) != tt.want || r.Next != "" {
			t.Errorf("%+v: %v\n got %s\nwant %s", tt.q, err, addresses(r.Entries), tt.want)
		}
	}
	r, err := f.Search(ctx, Query{Name: "dupont", StructureID: "400780284"})
	if err != nil || len(r.Entries) != 1 {
		t.Fatalf("%v %d", err, len(r.Entries))
	}
	want := Entry{Address: "jm.dupont@ch-dax.mssante.fr", Type: PER, Person: Person{NationalID: "810003456786", IDType: "RPPS", ID: "10003456786",
		Civility: "DR", LastName: "DUPONT", FirstName: "Jean-Marie", ProfessionCategory: "C", ProfessionCategoryLabel: "Civil", ProfessionCode: "60", ProfessionLabel: "Infirmier"},
		Structure: Structure{IDType: "FINESS", ID: "1400780284", Name: "CENTRE HOSPITALIER DE DAX", TradeName: "CH Dax", Service: "Urgences"}, Postal: daxPostal}
	if r.Entries[0] != want {
		t.Errorf("entry\n got %+v\nwant %+v", r.Entries[0], want)
	}

	// A role whose Practitioner is not in the Bundle has no name to match: its structure's
	// name is not the person's.
	const body = `{"resourceType":"Bundle","entry":[
{"search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r1","practitioner":{"reference":"Practitioner/absent"},
 "organization":{"reference":"Organization/o1"},
 "telecom":[{"system":"email","value":"r1@dupont-sante.mssante.fr","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"match"},"resource":{"resourceType":"PractitionerRole","id":"r2","practitioner":{"reference":"Practitioner/p2"},
 "organization":{"reference":"Organization/o1"},
 "telecom":[{"system":"email","value":"r2@dupont-sante.mssante.fr","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Practitioner","id":"p2","name":[{"family":"MARTIN","given":["Paul"]}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Organization","id":"o1","name":"DUPONT SANTE"}}]}`
	for name, want := range map[string]string{"dupont": "", "martin paul": "PER:r2@dupont-sante.mssante.fr", "": "PER:r1@dupont-sante.mssante.fr PER:r2@dupont-sante.mssante.fr"} {
		if got := addresses(roleEntries(t, body, Query{Name: name})); got != want {
			t.Errorf("name %q: got %s, want %s", name, got, want)
		}
	}
}

// TestFHIRNameOrganizations: the Organizations of the roles a Name search finds come from
// _include:iterate when the server honours it, else from one Organization?_id request per
// page for those still missing; matched by id, never by position; one not found leaves the
// structure empty; a failed request fails the search.
func TestFHIRNameOrganizations(t *testing.T) {
	ctx := context.Background()
	search := func(t *testing.T, f *FHIR) []Entry {
		t.Helper()
		r, err := f.Search(ctx, Query{Name: "dupont", Type: PER})
		if err != nil {
			t.Fatal(err)
		}
		return r.Entries
	}
	s, f := newFHIRServer(t)
	ignored := search(t, f)
	if ignored[2].Address != "jm.dupont@pharmacie.mssante.fr" || ignored[2].Structure.Name != "CENTRE HOSPITALIER DE DAX" || ignored[2].Postal != daxPostal {
		t.Fatalf("fallback: %+v", ignored[2])
	}
	// A server that honours _include:iterate: only the Organization it does not have
	// (cab-dupont, unknown) is asked for, and the entries are the same.
	s.iterate = true
	n := len(s.requests())
	if got := search(t, f); fmt.Sprint(got) != fmt.Sprint(ignored) {
		t.Errorf("with _include:iterate:\n got %+v\nwant %+v", got, ignored)
	}
	if reqs := s.requests()[n:]; len(reqs) != 3 || reqs[1] != "/fhir/v2/Organization?_count=1&_id=cab-dupont" {
		t.Errorf("with _include:iterate: requests %q", reqs)
	}
	// NoIncludeIterate: not asked, every Organization fetched by _id.
	noIter, err := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: "test-key", HTTPClient: s.Client(),
		Now: s.clock.Now, Sleep: s.clock.Sleep, NoIncludeIterate: true})
	if err != nil {
		t.Fatal(err)
	}
	n = len(s.requests())
	if got := search(t, noIter); fmt.Sprint(got) != fmt.Sprint(ignored) {
		t.Errorf("NoIncludeIterate:\n got %+v\nwant %+v", got, ignored)
	}
	if reqs := s.requests()[n:]; len(reqs) != 3 || strings.Contains(reqs[0], "iterate") || reqs[1] != orgsByID {
		t.Errorf("NoIncludeIterate: requests %q", reqs)
	}
	// PageSize 1: one _id request per missing Organization, the entries the same.
	oneByOne, err := NewFHIR(&FHIROptions{BaseURL: s.URL + "/fhir/v2", APIKey: "test-key", HTTPClient: s.Client(),
		Now: s.clock.Now, Sleep: s.clock.Sleep, NoIncludeIterate: true, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	n = len(s.requests())
	if got := search(t, oneByOne); fmt.Sprint(got) != fmt.Sprint(ignored) {
		t.Errorf("PageSize 1:\n got %+v\nwant %+v", got, ignored)
	}
	var byID []string
	for _, r := range s.requests()[n:] {
		if strings.HasPrefix(r, "/fhir/v2/Organization?") {
			byID = append(byID, r)
		}
	}
	if want := []string{"/fhir/v2/Organization?_count=1&_id=158480DP", "/fhir/v2/Organization?_count=1&_id=cab-dupont"}; !slices.Equal(byID, want) {
		t.Errorf("PageSize 1: Organization requests %q, want %q", byID, want)
	}
	s.iterate = false

	// An answer of other Organizations (another id, the right id as an include or an
	// outcome, another type): none completes a role, not even by identifier.
	const other = `{"resourceType":"Bundle","entry":[
{"search":{"mode":"match"},"resource":{"resourceType":"Organization","id":"158480DP-2","name":"WRONG","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"1400780284"}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Organization","id":"158480DP","name":"WRONG INCLUDE"}},
{"search":{"mode":"outcome"},"resource":{"resourceType":"Organization","id":"cab-dupont","name":"WRONG OUTCOME"}},
{"search":{"mode":"match"},"resource":{"resourceType":"Practitioner","id":"158480DP","name":"WRONG TYPE"}}]}`
	s.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/fhir/v2/Organization" {
			w.Write([]byte(other))
			return true
		}
		return false
	}
	for _, e := range search(t, f) {
		if e.Structure.Name != "" || e.Postal != (PostalAddress{}) {
			t.Errorf("%s completed by another Organization: %+v %+v", e.Address, e.Structure, e.Postal)
		}
	}
	// The request fails: so does the search, and a cancelled context stops it.
	s.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/fhir/v2/Organization" {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		return false
	}
	if _, err := f.Search(ctx, Query{Name: "dupont"}); !errors.Is(err, ErrHTTP) {
		t.Errorf("Organization request failing: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/fhir/v2/Organization" {
			cancel()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return true
		}
		return false
	}
	if _, err := f.Search(cctx, Query{Name: "dupont"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled during the Organization request: %v", err)
	}
}
