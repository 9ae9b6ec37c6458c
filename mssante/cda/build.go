package cda

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// Kind is the body form of a document.
type Kind string

// The two document kinds the builders make.
const (
	KindLDLSES Kind = "ldl-ses" // structured lettre de liaison (N3)
	KindN1     Kind = "n1"      // PDF wrapped in CDA (non structuré, XDS-SD)
)

// ErrIncomplete is wrapped by every *BuildError.
var ErrIncomplete = errors.New("cda: incomplete input")

// BuildError lists every field of an [Input] that is missing or wrong. Messages name the
// JSON field path and the rule, never the value (it may be health data).
type BuildError struct {
	Problems []string
}

func (e *BuildError) Error() string {
	return "cda: cannot build document: " + strings.Join(e.Problems, "; ")
}

// Unwrap returns [ErrIncomplete].
func (e *BuildError) Unwrap() error { return ErrIncomplete }

// Input is what the builders need, and the JSON form read by "mssante cda build --from".
// Times are RFC 3339 in JSON; they are written in the CDA with their offset.
type Input struct {
	Kind            Kind         `json:"kind"`            // "ldl-ses" or "n1"
	ID              OID          `json:"id"`              // document id (root [+ extension])
	SetID           OID          `json:"setId"`           // shared by all versions
	Version         int          `json:"version"`         // versionNumber, ≥ 1 (0 = 1)
	Code            *Code        `json:"code,omitempty"`  // n1 only: the document type (JDV_J07); ldl-ses is 11490-0
	Title           string       `json:"title"`           //
	Time            time.Time    `json:"time"`            // effectiveTime
	Confidentiality string       `json:"confidentiality"` // N, R or V ("" = N)
	Patient         Patient      `json:"patient"`
	Author          Professional `json:"author"`
	Custodian       Structure    `json:"custodian"`
	// LegalAuthenticator defaults to the author; signed at Time.
	LegalAuthenticator *Professional  `json:"legalAuthenticator,omitempty"`
	Recipients         []Professional `json:"recipients,omitempty"`
	ServiceEvent       Act            `json:"serviceEvent"`
	Encounter          Visit          `json:"encounter"`
	Replaces           *OID           `json:"replaces,omitempty"`  // id of the version this one replaces (RPLC)
	LDLSES             *LDLSES        `json:"ldlSes,omitempty"`    // ldl-ses body
	PDF                []byte         `json:"pdf,omitempty"`       // n1 body (base64 in JSON)
	MediaType          string         `json:"mediaType,omitempty"` // n1: application/pdf (default) or text/plain
}

// OID is an instance identifier in JSON form.
type OID struct {
	Root      string `json:"root"`
	Extension string `json:"extension,omitempty"`
}

// Code is a coded value in JSON form.
type Code struct {
	Code        string `json:"code"`
	DisplayName string `json:"displayName,omitempty"`
	CodeSystem  string `json:"codeSystem"`
}

func (c *Code) cd() *CD {
	if c == nil {
		return nil
	}
	return &CD{Code: c.Code, DisplayName: c.DisplayName, CodeSystem: c.CodeSystem}
}

// Patient is the patient: INS, traits, and optionally the local identifier (IPP) and address.
type Patient struct {
	mssante.Patient
	IPP     *OID     `json:"ipp,omitempty"`
	Address *Address `json:"address,omitempty"`
}

// Address is a postal address.
type Address struct {
	Street     string `json:"street,omitempty"`
	PostalCode string `json:"postalCode,omitempty"`
	City       string `json:"city,omitempty"`
	Country    string `json:"country,omitempty"`
}

func (a *Address) ad() []AD {
	if a == nil {
		return nil
	}
	// Structured parts only: the StrucMin schematron refuses streetAddressLine mixed with them.
	return []AD{{StreetName: a.Street, PostalCode: a.PostalCode, City: a.City, Country: a.Country}}
}

