package cda

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mssante-go/sdk/mssante"
)

// Severity of a finding.
type Severity int

// Severities.
const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Finding is one failed rule. Messages name the rule and the element, never patient data.
type Finding struct {
	Rule     string // rule id, e.g. "HDR-REALM"
	Severity Severity
	Message  string
}

func (f Finding) String() string { return fmt.Sprintf("%s %s: %s", f.Severity, f.Rule, f.Message) }

// Report is the result of [Validate].
type Report struct {
	Findings []Finding
	// Checked lists the rules that were evaluated, in order.
	Checked []string
}

// Errors returns the findings of severity Error.
func (r *Report) Errors() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == Error {
			out = append(out, f)
		}
	}
	return out
}

// OK reports whether no rule failed with severity Error.
func (r *Report) OK() bool { return len(r.Errors()) == 0 }

// ValidationError is returned by a strict [Parse] when rules fail.
type ValidationError struct{ Findings []Finding }

func (e *ValidationError) Error() string {
	var parts []string
	for _, f := range e.Findings {
		parts = append(parts, f.Rule+": "+f.Message)
	}
	return "cda: document does not conform: " + strings.Join(parts, "; ")
}

// Unwrap returns [ErrInvalid].
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Rule is one check of [Validate]: its id, the text it comes from, and the check itself.
type Rule struct {
	ID     string
	Source string // where the rule comes from
	check  func(d *Document, fail func(sev Severity, format string, args ...any))
}

var (
	tsRE   = regexp.MustCompile(`^[0-9]{4,14}(\.[0-9]+)?([+-][0-9]{4})?$`)
	langRE = regexp.MustCompile(`^[a-z]{2}-[A-Z]{2}$`)
)

func isINSOID(oid string) bool {
	switch oid {
	case mssante.OIDINSNIR, mssante.OIDINSNIA, mssante.OIDINSNIRTest, mssante.OIDINSNIATest:
		return true
	}
	return false
}

func countTemplates(d *Document, root string) int {
	n := 0
	for _, t := range d.TemplateIDs {
		if t.Root == root {
			n++
		}
	}
	return n
}

// IsN1 reports whether the document declares the XDS-SD (non structuré) template.
func (d *Document) IsN1() bool { return hasTemplate(d.TemplateIDs, TemplateXDSSD) }

// IsLDLSES reports whether the document declares the LDL-SES template.
func (d *Document) IsLDLSES() bool { return hasTemplate(d.TemplateIDs, TemplateLDLSES) }

// Rules returns the checks [Validate] runs, in order. They restate the schematrons of the
// TestContenuCDA kit, CI-SIS StrucMin (ASIP-STRUCT-MIN-StrucMin.sch) and CI-SIS LDL-SES
// (CI-SIS_LDL-SES_2022.01.sch, with its Entete_LDL-SES pattern), the CDA R2 header, and the
// CI-SIS document-core IG for the N1 (XDS-SD) body; each [Rule]'s Source names the one it
// restates. Each call returns a new slice.
func Rules() []Rule { return slices.Clone(rules) }

