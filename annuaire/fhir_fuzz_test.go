package annuaire

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzFHIRIncludes: in any answer to a PractitionerRole search, the entries come from the
// PractitionerRoles only (never from an included resource) and a person's name comes from
// an included Practitioner that the PractitionerRole references; with a Name, only roles
// that reference an included Practitioner give entries. In any answer to a Name search of
// Practitioners with _revinclude, an entry comes from a matched Practitioner, or from an
// included PractitionerRole that references a matched Practitioner of that name; the
// Organizations asked by _id are logical ids, once each, and of the answer (the same
// Bundle) only Organizations of those ids are added, as includes without fullUrl.
func FuzzFHIRIncludes(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"PractitionerRole","practitioner":{"reference":"Practitioner/a/_history/"},
"telecom":[{"system":"email","value":"x@y","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Practitioner","id":"a","name":[{"family":"A"}]}}]}`))
	fuzzBundles(f, []string{"practitionerrole.json", "practitioner-page1.json", "practitioner-revinclude.json"}, func(t *testing.T, fh *FHIR, b *fhirBundle) {
		q := Query{}
		q.check()
		b.searched, b.revRoles = "Practitioner", true
		ids := missingOrganizations(b)
		for i, id := range ids {
			if !isLogicalID(id) || slices.Contains(ids[:i], id) {
				t.Fatalf("Organization ids %q", ids)
			}
		}
		completed := *b
		completed.Entry = slices.Clone(b.Entry)
		addOrganizations(&completed, b, ids)
		added := completed.Entry[len(b.Entry):]
		for i, be := range added {
			if be.Resource.ResourceType != "Organization" || !slices.Contains(ids, be.Resource.ID) || be.Search.Mode != "include" || be.FullURL != "" ||
				slices.ContainsFunc(added[:i], func(o fhirBundleEntry) bool { return o.Resource.ID == be.Resource.ID }) {
				t.Fatalf("added %+v for %q", be, ids)
			}
		}
		for _, e := range fh.bundleEntries(&completed, &q) {
			ok := false
			for _, be := range b.Entry {
				r := &be.Resource
				if !slices.ContainsFunc(r.Telecom, func(tc fhirTelecom) bool { return tc.Value == e.Address && !listeRouge(tc) }) {
					continue
				}
				switch {
				case r.ResourceType == "Practitioner" && be.Search.Mode != "include" && be.Search.Mode != "outcome":
					ok = true
				case r.ResourceType == "PractitionerRole" && (be.Search.Mode == "include" || be.Search.Mode == ""):
					ok = ok || namedBy(b, r.Practitioner, e.Person.LastName, true)
				}
			}
			if !ok {
				t.Fatalf("entry %q (name %q) comes from no published BAL of a matched Practitioner nor of a role that references one of that name", e.Address, e.Person.LastName)
			}
		}
		b.searched, b.revRoles = "PractitionerRole", false
		for _, e := range fh.bundleEntries(b, &q) {
			ok := false
			for _, be := range b.Entry {
				r := &be.Resource
				if r.ResourceType != "PractitionerRole" || be.Search.Mode == "include" || be.Search.Mode == "outcome" ||
					!slices.ContainsFunc(r.Telecom, func(tc fhirTelecom) bool { return tc.Value == e.Address }) {
					continue
				}
				ok = ok || e.Person.LastName == "" || namedBy(b, r.Practitioner, e.Person.LastName, false)
			}
			if !ok {
				t.Fatalf("entry %q (name %q) comes from no PractitionerRole that references a Practitioner of that name", e.Address, e.Person.LastName)
			}
		}
		named := Query{Name: "D"}
		named.check()
		for _, e := range fh.bundleEntries(b, &named) {
			if !slices.ContainsFunc(b.Entry, func(be fhirBundleEntry) bool {
				r := &be.Resource
				return r.ResourceType == "PractitionerRole" && be.Search.Mode != "include" && be.Search.Mode != "outcome" &&
					slices.ContainsFunc(r.Telecom, func(tc fhirTelecom) bool { return tc.Value == e.Address }) && namedBy(b, r.Practitioner, "", false)
			}) {
				t.Fatalf("entry %q of a Name search comes from no PractitionerRole that references an included Practitioner", e.Address)
			}
		}
	})
}

// listeRouge reports whether a telecom is flagged listeRouge.
func listeRouge(tc fhirTelecom) bool {
	for _, x := range tc.Extension {
		for _, sub := range x.Extension {
			if x.URL == fhirMailboxMetaURL && sub.URL == "listeRouge" && sub.ValueBoolean != nil && *sub.ValueBoolean {
				return true
			}
		}
	}
	return false
}

// namedBy reports whether an included Practitioner (a matched one when matched) with the
// family name family ("" = any name) is one ref may designate: its id appears in the literal
// reference, or it carries the identifier.
func namedBy(b *fhirBundle, ref *fhirReference, family string, matched bool) bool {
	if ref == nil {
		return false
	}
	for _, be := range b.Entry {
		p := &be.Resource
		included := be.Search.Mode == "include" || be.Search.Mode == "" && !matched
		if p.ResourceType != "Practitioner" || be.Search.Mode == "outcome" || included == matched {
			continue
		}
		var names []fhirHumanName
		if family != "" && (json.Unmarshal(p.Name, &names) != nil || !slices.ContainsFunc(names, func(n fhirHumanName) bool { return n.Family == family })) {
			continue
		}
		byRef := p.ID != "" && strings.Contains(ref.Reference, "Practitioner/"+p.ID) ||
			be.FullURL != "" && strings.HasPrefix(ref.Reference, be.FullURL)
		byID := ref.Identifier != nil && slices.Contains(p.Identifier, *ref.Identifier)
		if byRef || byID {
			return true
		}
	}
	return false
}

// fuzzBundles fuzzes check over the FHIR Bundles that decode, seeded with the named fixtures
// of testdata/fhir (and what f already holds).
func fuzzBundles(f *testing.F, fixtures []string, check func(t *testing.T, fh *FHIR, b *fhirBundle)) {
	for _, name := range fixtures {
		b, err := os.ReadFile("testdata/fhir/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	fh, err := NewFHIR(&FHIROptions{BaseURL: "https://fhir.example/fhir/v2"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b fhirBundle
		if json.Unmarshal(body, &b) != nil {
			return
		}
		check(t, fh, &b)
	})
}