// Professional is a health professional identified by idNat_PS ("8" + RPPS, …).
type Professional struct {
	ID           string     `json:"id"` // idNat_PS, e.g. 8 + RPPS
	Prefix       string     `json:"prefix,omitempty"`
	Given        string     `json:"given"`
	Family       string     `json:"family"`
	Suffix       string     `json:"suffix,omitempty"`
	Specialty    *Code      `json:"specialty,omitempty"` // TRE_G15 (1.2.250.1.213.1.1.4.5)
	Telecom      string     `json:"telecom,omitempty"`
	Address      *Address   `json:"address,omitempty"`
	Organization *Structure `json:"organization,omitempty"`
}

// Structure is a health structure (organization) identified by idNat_Struct ("1" + FINESS, "3" + SIRET, …).
type Structure struct {
	ID              string   `json:"id"` // idNat_Struct
	Name            string   `json:"name"`
	Telecom         string   `json:"telecom,omitempty"`
	Address         *Address `json:"address,omitempty"`
	PracticeSetting *Code    `json:"practiceSetting,omitempty"` // JDV_J04 (1.2.250.1.213.1.1.4.9)
}

// Act is the documented act (serviceEvent); its performer defaults to the author.
type Act struct {
	Code      *Code         `json:"code,omitempty"` // e.g. IMP (2.16.840.1.113883.5.4)
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end,omitempty"`
	Performer *Professional `json:"performer,omitempty"`
}

// Visit is the encounter (stay or visit), with the facility type (TRE_R02 SecteurActivite, e.g. SA01).
type Visit struct {
	Start        time.Time `json:"start"`
	End          time.Time `json:"end,omitempty"`
	FacilityType Code      `json:"facilityType"`
	FacilityID   string    `json:"facilityId,omitempty"` // idNat_Struct of the place
}

// LDLSES is the body of a lettre de liaison à la sortie (LDL-SES_2022.01): the four mandatory
// sections.
type LDLSES struct {
	Status        string       `json:"status"`        // in-progress, done, approved or closed (JDV_StatutDoc_CISIS)
	Reason        string       `json:"reason"`        // motif de l'hospitalisation
	AdmissionMode Code         `json:"admissionMode"` // JDV_ModaliteEntree_CISIS
	DischargeMode Code         `json:"dischargeMode"` // JDV_ModaliteSortie_CISIS
	Synthesis     string       `json:"synthesis"`     // synthèse médicale du séjour
	Medications   []Medication `json:"medications"`   // traitements à la sortie, ≥ 1
	// Optional narrative sections: FR-Resultats-examens-non-code (results awaited or worth
	// knowing) and FR-Plan-de-soins (suites à donner). Empty = section left out.
	Results  string `json:"results,omitempty"`
	CarePlan string `json:"carePlan,omitempty"`
}

// Medication is one discharge treatment.
type Medication struct {
	Name  string    `json:"name"`
	Code  *Code     `json:"code"` // CIS spécialité (1.2.250.1.213.2.3.1)
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitempty"`
	Dose  string    `json:"dose,omitempty"` // free text shown in the narrative
}

// tsLayout is the HL7 TS layout the ANS examples use.
const tsLayout = "20060102150405-0700"

// FormatTS formats t as an HL7 TS with its offset.
func FormatTS(t time.Time) string { return t.Format(tsLayout) }

func ts(t time.Time) *TS { return &TS{Value: FormatTS(t)} }

