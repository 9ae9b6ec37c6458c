package annuaire

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/fold"
)

// fakeANS is a FHIR server holding the Practitioner, PractitionerRole and Organization
// resources made from the lines of an extraction file, as the ANS API models them: a PER BAL
// with a structure on a PractitionerRole that references its Practitioner and its
// Organization, a PER BAL without one on the Practitioner, an ORG BAL on the Organization. It
// answers the search parameters the FHIR backend sends, with the meaning the IG gives them,
// and refuses any other (400), so a parameter the API does not have fails the test.
type fakeANS struct {
	res map[string][]*fakeResource // by type, in creation order
	ids map[string]*fakeResource   // by "Type/id"
	// v1Roles puts the profession (TRE_G15) in PractitionerRole.code, as fhir/v1 did; fhir/v2
	// keeps it in the Practitioner's qualifications only.
	v1Roles bool
	// iterate honours _include:iterate=PractitionerRole:organization on a Practitioner
	// search with _revinclude; otherwise the parameter is ignored, as a lenient FHIR server
	// ignores what it does not support.
	iterate bool

	mu       sync.Mutex
	revPages int // answers to Practitioner searches with _revinclude
	idReqs   int // Organization searches by _id
}

type fakeResource struct {
	typ, id     string
	body        map[string]any
	identifiers []string // system|value
	codes       []string // system|code of the qualifications or the role codes
	bals        [][2]string
	refs        []string // a role's practitioner and organization references
	postalCode  string
	names       []string // the parts of a Practitioner's name, an Organization's name
}

func (f *fakeANS) add(typ, id string) (*fakeResource, bool) {
	if r := f.ids[typ+"/"+id]; r != nil {
		return r, false
	}
	r := &fakeResource{typ: typ, id: id, body: map[string]any{"resourceType": typ, "id": id}}
	f.res[typ] = append(f.res[typ], r)
	f.ids[typ+"/"+id] = r
	return r, true
}

func (r *fakeResource) identifier(system, value string) {
	r.identifiers = append(r.identifiers, system+"|"+value)
	ids, _ := r.body["identifier"].([]any)
	r.body["identifier"] = append(ids, map[string]any{"system": system, "value": value})
}