var rules = []Rule{
	{"HDR-REALM", "StrucMin: count(realmCode[@code='FR'])=1", func(d *Document, fail func(Severity, string, ...any)) {
		if len(d.RealmCode) != 1 || d.RealmCode[0].Code != "FR" {
			fail(Error, "exactly one realmCode with code FR required")
		}
	}},
	{"HDR-TYPEID", "CDA R2: typeId 2.16.840.1.113883.1.3 / POCD_HD000040", func(d *Document, fail func(Severity, string, ...any)) {
		if d.TypeID == nil || d.TypeID.Root != OIDTypeID || d.TypeID.Extension != TypeIDExtension {
			fail(Error, "typeId must be root %s extension %s", OIDTypeID, TypeIDExtension)
		}
	}},
	{"HDR-TEMPLATES", "StrucMin: templateIds HL7 France and CI-SIS exactly once, ≥3 in all", func(d *Document, fail func(Severity, string, ...any)) {
		if countTemplates(d, TemplateHL7France) != 1 {
			fail(Error, "templateId %s must appear exactly once", TemplateHL7France)
		}
		if countTemplates(d, TemplateCISIS) != 1 {
			fail(Error, "templateId %s must appear exactly once", TemplateCISIS)
		}
		if len(d.TemplateIDs) < 3 {
			fail(Error, "a templateId of the document model is required (≥3 templateIds)")
		}
	}},
	{"N1-TEMPLATES", "StrucMin: in an N1 document only the three templateIds HL7 France, CI-SIS and XDS-SD", func(d *Document, fail func(Severity, string, ...any)) {
		if d.IsN1() && len(d.TemplateIDs) != 3 {
			fail(Error, "an N1 (XDS-SD) document must declare exactly three templateIds")
		}
	}},
	{"HDR-ID", "StrucMin: id 1..1 without nullFlavor", func(d *Document, fail func(Severity, string, ...any)) {
		if d.ID == nil || d.ID.NullFlavor != "" || d.ID.Root == "" {
			fail(Error, "document id required")
		} else if !validOID(d.ID.Root) && !validUUID(d.ID.Root) {
			fail(Error, "document id root is not an OID or UUID")
		}
	}},
	{"HDR-CODE", "StrucMin: code 1..1 (JDV_J07-XdsTypeCode-CISIS)", func(d *Document, fail func(Severity, string, ...any)) {
		if d.Code == nil || d.Code.Code == "" || d.Code.CodeSystem == "" {
			fail(Error, "document code with codeSystem required")
		}
	}},
	{"HDR-TITLE", "StrucMin: title 1..1", func(d *Document, fail func(Severity, string, ...any)) {
		if strings.TrimSpace(d.Title) == "" {
			fail(Error, "title required")
		}
	}},
	{"HDR-EFFECTIVETIME", "StrucMin: effectiveTime 1..1, TS ^[0-9]{4,14}", func(d *Document, fail func(Severity, string, ...any)) {
		if d.EffectiveTime == nil || !tsRE.MatchString(d.EffectiveTime.Value) {
			fail(Error, "effectiveTime required as an HL7 TS")
		}
	}},
	{"HDR-CONFIDENTIALITY", "StrucMin + LDL-SES: confidentialityCode N, R or V in 2.16.840.1.113883.5.25", func(d *Document, fail func(Severity, string, ...any)) {
		c := d.ConfidentialityCode
		if c == nil || c.CodeSystem != OIDConfidentiality || confidentiality[c.Code] == "" {
			fail(Error, "confidentialityCode must be N, R or V in %s", OIDConfidentiality)
		}
	}},
	{"HDR-LANGUAGE", "StrucMin: languageCode [a-z]{2}-[A-Z]{2}", func(d *Document, fail func(Severity, string, ...any)) {
		if d.LanguageCode == nil || !langRE.MatchString(d.LanguageCode.Code) {
			fail(Error, "languageCode required (fr-FR)")
		}
	}},
	{"HDR-VERSION", "StrucMin: setId and versionNumber 1..1, versionNumber positive", func(d *Document, fail func(Severity, string, ...any)) {
		if d.SetID == nil || d.SetID.Root == "" {
			fail(Error, "setId required")
		}
		if d.VersionNumber == nil {
			fail(Error, "versionNumber required")
		} else if n, err := strconv.Atoi(d.VersionNumber.Value); err != nil || n < 1 {
			fail(Error, "versionNumber must be a positive integer")
		}
	}},
	{"HDR-RECORDTARGET", "StrucMin: recordTarget 1..1 with a patient id", func(d *Document, fail func(Severity, string, ...any)) {
		if len(d.RecordTargets) != 1 || len(d.RecordTargets[0].PatientRole.IDs) == 0 {
			fail(Error, "exactly one recordTarget with a patient id required")
		}
	}},
	{"HDR-INS", "StrucMin: INS OIDs 1.2.250.1.213.1.4.8/9/10/11; matricule and key", func(d *Document, fail func(Severity, string, ...any)) {
		ins, ok := d.INS()
		if !ok {
			fail(Warning, "no INS among the patient ids")
			return
		}
		if _, err := mssante.ParseINS(ins.Value, ins.OID); err != nil {
			fail(Error, "patient INS is not valid (%s)", insProblem(err))
		}
	}},
	{"HDR-INS-TRAITS", "StrucMin: with an INS, family[@qualifier='BR'], given[@qualifier='BR'], given, birthTime, birthplace county, administrativeGenderCode", func(d *Document, fail func(Severity, string, ...any)) {
		if _, ok := d.INS(); !ok {
			return
		}
		p := d.RecordTargets[0].PatientRole.Patient
		if p == nil {
			fail(Error, "patient element required with an INS")
			return
		}
		var name *PN
		if len(p.Names) > 0 {
			name = &p.Names[0]
		}
		for _, q := range [][2]string{{"family", "BR"}, {"given", "BR"}, {"given", ""}} {
			if name.Part(q[0], q[1]) == "" {
				fail(Error, "INS trait %s[@qualifier=%q] missing", q[0], q[1])
			}
		}
		if p.BirthTime == nil || p.BirthTime.Value == "" {
			fail(Error, "INS trait birthTime missing")
		}
		if p.Birthplace == nil || p.Birthplace.Place.Addr == nil || p.Birthplace.Place.Addr.County == "" {
			fail(Error, "INS trait birthplace/place/addr/county missing")
		}
		if p.AdministrativeGender == nil || p.AdministrativeGender.Code == "" {
			fail(Error, "INS trait administrativeGenderCode missing")
		}
	}},
	{"HDR-AUTHOR", "StrucMin: author ≥1 with assignedAuthor/id", func(d *Document, fail func(Severity, string, ...any)) {
		if len(d.Authors) == 0 {
			fail(Error, "at least one author required")
		}
		for i, a := range d.Authors {
			if len(a.AssignedAuthor.IDs) == 0 {
				fail(Error, "author[%d] has no id", i+1)
			}
		}
	}},
	{"HDR-PS-ID", "idNat_PS: prefix and check digit of ids rooted 1.2.250.1.71.4.2.1", func(d *Document, fail func(Severity, string, ...any)) {
		check := func(where string, ids []II) {
			for _, id := range ids {
				if id.Root == mssante.OIDIdNatPS {
					if _, err := mssante.ParsePSNationalID(id.Extension); err != nil {
						fail(Warning, "%s: idNat_PS does not check (%v)", where, err)
					}
				}
			}
		}
		for i, a := range d.Authors {
			check(fmt.Sprintf("author[%d]", i+1), a.AssignedAuthor.IDs)
		}
		if d.LegalAuthenticator != nil {
			check("legalAuthenticator", d.LegalAuthenticator.AssignedEntity.IDs)
		}
	}},
	{"HDR-CUSTODIAN", "StrucMin: custodian 1..1 with an organization id", func(d *Document, fail func(Severity, string, ...any)) {
		if d.Custodian == nil || len(d.Custodian.AssignedCustodian.Organization.IDs) == 0 {
			fail(Error, "custodian organization with an id required")
		}
	}},
	{"HDR-LEGALAUTH", "StrucMin: legalAuthenticator 1..1 with signatureCode S", func(d *Document, fail func(Severity, string, ...any)) {
		if d.LegalAuthenticator == nil {
			fail(Error, "legalAuthenticator required")
		} else if d.LegalAuthenticator.SignatureCode.Code != "S" {
			fail(Error, "legalAuthenticator/signatureCode must be S")
		}
	}},
	{"HDR-SERVICEEVENT", "StrucMin: documentationOf ≥1; first serviceEvent with one performer and one effectiveTime", func(d *Document, fail func(Severity, string, ...any)) {
		if len(d.DocumentationOf) == 0 {
			fail(Error, "documentationOf/serviceEvent required")
			return
		}
		se := d.DocumentationOf[0].ServiceEvent
		if len(se.Performers) != 1 {
			fail(Error, "first serviceEvent must have exactly one performer")
		}
		if se.EffectiveTime == nil {
			fail(Error, "first serviceEvent must have an effectiveTime")
		}
	}},
	{"HDR-RPLC", "StrucMin: relatedDocument[@typeCode='RPLC'] ≤1", func(d *Document, fail func(Severity, string, ...any)) {
		n := 0
		for _, r := range d.RelatedDocuments {
			if r.TypeCode == "RPLC" {
				n++
				if len(r.ParentDocument.IDs) == 0 {
					fail(Error, "RPLC relatedDocument without parentDocument/id")
				}
			}
		}
		if n > 1 {
			fail(Error, "at most one RPLC relatedDocument")
		}
	}},
	{"HDR-ENCOUNTER", "StrucMin: componentOf/encompassingEncounter 1..1", func(d *Document, fail func(Severity, string, ...any)) {
		if d.ComponentOf == nil {
			fail(Error, "componentOf/encompassingEncounter required")
		} else if l := d.ComponentOf.EncompassingEncounter.Location; l == nil || l.HealthCareFacility.Code == nil {
			fail(Warning, "no healthCareFacility code (XDS healthcareFacilityTypeCode)")
		}
	}},
	{"BODY", "CDA R2: component holds exactly one of nonXMLBody and structuredBody", func(d *Document, fail func(Severity, string, ...any)) {
		if d.Component == nil || (d.Component.NonXMLBody == nil) == (d.Component.StructuredBody == nil) {
			fail(Error, "exactly one body required")
		}
	}},
	{"N1-BODY", "document-core IG: nonXMLBody/text mediaType application/pdf or text/plain, representation B64, decodable", func(d *Document, fail func(Severity, string, ...any)) {
		if d.Component == nil || d.Component.NonXMLBody == nil {
			if d.IsN1() {
				fail(Error, "an N1 document needs a nonXMLBody")
			}
			return
		}
		mt, data, err := d.Content()
		switch {
		case err != nil:
			fail(Error, "%v", err)
		case mt != MediaTypePDF && mt != MediaTypeText:
			fail(Error, "mediaType must be application/pdf or text/plain")
		case len(data) == 0:
			fail(Error, "empty encapsulated document")
		case mt == MediaTypePDF && !bytes.HasPrefix(data, []byte("%PDF-")):
			fail(Error, "encapsulated document is not a PDF")
		}
	}},
	{"LDL-CODE", "Entete_LDL-SES: code 11490-0 (LOINC)", func(d *Document, fail func(Severity, string, ...any)) {
		if d.IsLDLSES() && (d.Code == nil || d.Code.Code != CodeLDLSES) {
			fail(Error, "an LDL-SES document must have code 11490-0")
		}
	}},
	{"LDL-BIRTHTIME", "Entete_LDL-SES: patient birthTime mandatory", func(d *Document, fail func(Severity, string, ...any)) {
		if !d.IsLDLSES() {
			return
		}
		if len(d.RecordTargets) == 0 || d.RecordTargets[0].PatientRole.Patient == nil || d.RecordTargets[0].PatientRole.Patient.BirthTime == nil {
			fail(Error, "patient birthTime required")
		}
	}},
	{"LDL-SECTIONS", "CI-SIS_LDL-SES_2022.01: sections 1.2.250.1.213.1.1.2.35.1, 1.3.6.1.4.1.19376.1.5.3.1.3.1, 1.3.6.1.4.1.19376.1.7.3.1.1.13.7, 1.3.6.1.4.1.19376.1.5.3.1.3.22 mandatory", func(d *Document, fail func(Severity, string, ...any)) {
		if !d.IsLDLSES() {
			return
		}
		for _, root := range []string{SectionStatus, SectionReason, SectionOutcomes, SectionDischargeMeds} {
			if d.Section(root) == nil {
				fail(Error, "section %s required", root)
			}
		}
	}},
}

// Validate runs every rule of [Rules] on d.
func Validate(d *Document) *Report {
	r := &Report{}
	for _, rule := range rules {
		r.Checked = append(r.Checked, rule.ID)
		rule.check(d, func(sev Severity, format string, args ...any) {
			r.Findings = append(r.Findings, Finding{Rule: rule.ID, Severity: sev, Message: fmt.Sprintf(format, args...)})
		})
	}
	return r
}

// Section returns the first section of the structured body declaring templateId root.
func (d *Document) Section(root string) *Section {
	if d.Component == nil || d.Component.StructuredBody == nil {
		return nil
	}
	for i := range d.Component.StructuredBody.Components {
		if s := &d.Component.StructuredBody.Components[i].Section; s.HasTemplate(root) {
			return s
		}
	}
	return nil
}