// Build checks in and returns the document. It never guesses: a missing mandatory value is
// reported in a *BuildError that lists every problem at once.
func Build(in *Input) (*Document, error) {
	p := &problems{}
	in.check(p)
	if len(p.list) > 0 {
		return nil, &BuildError{Problems: p.list}
	}
	d := &Document{
		RealmCode:     []CS{{Code: "FR"}},
		TypeID:        &II{Root: OIDTypeID, Extension: TypeIDExtension},
		TemplateIDs:   []II{{Root: TemplateHL7France}, {Root: TemplateCISIS}},
		ID:            &II{Root: in.ID.Root, Extension: in.ID.Extension},
		Title:         in.Title,
		EffectiveTime: ts(in.Time),
		LanguageCode:  &CS{Code: "fr-FR"},
		SetID:         &II{Root: in.SetID.Root, Extension: in.SetID.Extension},
		VersionNumber: &INT{Value: strconv.Itoa(max(in.Version, 1))},
	}
	conf := in.Confidentiality
	if conf == "" {
		conf = "N"
	}
	d.ConfidentialityCode = &CD{Code: conf, DisplayName: confidentiality[conf], CodeSystem: OIDConfidentiality}
	switch in.Kind {
	case KindLDLSES:
		d.TemplateIDs = append(d.TemplateIDs, II{Root: TemplateLDLSES, Extension: TemplateLDLSESVers})
		d.Code = &CD{Code: CodeLDLSES, DisplayName: DisplayLDLSES, CodeSystem: OIDLOINC, CodeSystemName: "LOINC"}
	case KindN1:
		d.TemplateIDs = append(d.TemplateIDs, II{Root: TemplateXDSSD})
		d.Code = in.Code.cd()
	}
	d.RecordTargets = []RecordTarget{{PatientRole: in.Patient.role()}}
	d.Authors = []Author{{Time: TS{Value: FormatTS(in.Time)}, AssignedAuthor: in.Author.assignedAuthor()}}
	d.Custodian = &Custodian{}
	d.Custodian.AssignedCustodian.Organization = *in.Custodian.org(true)
	for _, r := range in.Recipients {
		var ir InfoRecipient
		id, _ := mssante.ParsePSNationalID(r.ID)
		ir.IntendedRecipient.IDs = []II{{Root: id.OID(), Extension: r.ID}}
		ir.IntendedRecipient.InformationRecipient = r.person()
		if r.Organization != nil {
			ir.IntendedRecipient.ReceivedOrganization = r.Organization.org(false)
		}
		d.InformationRecips = append(d.InformationRecips, ir)
	}
	la := in.LegalAuthenticator
	if la == nil {
		la = &in.Author
	}
	d.LegalAuthenticator = &LegalAuthenticator{Time: TS{Value: FormatTS(in.Time)}, SignatureCode: CS{Code: "S"}, AssignedEntity: la.assignedEntity()}
	perf := in.ServiceEvent.Performer
	if perf == nil {
		perf = &in.Author
	}
	se := ServiceEvent{ClassCode: "ACT", MoodCode: "EVN", Code: in.ServiceEvent.Code.cd(),
		EffectiveTime: interval(in.ServiceEvent.Start, in.ServiceEvent.End),
		Performers:    []Performer{{TypeCode: "PRF", AssignedEntity: perf.assignedEntity()}}}
	d.DocumentationOf = []DocumentationOf{{ServiceEvent: se}}
	if in.Replaces != nil {
		var rd RelatedDocument
		rd.TypeCode = "RPLC"
		rd.ParentDocument.IDs = []II{{Root: in.Replaces.Root, Extension: in.Replaces.Extension}}
		d.RelatedDocuments = []RelatedDocument{rd}
	}
	enc := Encounter{EffectiveTime: *interval(in.Encounter.Start, in.Encounter.End)}
	enc.Location = &Location{}
	if in.Encounter.FacilityID != "" {
		enc.Location.HealthCareFacility.IDs = []II{{Root: mssante.OIDIdNatStruct, Extension: in.Encounter.FacilityID}}
	}
	enc.Location.HealthCareFacility.Code = in.Encounter.FacilityType.cd()
	d.ComponentOf = &ComponentOf{EncompassingEncounter: enc}
	switch in.Kind {
	case KindLDLSES:
		d.Component = &BodyComponent{StructuredBody: in.LDLSES.body(in.ID.Root+"^"+in.ID.Extension, in.Time)}
	case KindN1:
		mt := in.MediaType
		if mt == "" {
			mt = MediaTypePDF
		}
		d.Component = &BodyComponent{NonXMLBody: &NonXMLBody{Text: B64Text{MediaType: mt,
			Representation: RepresentationB64, Data: base64.StdEncoding.EncodeToString(in.PDF)}}}
	}
	return d, nil
}