func (r *fakeResource) bal(e *Entry) {
	meta := []any{map[string]any{"url": "type", "valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"code": string(e.Type)}}}},
		map[string]any{"url": "digitization", "valueBoolean": e.Dematerialisation}}
	if e.Structure.Service != "" {
		meta = append(meta, map[string]any{"url": "service", "valueString": e.Structure.Service})
	}
	tel, _ := r.body["telecom"].([]any)
	r.body["telecom"] = append(tel, map[string]any{"system": "email", "value": e.Address, "extension": []any{
		map[string]any{"url": fhirEmailTypeURL, "valueCoding": map[string]any{"code": "MSSANTE"}},
		map[string]any{"url": fhirMailboxMetaURL, "extension": meta}}})
	r.bals = append(r.bals, [2]string{e.Address, string(e.Type)})
}

// codings returns the profession, category and specialty of p as codings.
func codings(p *Person) []any {
	var out []any
	for _, c := range [][3]string{
		{"TRE_G15-ProfessionSante", p.ProfessionCode, p.ProfessionLabel},
		{"TRE_R09-CategorieProfessionnelle", p.ProfessionCategory, p.ProfessionCategoryLabel},
		{"TRE_R38-SpecialiteOrdinale", p.SpecialtyCode, p.SpecialtyLabel},
	} {
		if c[1] != "" {
			out = append(out, map[string]any{"system": "https://mos.esante.gouv.fr/NOS/" + c[0] + "/FHIR/" + strings.Replace(c[0], "_", "-", 1),
				"code": c[1], "display": c[2]})
		}
	}
	return out
}

func newFakeANS(t *testing.T, x *Extraction, v1Roles, iterate bool) *fakeANS {
	f := &fakeANS{res: map[string][]*fakeResource{}, ids: map[string]*fakeResource{}, v1Roles: v1Roles, iterate: iterate}
	for _, e := range allEntries(t, x) {
		var holder *fakeResource
		if e.Person.NationalID != "" {
			p, isNew := f.add("Practitioner", "p"+e.Person.NationalID)
			if isNew {
				p.identifier(fhirSystemIdNatPS, e.Person.NationalID)
				p.identifier(fhirSystemRPPS, e.Person.ID)
				name := map[string]any{"use": "official", "family": e.Person.LastName, "given": []any{e.Person.FirstName}}
				if e.Person.Civility == "DR" || e.Person.Civility == "PR" {
					name["suffix"] = []any{e.Person.Civility}
				} else {
					name["prefix"] = []any{e.Person.Civility}
				}
				p.body["name"] = []any{name}
				p.names = []string{e.Person.LastName, e.Person.FirstName, e.Person.Civility}
				p.body["qualification"] = []any{map[string]any{"code": map[string]any{"coding": codings(&e.Person)}}}
				p.codes = append(p.codes, fhirSystemProfession+"|"+e.Person.ProfessionCode)
			}
			holder = p
		}
		if e.Structure.ID != "" {
			o, isNew := f.add("Organization", "o"+e.Structure.ID)
			if isNew {
				o.identifier(fhirSystemIdNatSt, e.Structure.ID)
				switch e.Structure.IDType { // the systems of fr-core
				case "FINESS":
					o.identifier(fhirSystemFINESS, e.Structure.ID[1:])
				case "SIRET":
					o.identifier("https://sirene.fr", e.Structure.ID[1:])
				}
				o.body["name"] = e.Structure.Name
				o.names = []string{e.Structure.Name}
				if e.Structure.TradeName != "" {
					o.body["alias"] = []any{e.Structure.TradeName}
				}
				a := e.Postal
				var adxp []any
				for _, part := range [][2]string{{"houseNumber", a.Number}, {"buildingNumberSuffix", a.NumberComplement},
					{"streetNameType", a.StreetType}, {"streetNameBase", a.Street}, {"additionalLocator", a.Complement}, {"postBox", a.Distribution}} {
					if part[1] != "" {
						adxp = append(adxp, map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-" + part[0], "valueString": part[1]})
					}
				}
				o.body["address"] = []any{map[string]any{"line": []any{a.StreetType + " " + a.Street}, "_line": []any{map[string]any{"extension": adxp}},
					"city": strings.TrimPrefix(a.CityLine, a.PostalCode+" "), "postalCode": a.PostalCode, "country": a.Country}}
				o.postalCode = a.PostalCode
			}
			if holder == nil {
				holder = o // an ORG BAL
			} else {
				r, _ := f.add("PractitionerRole", "r"+strconv.Itoa(len(f.res["PractitionerRole"])))
				r.body["practitioner"] = map[string]any{"reference": "Practitioner/" + holder.id}
				// A literal reference with the identifier, as in the fhir/v1 shape of the IG's
				// examples.
				r.body["organization"] = map[string]any{"reference": "Organization/" + o.id,
					"identifier": map[string]any{"system": fhirSystemIdNatSt, "value": e.Structure.ID}}
				r.refs = []string{"Practitioner/" + holder.id, "Organization/" + o.id}
				if v1Roles {
					r.body["code"] = []any{map[string]any{"coding": codings(&e.Person)}}
					r.codes = append(r.codes, fhirSystemProfession+"|"+e.Person.ProfessionCode)
				}
				holder = r
			}
		}
		holder.bal(&e)
	}
	return f
}

// allEntries reads every entry of x through its public search, in pages.
func allEntries(t *testing.T, x *Extraction) []Entry {
	var all []Entry
	q := Query{Limit: MaxLimit}
	for {
		r, err := x.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r.Entries...)
		if q.Cursor = r.Next; q.Cursor == "" {
			return all
		}
	}
}

// matches reports whether r satisfies the search parameter name=value.
func (r *fakeResource) matches(name, value string) (bool, error) {
	anyOf := func(list []string, ok func(string) bool) bool { return slices.ContainsFunc(list, ok) }
	switch name {
	case "mailbox-mss:contains":
		return slices.ContainsFunc(r.bals, func(b [2]string) bool { return strings.Contains(b[0], value) }), nil
	case "mailbox-mss:exact":
		return slices.ContainsFunc(r.bals, func(b [2]string) bool { return b[0] == value }), nil
	case "mailbox-mss-type":
		return slices.ContainsFunc(r.bals, func(b [2]string) bool { return b[1] == value }), nil
	case "identifier": // token: system|value, or a value in any system
		return anyOf(r.identifiers, func(id string) bool {
			return id == value || !strings.Contains(value, "|") && strings.HasSuffix(id, "|"+value)
		}), nil
	case "qualification-code":
		if r.typ == "Practitioner" {
			return slices.Contains(r.codes, value), nil
		}
	case "role":
		if r.typ == "PractitionerRole" {
			return slices.Contains(r.codes, value), nil
		}
	case "_id": // token: logical ids, comma-separated
		return slices.Contains(strings.Split(value, ","), r.id), nil
	case "practitioner", "organization":
		if r.typ == "PractitionerRole" {
			return anyOf(strings.Split(value, ","), func(ref string) bool { return slices.Contains(r.refs, ref) }), nil
		}
	case "address-postalcode":
		if r.typ == "Organization" {
			return strings.HasPrefix(r.postalCode, value), nil
		}
	case "name": // string: a part of the name starts with value, ignoring case and accents
		if r.typ == "Practitioner" || r.typ == "Organization" {
			return anyOf(r.names, func(n string) bool { return strings.HasPrefix(fold.Key(n), fold.Key(value)) }), nil
		}
	}
	return false, fmt.Errorf("unknown search parameter %s on %s", name, r.typ)
}

func (f *fakeANS) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	typ := strings.TrimPrefix(req.URL.Path, "/fhir/v2/")
	q := req.URL.Query()
	count, offset := 50, 0
	if c := q.Get("_count"); c != "" {
		count, _ = strconv.Atoi(c)
	}
	if o := q.Get("_offset"); o != "" {
		offset, _ = strconv.Atoi(o)
	}
	include := q["_include"]
	revinclude := q["_revinclude"]
	iterate := q["_include:iterate"]
	if len(revinclude) > 0 && (typ != "Practitioner" || len(revinclude) != 1 || revinclude[0] != "PractitionerRole:practitioner") ||
		len(iterate) > 0 && (len(revinclude) == 0 || len(iterate) != 1 || iterate[0] != "PractitionerRole:organization") {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"code":"invalid","diagnostics":"bad _revinclude or _include:iterate"}]}`)
		return
	}
	f.mu.Lock()
	if len(revinclude) > 0 {
		f.revPages++
	}
	if q.Has("_id") {
		f.idReqs++
	}
	f.mu.Unlock()
	var matched []*fakeResource
	for _, r := range f.res[typ] {
		ok := true
		for name, values := range q {
			if name == "_count" || name == "_offset" || name == "_include" && typ == "PractitionerRole" || name == "_revinclude" || name == "_include:iterate" {
				continue
			}
			for _, v := range values {
				m, err := r.matches(name, v)
				if err != nil {
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"code":"invalid","diagnostics":%q}]}`, err.Error())
					return
				}
				ok = ok && m
			}
		}
		if ok {
			matched = append(matched, r)
		}
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(matched)}
	if end := offset + count; end < len(matched) {
		q.Set("_offset", strconv.Itoa(end))
		b["link"] = []any{map[string]any{"relation": "next", "url": "https://" + req.Host + req.URL.Path + "?" + q.Encode()}}
		matched = matched[offset:end]
	} else {
		matched = matched[min(offset, len(matched)):]
	}
	var entries []any
	seen := map[string]bool{}
	for _, r := range matched {
		entries = append(entries, map[string]any{"search": map[string]any{"mode": "match"}, "resource": r.body})
	}
	for _, r := range matched {
		for _, ref := range r.refs {
			if slices.Contains(include, r.typ+":"+strings.ToLower(ref[:strings.Index(ref, "/")])) && !seen[ref] {
				seen[ref] = true
				entries = append(entries, map[string]any{"search": map[string]any{"mode": "include"}, "resource": f.ids[ref].body})
			}
		}
	}
	if len(revinclude) > 0 {
		var orgs []string
		for _, r := range matched {
			for _, role := range f.res["PractitionerRole"] {
				if slices.Contains(role.refs, "Practitioner/"+r.id) {
					entries = append(entries, map[string]any{"search": map[string]any{"mode": "include"}, "resource": role.body})
					orgs = append(orgs, role.refs[1])
				}
			}
		}
		for _, ref := range orgs {
			if len(iterate) > 0 && f.iterate && !seen[ref] {
				seen[ref] = true
				entries = append(entries, map[string]any{"search": map[string]any{"mode": "include"}, "resource": f.ids[ref].body})
			}
		}
	}
	b["entry"] = entries
	w.Header().Set("Content-Type", "application/fhir+json")
	json.NewEncoder(w).Encode(b)
}

