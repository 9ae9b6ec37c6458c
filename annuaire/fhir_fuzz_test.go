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
// an included Practitioner that the PractitionerRole references.
func FuzzFHIRIncludes(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"PractitionerRole","practitioner":{"reference":"Practitioner/a/_history/"},
"telecom":[{"system":"email","value":"x@y","extension":[{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}}]}]}},
{"search":{"mode":"include"},"resource":{"resourceType":"Practitioner","id":"a","name":[{"family":"A"}]}}]}`))
	fuzzBundles(f, []string{"practitionerrole.json", "practitioner-page1.json"}, func(t *testing.T, fh *FHIR, b *fhirBundle) {
		b.searched = "PractitionerRole"
		q := Query{}
		q.check()
		for _, e := range fh.bundleEntries(b, &q) {
			ok := false
			for _, be := range b.Entry {
				r := &be.Resource
				if r.ResourceType != "PractitionerRole" || be.Search.Mode == "include" || be.Search.Mode == "outcome" ||
					!slices.ContainsFunc(r.Telecom, func(tc fhirTelecom) bool { return tc.Value == e.Address }) {
					continue
				}
				ok = ok || e.Person.LastName == "" || namedBy(b, r.Practitioner, e.Person.LastName)
			}
			if !ok {
				t.Fatalf("entry %q (name %q) comes from no PractitionerRole that references a Practitioner of that name", e.Address, e.Person.LastName)
			}
		}
	})
}

// namedBy reports whether an included Practitioner with the family name family is one ref
// may designate: its id appears in the literal reference, or it carries the identifier.
func namedBy(b *fhirBundle, ref *fhirReference, family string) bool {
	if ref == nil {
		return false
	}
	for _, be := range b.Entry {
		p := &be.Resource
		if p.ResourceType != "Practitioner" || be.Search.Mode != "include" && be.Search.Mode != "" {
			continue
		}
		var names []fhirHumanName
		if json.Unmarshal(p.Name, &names) != nil || !slices.ContainsFunc(names, func(n fhirHumanName) bool { return n.Family == family }) {
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