func interval(start, end time.Time) *IVLTS {
	iv := &IVLTS{Low: ts(start)}
	if !end.IsZero() {
		iv.High = ts(end)
	}
	return iv
}

type problems struct{ list []string }

func (p *problems) add(field, format string, args ...any) {
	p.list = append(p.list, field+": "+fmt.Sprintf(format, args...))
}

func (p *problems) need(field, v string) {
	if strings.TrimSpace(v) == "" {
		p.add(field, "required")
	}
}

func (p *problems) oid(field string, o OID) {
	if o.Root == "" {
		p.add(field+".root", "required")
	} else if !validOID(o.Root) && !validUUID(o.Root) {
		p.add(field+".root", "not an OID or UUID")
	}
}

func (p *problems) time(field string, t time.Time) {
	if t.IsZero() {
		p.add(field, "required")
	}
}

func (p *problems) code(field string, c *Code) {
	if c == nil {
		p.add(field, "required")
		return
	}
	p.need(field+".code", c.Code)
	if c.CodeSystem == "" {
		p.add(field+".codeSystem", "required")
	} else if !validOID(c.CodeSystem) {
		p.add(field+".codeSystem", "not an OID")
	}
}

func (in *Input) check(p *problems) {
	switch in.Kind {
	case KindLDLSES:
		if in.LDLSES == nil {
			p.add("ldlSes", "required for kind ldl-ses")
		} else {
			in.LDLSES.check(p)
		}
		if len(in.PDF) > 0 {
			p.add("pdf", "not allowed for kind ldl-ses")
		}
		if in.Code != nil && in.Code.Code != CodeLDLSES {
			p.add("code.code", "must be %s for kind ldl-ses", CodeLDLSES)
		}
		if in.ServiceEvent.Start.IsZero() {
			p.add("serviceEvent.start", "required (Entete_LDL-SES: serviceEvent/effectiveTime)")
		}
	case KindN1:
		p.code("code", in.Code)
		if len(in.PDF) == 0 {
			p.add("pdf", "required for kind n1")
		}
		if in.MediaType != "" && in.MediaType != MediaTypePDF && in.MediaType != MediaTypeText {
			p.add("mediaType", "must be application/pdf or text/plain")
		}
		if (in.MediaType == "" || in.MediaType == MediaTypePDF) && len(in.PDF) > 0 && !strings.HasPrefix(string(in.PDF[:min(len(in.PDF), 5)]), "%PDF-") {
			p.add("pdf", "does not start with %%PDF-")
		}
		if in.LDLSES != nil {
			p.add("ldlSes", "not allowed for kind n1")
		}
	default:
		p.add("kind", "must be ldl-ses or n1")
	}
	p.oid("id", in.ID)
	p.oid("setId", in.SetID)
	if in.Version < 0 {
		p.add("version", "must be ≥ 1")
	}
	p.need("title", in.Title)
	p.time("time", in.Time)
	if in.Confidentiality != "" && confidentiality[in.Confidentiality] == "" {
		p.add("confidentiality", "must be N, R or V")
	}
	in.Patient.check(p)
	in.Author.check(p, "author")
	in.Custodian.check(p, "custodian")
	if in.LegalAuthenticator != nil {
		in.LegalAuthenticator.check(p, "legalAuthenticator")
	}
	for i := range in.Recipients {
		in.Recipients[i].check(p, fmt.Sprintf("recipients[%d]", i))
	}
	if in.ServiceEvent.Code != nil {
		p.code("serviceEvent.code", in.ServiceEvent.Code)
	}
	p.time("serviceEvent.start", in.ServiceEvent.Start)
	if in.ServiceEvent.Performer != nil {
		in.ServiceEvent.Performer.check(p, "serviceEvent.performer")
	}
	if perf := in.ServiceEvent.Performer; (perf == nil && (in.Author.Organization == nil || in.Author.Organization.PracticeSetting == nil)) ||
		(perf != nil && (perf.Organization == nil || perf.Organization.PracticeSetting == nil)) {
		p.add("serviceEvent.performer.organization.practiceSetting", "required (XDS practiceSettingCode)")
	}
	if !in.ServiceEvent.End.IsZero() && in.ServiceEvent.End.Before(in.ServiceEvent.Start) {
		p.add("serviceEvent.end", "before start")
	}
	p.time("encounter.start", in.Encounter.Start)
	if !in.Encounter.End.IsZero() && in.Encounter.End.Before(in.Encounter.Start) {
		p.add("encounter.end", "before start")
	}
	p.code("encounter.facilityType", &in.Encounter.FacilityType)
	if in.Encounter.FacilityID != "" {
		if _, err := mssante.ParseStructNationalID(in.Encounter.FacilityID); err != nil {
			p.add("encounter.facilityId", "not an idNat_Struct (%v)", errors.Unwrap(err))
		}
	}
	if in.Replaces != nil {
		p.oid("replaces", *in.Replaces)
	}
}