// TestFHIRDifferential runs profession, structure, person and name queries on a generated
// extraction and on a FHIR server holding the same BALs: the answers must be the same
// entries, structure names and postal addresses included, whether the server honours
// _include:iterate on a name search or the client fetches the roles' Organizations by _id.
// One difference of model is set aside: a BAL on a Practitioner has no structure (the
// extraction gives a liberal practice's name and address). The FHIR backend derives the
// département from the postal code, the generated extraction writes its code (2A, 974…):
// they must agree.
func TestFHIRDifferential(t *testing.T) {
	x := loadText(t, genText(t, 900))
	all := allEntries(t, x)
	var qs []Query
	for _, p := range []string{"10", "21", "40", "50", "60", "70", "80", "91", "99"} {
		qs = append(qs, Query{Profession: p}, Query{Profession: p, Type: PER, Limit: 37})
	}
	for i := 0; i < len(all); i += 29 {
		e := all[i]
		if e.Structure.ID != "" {
			qs = append(qs, Query{StructureID: e.Structure.ID}, Query{StructureID: e.Structure.ID[1:], StructureIDType: e.Structure.IDType})
		}
		if e.Person.ProfessionCode != "" && e.Structure.ID != "" {
			qs = append(qs, Query{StructureID: e.Structure.ID, Profession: e.Person.ProfessionCode, Type: PER})
		}
		if e.Person.ID != "" {
			qs = append(qs, Query{RPPS: e.Person.ID, Profession: e.Person.ProfessionCode})
		}
		// Names: the BALs of the Practitioners of that name and of their PractitionerRoles.
		if n := e.Person.LastName; n != "" {
			qs = append(qs, Query{Name: n}, Query{Name: strings.ToLower(n[:3]), Type: e.Type, Limit: 23},
				Query{Name: n, Profession: e.Person.ProfessionCode}, Query{Name: n, RPPS: e.Person.ID, Limit: 2})
			if f := []rune(e.Person.FirstName); len(f) >= 2 { // last name then the start of the first
				qs = append(qs, Query{Name: strings.ToLower(n) + " " + string(f[:2])})
			}
			// Name and structure: the PractitionerRoles of the structure (or of the person)
			// whose Practitioner has that name.
			if id := e.Structure.ID; id != "" {
				prefix := string([]rune(strings.ToLower(n))[:min(3, len([]rune(n)))])
				qs = append(qs, Query{Name: prefix, StructureID: id}, Query{Name: n, StructureID: id[1:], StructureIDType: e.Structure.IDType, Type: e.Type},
					Query{Name: prefix, RPPS: e.Person.ID, StructureIDType: e.Structure.IDType})
				if f := []rune(e.Person.FirstName); len(f) >= 1 {
					qs = append(qs, Query{Name: n + " " + string(f[:1]), StructureID: id, Limit: 1})
				}
				// No reference: the structure of the name's roles is checked on the client.
				qs = append(qs, Query{Name: prefix, Departement: e.Postal.Departement}, Query{Name: n, StructureIDType: e.Structure.IDType},
					Query{Name: n, PostalCode: e.Postal.PostalCode, Type: e.Type}, Query{StructureID: id, Departement: e.Postal.Departement},
					Query{StructureID: id, PostalCode: e.Postal.PostalCode, Type: e.Type}, Query{RPPS: e.Person.ID, Departement: e.Postal.Departement})
			}
		} else if n, _, _ := strings.Cut(e.Structure.Name, " "); n != "" {
			qs = append(qs, Query{Name: n})
		}
	}
	// Postal criteria alone: every département of an ORG BAL (Corsica and overseas included),
	// and some postal codes.
	depts := map[string]bool{}
	for i, e := range all {
		if e.Type == ORG && !depts[e.Postal.Departement] {
			depts[e.Postal.Departement] = true
			qs = append(qs, Query{Departement: e.Postal.Departement, Type: ORG, Limit: 31})
			if i%3 == 0 {
				qs = append(qs, Query{PostalCode: e.Postal.PostalCode, Type: ORG})
			}
		}
	}
	for _, d := range []string{"2A", "2B", "974"} {
		if !depts[d] {
			t.Errorf("no ORG BAL in département %s", d)
		}
	}
	modelled := func(es []Entry) string {
		out := slices.Clone(es)
		for i := range out {
			if out[i].Structure.ID == "" {
				out[i].Structure, out[i].Postal = Structure{}, PostalAddress{}
			}
		}
		sortEntries(out, false)
		return fmt.Sprint(out)
	}
	search := func(d Directory, q Query) ([]Entry, error) {
		var got []Entry
		for n := 0; ; n++ {
			r, err := d.Search(context.Background(), q)
			if err != nil || n > 100 {
				return nil, fmt.Errorf("%v (page %d)", err, n)
			}
			got = append(got, r.Entries...)
			if q.Cursor = r.Next; q.Cursor == "" {
				return got, nil
			}
		}
	}
	for _, tt := range []struct {
		name             string
		v1Roles, scan    bool
		iterate, skipIdx bool // the server honours _include:iterate; the client does not send it
	}{
		{"fhir/v1 roles", true, false, true, false},
		{"fhir/v1 roles, :iterate ignored", true, false, false, false},
		{"fhir/v1 roles, no :iterate", true, false, true, true},
		{"fhir/v2 roles, scanned", false, true, false, false},
		{"fhir/v2 roles, role parameter", false, false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ans := newFakeANS(t, x, tt.v1Roles, tt.iterate)
			srv := httptest.NewUnstartedServer(ans)
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			clock := &fakeClock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
			f, err := NewFHIR(&FHIROptions{BaseURL: srv.URL + "/fhir/v2", HTTPClient: srv.Client(), Now: clock.Now, Sleep: clock.Sleep,
				ScanRolesForProfession: tt.scan, NoIncludeIterate: tt.skipIdx})
			if err != nil {
				t.Fatal(err)
			}
			ran, nonEmpty, fewer, names, roleBALs, structureNamed, byStructure := 0, 0, 0, 0, 0, 0, 0
			for _, q := range qs {
				if !tt.v1Roles && q.Profession == "" {
					continue // the same on every server
				}
				ran++
				want, err1 := search(x, q)
				got, err2 := search(f, q)
				if err1 != nil || err2 != nil {
					t.Fatalf("%+v: extraction %v, FHIR %v", q, err1, err2)
				}
				if q.PostalCode != "" || q.Departement != "" {
					// A BAL's postal address is its Organization's (modelled): the lines with an
					// address but no structure are not the answer of a postal criterion there.
					want = slices.DeleteFunc(want, func(e Entry) bool { return e.Structure.ID == "" })
				}
				if len(want) > 0 {
					nonEmpty++
				}
				byName := q.Name != ""
				if byName {
					names++
					for _, e := range got {
						if e.Person.NationalID != "" && e.Structure.ID != "" {
							roleBALs++
							if e.Structure.Name != "" && e.Postal.PostalCode != "" {
								structureNamed++
							}
							if (q.StructureID != "" || q.StructureIDType != "") && e.Person.LastName != "" {
								byStructure++
							}
						}
					}
				}
				if modelled(got) == modelled(want) {
					continue
				}
				// A fhir/v2 server does not find a profession under role: the FHIR backend
				// then gives fewer entries, never others.
				if !tt.v1Roles && !tt.scan && q.Profession != "" && !byName && len(got) < len(want) {
					wanted := map[string]bool{}
					for _, e := range want {
						wanted[modelled([]Entry{e})] = true
					}
					for _, e := range got {
						if !wanted[modelled([]Entry{e})] {
							t.Fatalf("%+v: FHIR returned %s, not in the extraction's answer", q, e.Address)
						}
					}
					fewer++
					continue
				}
				t.Fatalf("%+v:\nFHIR       %d entries %s\nextraction %d entries %s", q, len(got), modelled(got), len(want), modelled(want))
			}
			if nonEmpty < ran*2/3 {
				t.Errorf("only %d of %d queries have answers", nonEmpty, ran)
			}
			if !tt.v1Roles && !tt.scan && fewer == 0 {
				t.Error("the role parameter on a fhir/v2 server lost no entry: the fake does not model fhir/v2")
			}
			if names == 0 || roleBALs == 0 || structureNamed == 0 || tt.v1Roles && byStructure == 0 {
				t.Errorf("%d name queries, %d PractitionerRole BALs found by name, %d with their structure's name and address, %d by name and structure",
					names, roleBALs, structureNamed, byStructure)
			}
			// The roles' Organizations come with the page when the server honours
			// _include:iterate, else from one _id request per page that lacks some.
			ans.mu.Lock()
			revPages, idReqs := ans.revPages, ans.idReqs
			ans.mu.Unlock()
			if tt.iterate && !tt.skipIdx && idReqs != 0 || (!tt.iterate || tt.skipIdx) && (idReqs == 0 || idReqs > revPages) {
				t.Errorf("%d Organization?_id requests for %d pages of a name search", idReqs, revPages)
			}
			t.Logf("%d queries (%d by name, finding %d PractitionerRole BALs, %d by name and structure), %d with answers, %d with fewer entries; %d _id requests for %d name pages",
				ran, names, roleBALs, byStructure, nonEmpty, fewer, idReqs, revPages)
		})
	}
}