func (pt *Patient) check(p *problems) {
	if _, err := mssante.ParseINS(pt.INS.Value, pt.INS.OID); err != nil {
		p.add("patient.INS", "invalid (%s)", insProblem(err))
	}
	p.need("patient.BirthName", pt.BirthName)
	p.need("patient.FirstGivenName", pt.FirstGivenName)
	if len(pt.GivenNames) == 0 {
		p.add("patient.GivenNames", "required (traits INS)")
	}
	if pt.BirthDate.IsZero() {
		p.add("patient.BirthDate", "required (traits INS)")
	}
	switch pt.Sex {
	case mssante.SexMale, mssante.SexFemale, mssante.SexUnknown:
	default:
		p.add("patient.Sex", "must be M, F or U")
	}
	if len(pt.BirthPlace) != 5 {
		p.add("patient.BirthPlace", "required: 5-character COG code (traits INS)")
	}
	if pt.IPP != nil {
		p.oid("patient.ipp", *pt.IPP)
		p.need("patient.ipp.extension", pt.IPP.Extension)
	}
}

// insProblem names what is wrong with an INS without repeating it.
func insProblem(err error) string {
	if errors.Is(err, mssante.ErrINSOID) {
		return "unknown OID"
	}
	return "bad matricule or key"
}

func (pr *Professional) check(p *problems, field string) {
	if _, err := mssante.ParsePSNationalID(pr.ID); err != nil {
		p.add(field+".id", "not an idNat_PS (%v)", err)
	}
	p.need(field+".family", pr.Family)
	p.need(field+".given", pr.Given)
	if pr.Specialty != nil {
		p.code(field+".specialty", pr.Specialty)
	}
	if pr.Organization != nil {
		pr.Organization.check(p, field+".organization")
	}
}

func (o *Structure) check(p *problems, field string) {
	if _, err := mssante.ParseStructNationalID(o.ID); err != nil {
		p.add(field+".id", "not an idNat_Struct (%v)", err)
	}
	p.need(field+".name", o.Name)
	if o.PracticeSetting != nil {
		p.code(field+".practiceSetting", o.PracticeSetting)
	}
}

func (l *LDLSES) check(p *problems) {
	if _, ok := documentStatus[l.Status]; !ok {
		p.add("ldlSes.status", "must be in-progress, done, approved or closed")
	}
	p.need("ldlSes.reason", l.Reason)
	p.code("ldlSes.admissionMode", &l.AdmissionMode)
	p.code("ldlSes.dischargeMode", &l.DischargeMode)
	p.need("ldlSes.synthesis", l.Synthesis)
	if len(l.Medications) == 0 {
		p.add("ldlSes.medications", "at least one required (IHE PCC discharge medications section needs a medication entry)")
	}
	for i, m := range l.Medications {
		f := fmt.Sprintf("ldlSes.medications[%d]", i)
		p.need(f+".name", m.Name)
		p.time(f+".start", m.Start)
		p.code(f+".code", m.Code) // E_medications_fr: CIS code required
	}
}

func (pt *Patient) role() PatientRole {
	r := PatientRole{IDs: []II{{Root: pt.INS.OID, Extension: pt.INS.Value}}}
	if pt.IPP != nil {
		r.IDs = append(r.IDs, II{Root: pt.IPP.Root, Extension: pt.IPP.Extension})
	}
	r.Addr = pt.Address.ad()
	name := PN{Parts: []NamePart{
		namePart("family", "BR", pt.BirthName),
		namePart("given", "", strings.Join(pt.GivenNames, " ")),
		namePart("given", "BR", pt.FirstGivenName),
	}}
	if pt.UsedName != "" {
		name.Parts = append(name.Parts, namePart("family", "CL", pt.UsedName))
	}
	if pt.UsedGivenName != "" {
		name.Parts = append(name.Parts, namePart("given", "CL", pt.UsedGivenName))
	}
	gender := map[mssante.Sex]string{mssante.SexMale: "Masculin", mssante.SexFemale: "Féminin", mssante.SexUnknown: "Inconnu"}
	r.Patient = &PatientPsn{ClassCode: "PSN", Names: []PN{name},
		AdministrativeGender: &CD{Code: string(pt.Sex), DisplayName: gender[pt.Sex], CodeSystem: OIDGender},
		BirthTime:            &TS{Value: pt.BirthDate.Format("20060102")},
	}
	bp := &Birthplace{}
	bp.Place.Addr = &AD{County: pt.BirthPlace}
	r.Patient.Birthplace = bp
	return r
}

func (pr *Professional) person() *Person {
	var parts []NamePart
	if pr.Prefix != "" {
		parts = append(parts, namePart("prefix", "", pr.Prefix))
	}
	parts = append(parts, namePart("given", "", pr.Given), namePart("family", "", pr.Family))
	if pr.Suffix != "" {
		parts = append(parts, namePart("suffix", "", pr.Suffix))
	}
	return &Person{Names: []PN{{Parts: parts}}}
}

func telecom(s string) []TEL {
	if s == "" {
		return nil
	}
	return []TEL{{Value: s, Use: "WP"}}
}

func (pr *Professional) assignedAuthor() AssignedAuthor {
	a := AssignedAuthor{IDs: []II{{Root: mssante.OIDIdNatPS, Extension: pr.ID}}, Code: pr.Specialty.cd(),
		Addr: pr.Address.ad(), Telecom: telecom(pr.Telecom), AssignedPerson: pr.person()}
	if pr.Organization != nil {
		a.RepresentedOrganization = pr.Organization.org(false)
	}
	return a
}

func (pr *Professional) assignedEntity() AssignedEntity {
	a := AssignedEntity{IDs: []II{{Root: mssante.OIDIdNatPS, Extension: pr.ID}}, Code: pr.Specialty.cd(),
		Addr: pr.Address.ad(), Telecom: telecom(pr.Telecom), AssignedPerson: pr.person()}
	if pr.Organization != nil {
		a.RepresentedOrganization = pr.Organization.org(false)
	}
	return a
}

// org returns the organization; custodian organizations carry no practice setting.
func (o *Structure) org(custodian bool) *Organization {
	r := &Organization{IDs: []II{{Root: mssante.OIDIdNatStruct, Extension: o.ID}}, Name: o.Name,
		Telecom: telecom(o.Telecom), Addr: o.Address.ad()}
	if !custodian {
		r.StandardIndustryClassCode = o.PracticeSetting.cd()
	}
	return r
}

// body builds the four mandatory LDL-SES sections. Entry and section ids are derived from the
// document so that the output is deterministic.
func (l *LDLSES) body(seed string, t time.Time) *StructuredBody {
	day := &IVLTS{Value: t.Format("20060102")}
	esc := html.EscapeString
	simple := func(tpl []string, code CD, ref string, v *Value) Entry {
		ids := []II{{Root: EntrySimpleObservation}, {Root: EntrySimpleObsFR}}
		for _, r := range tpl {
			ids = append(ids, II{Root: r})
		}
		o := &Observation{ClassCode: "OBS", MoodCode: "EVN", TemplateIDs: ids,
			ID: &II{Root: uuidFor(seed, ref)}, Code: &code, Text: &TextRef{},
			StatusCode: &CS{Code: "completed"}, EffectiveTime: day, Value: v}
		o.Text.Reference.Value = "#" + ref
		return Entry{Observation: o}
	}
	status := documentStatus[l.Status]
	status.XSIType = "CD"
	sStatus := Section{
		TemplateIDs: []II{{Root: SectionStatusParent}, {Root: SectionStatus}},
		ID:          &II{Root: uuidFor(seed, "section-status")},
		Code:        &CD{Code: "33557-0", DisplayName: "Etat d'achèvement", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
		Title:       "Statut du document",
		Text:        Narrative{Inner: `<paragraph>Statut du document : <content ID="statut">` + esc(status.DisplayName) + `</content></paragraph>`},
		Entries: []Entry{simple([]string{EntryStatusParent, EntryStatus},
			CD{Code: "GEN-065", DisplayName: "Statut du document", CodeSystem: OIDTAASIP, CodeSystemName: "TA_ASIP"},
			"statut", &Value{XSIType: status.XSIType, Code: status.Code, DisplayName: status.DisplayName, CodeSystem: status.CodeSystem})},
	}
	sReason := Section{
		TemplateIDs: []II{{Root: SectionReason}, {Root: SectionReasonFR}},
		Code:        &CD{Code: "42349-1", DisplayName: "Raison de la recommandation", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
		Title:       "Motif de l'hospitalisation",
		Text:        Narrative{Inner: `<paragraph>` + esc(l.Reason) + `</paragraph>`},
	}
	coded := func(c Code) *Value {
		return &Value{XSIType: "CE", Code: c.Code, DisplayName: c.DisplayName, CodeSystem: c.CodeSystem}
	}
	sOutcomes := Section{
		TemplateIDs: []II{{Root: SectionOutcomesPCC}, {Root: SectionOutcomes}, {Root: SectionOutcomesParent}, {Root: SectionOutcomesFR}},
		ID:          &II{Root: uuidFor(seed, "section-outcomes")},
		Code:        &CD{Code: "42545-4", DisplayName: "Evènements observés", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
		Title:       "Synthèse médicale du séjour",
		Text: Narrative{Inner: `<table border="0"><tbody>` +
			`<tr><td>Modalité d'entrée</td><td><content ID="modaliteE">` + esc(l.AdmissionMode.DisplayName) + `</content></td></tr>` +
			`<tr><td>Modalité de sortie</td><td><content ID="modaliteS">` + esc(l.DischargeMode.DisplayName) + `</content></td></tr>` +
			`<tr><td>Synthèse médicale</td><td><content ID="synthese">` + esc(l.Synthesis) + `</content></td></tr>` +
			`</tbody></table>`},
		Entries: []Entry{
			simple([]string{EntryAdmissionMode}, CD{Code: "ORG-070", DisplayName: "Modalité d'entrée", CodeSystem: OIDTAASIP, CodeSystemName: "TA_ASIP"}, "modaliteE", coded(l.AdmissionMode)),
			simple([]string{EntryDischargeMode}, CD{Code: "ORG-074", DisplayName: "Modalité de sortie", CodeSystem: OIDTAASIP, CodeSystemName: "TA_ASIP"}, "modaliteS", coded(l.DischargeMode)),
			simple([]string{EntrySynthesis}, CD{Code: "MED-142", DisplayName: "Synthèse médicale", CodeSystem: OIDTAASIP, CodeSystemName: "TA_ASIP"}, "synthese", &Value{XSIType: "ST", Text: l.Synthesis}),
		},
	}
	var rows strings.Builder
	var meds []Entry
	for i, m := range l.Medications {
		ref := fmt.Sprintf("med-%d", i+1)
		end := ""
		if !m.End.IsZero() {
			end = m.End.Format("02/01/2006")
		}
		fmt.Fprintf(&rows, `<tr><td>%s</td><td>%s</td><td><content ID="%s">%s</content></td><td>%s</td></tr>`,
			m.Start.Format("02/01/2006"), end, ref, esc(m.Name), esc(m.Dose))
		sa := &SubstanceAdministration{ClassCode: "SBADM", MoodCode: "EVN",
			TemplateIDs: []II{{Root: "1.2.250.1.213.1.1.3.42"}, {Root: "2.16.840.1.113883.10.20.1.24"}, {Root: EntryMedication}, {Root: "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"}},
			ID:          &II{Root: uuidFor(seed, ref)},
			Code:        &CD{Code: "DRUG", DisplayName: "Médicament", CodeSystem: OIDActCode, CodeSystemName: "HL7:ActCode"},
			Text:        &TextRef{}, StatusCode: &CS{Code: "completed"},
		}
		sa.Text.Reference.Value = "#" + ref
		iv := interval(m.Start, m.End)
		iv.XSIType = "IVL_TS"
		iv.Low.Value = m.Start.Format("20060102")
		if iv.High != nil {
			iv.High.Value = m.End.Format("20060102")
		}
		sa.EffectiveTime = []IVLTS{*iv}
		mp := &sa.Consumable.ManufacturedProduct
		mp.TemplateIDs = []II{{Root: "1.2.250.1.213.1.1.3.43"}, {Root: "2.16.840.1.113883.10.20.1.53"}, {Root: "1.3.6.1.4.1.19376.1.5.3.1.4.7.2"}}
		mp.ManufacturedMaterial.Code = m.Code.cd()
		mp.ManufacturedMaterial.Code.OriginalText = &TextRef{}
		mp.ManufacturedMaterial.Code.OriginalText.Reference.Value = "#" + ref
		mp.ManufacturedMaterial.Name = m.Name
		meds = append(meds, Entry{SubstanceAdministration: sa})
	}
	sMeds := Section{
		TemplateIDs: []II{{Root: SectionDischargeMeds}, {Root: SectionDischargeMedsFR}},
		ID:          &II{Root: uuidFor(seed, "section-meds")},
		Code:        &CD{Code: "10183-2", DisplayName: "Traitements à la sortie", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
		Title:       "Traitements à la sortie",
		Text: Narrative{Inner: `<table border="0"><thead><tr><th>Date de début</th><th>Date de fin</th><th>Médicament</th><th>Posologie</th></tr></thead><tbody>` +
			rows.String() + `</tbody></table>`},
		Entries: meds,
	}
	sections := []Section{sStatus, sReason, sOutcomes, sMeds}
	if l.Results != "" {
		sections = append(sections, Section{
			TemplateIDs: []II{{Root: SectionResults}, {Root: "1.2.250.1.213.1.1.2.150"}},
			ID:          &II{Root: uuidFor(seed, "section-results")},
			Code:        &CD{Code: "30954-2", DisplayName: "Résultats d'examens", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
			Title:       "Résultats d'examens",
			Text:        Narrative{Inner: `<paragraph>` + esc(l.Results) + `</paragraph>`},
		})
	}
	if l.CarePlan != "" {
		sections = append(sections, Section{
			TemplateIDs: []II{{Root: "2.16.840.1.113883.10.20.1.10"}, {Root: SectionCarePlan}, {Root: "1.2.250.1.213.1.1.2.158"}},
			ID:          &II{Root: uuidFor(seed, "section-careplan")},
			Code:        &CD{Code: "18776-5", DisplayName: "Plan de soins", CodeSystem: OIDLOINC, CodeSystemName: "LOINC"},
			Title:       "Suites à donner",
			Text:        Narrative{Inner: `<paragraph>` + esc(l.CarePlan) + `</paragraph>`},
		})
	}
	body := &StructuredBody{}
	for _, s := range sections {
		body.Components = append(body.Components, SectionComponent{Section: s})
	}
	return body
}
