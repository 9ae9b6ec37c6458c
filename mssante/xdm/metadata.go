package xdm

import (
	"crypto/sha1"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// Code is a coded metadata value: code, coding scheme (OID) and display name.
type Code struct {
	Code, Scheme, Display string
}

// Author is an XDS author: HL7 v2 XCN, XON and specialty strings as written in the slots.
type Author struct {
	Person      string   // XCN
	Institution []string // XON
	Specialty   []string // code^display^system
	Role        []string
}

// DocumentEntry is the XDS metadata of one document (an ebRIM ExtrinsicObject). The writer
// derives it from the CDA header with [documentEntryMapping]; the reader parses it back from
// METADATA.XML into the same type.
type DocumentEntry struct {
	EntryUUID          string // urn:uuid:…
	UniqueID           string // CDA id: root, or root^extension
	URI                string // file name inside the subset (DOC0001.XML)
	Hash               string // SHA-1, lower-case hex
	Size               int64
	MimeType           string
	Title              string
	PatientID          mssante.INS
	SourcePatientID    string   // CX of the IPP (or of the INS without IPP)
	SourcePatientInfo  []string // PID-5, PID-7, PID-8, PID-11
	CreationTime       string   // UTC YYYYMMDDhhmmss
	ServiceStartTime   string
	ServiceStopTime    string
	LanguageCode       string
	LegalAuthenticator string // XCN
	Authors            []Author
	ClassCode          Code
	TypeCode           Code
	FormatCode         Code
	FacilityType       Code
	PracticeSetting    Code
	Confidentiality    []Code
	EventCodes         []Code
	// Replaces is the entryUUID of the entry this one replaces (RPLC association), if any.
	Replaces string
}

// SubmissionSet is the XDS submission set (an ebRIM RegistryPackage).
type SubmissionSet struct {
	EntryUUID      string
	UniqueID       string // OID
	SourceID       string // OID of the sender
	SubmissionTime string // UTC YYYYMMDDhhmmss
	Title          string
	PatientID      mssante.INS
	ContentType    Code
	Author         Author
}

// dtm converts a CDA TS to an XDS DTM: UTC, YYYYMMDDhhmmss truncated to the CDA precision.
// (ITI TF-3 §4 requires UTC; Mediboard's getTimeUtc does the same.)
func dtm(ts string) string {
	if ts == "" {
		return ""
	}
	t, err := cda.ParseTS(ts)
	if err != nil {
		return ""
	}
	digits := ts
	if i := strings.IndexAny(ts, "+-."); i >= 0 {
		digits = ts[:i]
	}
	return t.UTC().Format("20060102150405")[:len(digits)]
}

// XCN formats a professional as HL7 v2 XCN (CI-SIS CDA-XDS): id^family^given^^^^^^&OID&ISO^D^^^IDNPS.
func XCN(id, family, given string) string {
	c := make([]string, 13)
	c[0], c[1], c[2] = id, family, given
	c[8] = "&" + mssante.OIDIdNatPS + "&ISO"
	c[9], c[12] = "D", "IDNPS"
	return strings.Join(c, "^")
}

// XON formats an organization as HL7 v2 XON (CI-SIS CDA-XDS): name^^^^^&OID&ISO^IDNST^^^idNat.
func XON(name, idNat string) string {
	c := make([]string, 10)
	c[0] = name
	if idNat != "" {
		c[5] = "&" + mssante.OIDIdNatStruct + "&ISO"
		c[6], c[9] = "IDNST", idNat
	}
	return strings.Join(c, "^")
}

// CX formats a patient identifier as HL7 v2 CX: id^^^&OID&ISO^type (NH for the INS, PI for an IPP).
func CX(id, oid, typ string) string { return id + "^^^&" + oid + "&ISO^" + typ }

// ParseCX parses a CX written by [CX].
func ParseCX(s string) (id, oid, typ string, ok bool) {
	c := strings.Split(s, "^")
	if len(c) < 5 || c[0] == "" {
		return "", "", "", false
	}
	a := strings.Split(c[3], "&")
	if len(a) != 3 || a[2] != "ISO" {
		return "", "", "", false
	}
	return c[0], a[1], c[4], true
}

// uuidURN derives a stable urn:uuid (version 5 layout) from name.
func uuidURN(name string) string {
	h := sha1.Sum([]byte("mssante-go/xdm\x00" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// uuidOID turns a urn:uuid into its OID form 2.25.<decimal> (ITU-T X.667).
func uuidOID(urn string) string {
	hex := strings.ReplaceAll(strings.TrimPrefix(urn, "urn:uuid:"), "-", "")
	n, _ := new(big.Int).SetString(hex, 16)
	return "2.25." + n.String()
}

// uniqueID is the XDS uniqueId of a CDA id: root, or root^extension (ITI TF-3 §4.2.3.2.26;
// Mediboard getUniqueId). The ANS XDM examples have no extension, so they do not show how
// the ANS joins one.
func uniqueID(id *cda.II) string {
	if id == nil {
		return ""
	}
	if id.Extension != "" {
		return id.Root + "^" + id.Extension
	}
	return id.Root
}

// EntryUUIDFor is the entryUUID the writer gives a document with this uniqueId. An RPLC
// association points at the entryUUID the replaced version got from the same rule.
func EntryUUIDFor(uniqueID string) string { return uuidURN("entry\x00" + uniqueID) }

// classCodes is ASS_X04-CorrespondanceType-Classe for the document types the builders make
// (each row as the ANS reference packages of ansforge/interop-exemples-xdm write it: 11490-0
// and 11502-2 → 10 "Compte rendu", 34133-9 → 11 "Synthèse").
// Other types are refused: the package embeds these rows of ASS_X04, not the whole table.
var classCodes = map[string]Code{
	"11490-0": {"10", "1.2.250.1.213.1.1.4.1", "Compte rendu"},
	"11502-2": {"10", "1.2.250.1.213.1.1.4.1", "Compte rendu"},
	"34133-9": {"11", "1.2.250.1.213.1.1.4.1", "Synthèse"},
}

// formatCodes is ASS_A11-CorresModeleCDA-XdsFormatCode for the models the builders make
// (JDV_J10). The PDF and text codes are in the IHE format code system, as the ANS stylesheet
// CDAHeaderToXDM.xsl of TestContenuCDA writes them; the ANS XDM examples' N1 packages give
// them 1.2.250.1.213.1.1.4.12, a defect the reader reports.
var (
	formatLDLSES = Code{"urn:asip:ci-sis:ldl-ses:2017", "1.2.250.1.213.1.1.4.2.282", "Lettre de liaison à la sortie d'un établissement de santé"}
	formatPDF    = Code{"urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en Pdf/A-1"}
	formatText   = Code{"urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en texte brut"}
)

func code(c *cda.CD) Code {
	if c == nil {
		return Code{}
	}
	return Code{Code: c.Code, Scheme: c.CodeSystem, Display: c.DisplayName}
}

// mapping is one row of the CDA header → XDS DocumentEntry table.
type mapping struct {
	Attribute string // XDS DocumentEntry attribute (ITI TF-3 §4.2.3.2)
	Spec      string // where the rule comes from, cited as in docs/references.md
	set       func(e *DocumentEntry, d *cda.Document) error
}

// documentEntryMapping is the CDA header → DocumentEntry table of the CI-SIS CDA-XDS annex
// ("Lien entre l'en-tête CDA et les métadonnées XDS", as LPS code and the ANS logical models
// implement it), one row per slot or classification.
var documentEntryMapping = []mapping{
	{"uniqueId", "CI-SIS CDA-XDS: ClinicalDocument/id (root[^extension], as ITI TF-3 §4.2.3.2 writes uniqueId)", func(e *DocumentEntry, d *cda.Document) error {
		if e.UniqueID = uniqueID(d.ID); e.UniqueID == "" {
			return fmt.Errorf("document has no id")
		}
		return nil
	}},
	{"title", "CI-SIS CDA-XDS: ClinicalDocument/title", func(e *DocumentEntry, d *cda.Document) error { e.Title = d.Title; return nil }},
	{"typeCode", "CI-SIS CDA-XDS: ClinicalDocument/code (JDV_J07, LOINC)", func(e *DocumentEntry, d *cda.Document) error {
		if d.Code == nil || d.Code.Code == "" {
			return fmt.Errorf("document has no code")
		}
		e.TypeCode = code(d.Code)
		return nil
	}},
	{"classCode", "CI-SIS CDA-XDS: ASS_X04 from ClinicalDocument/code (JDV_J06, TRE_A03 1.2.250.1.213.1.1.4.1)", func(e *DocumentEntry, d *cda.Document) error {
		c, ok := classCodes[e.TypeCode.Code]
		if !ok {
			return fmt.Errorf("no classCode known for document type %q (ASS_X04 rows known: 11490-0, 11502-2, 34133-9)", e.TypeCode.Code)
		}
		e.ClassCode = c
		return nil
	}},
	{"formatCode", "CI-SIS CDA-XDS: ASS_A11 from the model templateId (JDV_J10); N1 (XDS-SD) by mediaType", func(e *DocumentEntry, d *cda.Document) error {
		switch {
		case d.IsLDLSES():
			e.FormatCode = formatLDLSES
		case d.IsN1() && d.Component != nil && d.Component.NonXMLBody != nil && d.Component.NonXMLBody.Text.MediaType == cda.MediaTypeText:
			e.FormatCode = formatText
		case d.IsN1():
			e.FormatCode = formatPDF
		default:
			return fmt.Errorf("no formatCode known for this document model")
		}
		return nil
	}},
	{"confidentialityCode", "CI-SIS CDA-XDS: ClinicalDocument/confidentialityCode (2.16.840.1.113883.5.25); masking codes added by Options", func(e *DocumentEntry, d *cda.Document) error {
		if d.ConfidentialityCode == nil {
			return fmt.Errorf("document has no confidentialityCode")
		}
		e.Confidentiality = []Code{code(d.ConfidentialityCode)}
		return nil
	}},
	{"healthcareFacilityTypeCode", "CI-SIS CDA-XDS: componentOf/encompassingEncounter/location/healthCareFacility/code (JDV_J02)", func(e *DocumentEntry, d *cda.Document) error {
		if d.ComponentOf == nil || d.ComponentOf.EncompassingEncounter.Location == nil || d.ComponentOf.EncompassingEncounter.Location.HealthCareFacility.Code == nil {
			return fmt.Errorf("document has no healthCareFacility code")
		}
		e.FacilityType = code(d.ComponentOf.EncompassingEncounter.Location.HealthCareFacility.Code)
		return nil
	}},
	{"practiceSettingCode", "CI-SIS CDA-XDS: documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode (JDV_J04)", func(e *DocumentEntry, d *cda.Document) error {
		for _, doc := range d.DocumentationOf {
			for _, p := range doc.ServiceEvent.Performers {
				if o := p.AssignedEntity.RepresentedOrganization; o != nil && o.StandardIndustryClassCode != nil {
					e.PracticeSetting = code(o.StandardIndustryClassCode)
					return nil
				}
			}
		}
		return fmt.Errorf("document has no performer standardIndustryClassCode")
	}},
	{"eventCodeList", "CI-SIS CDA-XDS: documentationOf/serviceEvent/code (0..n)", func(e *DocumentEntry, d *cda.Document) error {
		for _, doc := range d.DocumentationOf {
			if c := doc.ServiceEvent.Code; c != nil && c.Code != "" {
				e.EventCodes = append(e.EventCodes, code(c))
			}
		}
		return nil
	}},
	{"creationTime", "CI-SIS CDA-XDS: ClinicalDocument/effectiveTime; ITI TF-3 §4.2.3.2: in UTC", func(e *DocumentEntry, d *cda.Document) error {
		if d.EffectiveTime == nil {
			return fmt.Errorf("document has no effectiveTime")
		}
		if e.CreationTime = dtm(d.EffectiveTime.Value); e.CreationTime == "" {
			return fmt.Errorf("document effectiveTime is not an HL7 TS")
		}
		return nil
	}},
	{"serviceStartTime/serviceStopTime", "CI-SIS CDA-XDS: documentationOf/serviceEvent/effectiveTime/low|high; ITI TF-3 §4.2.3.2: in UTC", func(e *DocumentEntry, d *cda.Document) error {
		if len(d.DocumentationOf) > 0 {
			if iv := d.DocumentationOf[0].ServiceEvent.EffectiveTime; iv != nil {
				if iv.Low != nil {
					e.ServiceStartTime = dtm(iv.Low.Value)
				}
				if iv.High != nil {
					e.ServiceStopTime = dtm(iv.High.Value)
				}
			}
		}
		return nil
	}},
	{"languageCode", "CI-SIS CDA-XDS: ClinicalDocument/languageCode", func(e *DocumentEntry, d *cda.Document) error {
		if d.LanguageCode != nil {
			e.LanguageCode = d.LanguageCode.Code
		}
		return nil
	}},
	{"legalAuthenticator", "CI-SIS CDA-XDS: legalAuthenticator/assignedEntity, as an HL7 v2 XCN", func(e *DocumentEntry, d *cda.Document) error {
		if la := d.LegalAuthenticator; la != nil && len(la.AssignedEntity.IDs) > 0 {
			f, g := la.AssignedEntity.Name()
			e.LegalAuthenticator = XCN(la.AssignedEntity.IDs[0].Extension, f, g)
		}
		return nil
	}},
	{"author", "CI-SIS CDA-XDS: author/assignedAuthor → authorPerson (HL7 v2 XCN), authorInstitution (XON), authorSpecialty", func(e *DocumentEntry, d *cda.Document) error {
		for _, a := range d.Authors {
			e.Authors = append(e.Authors, author(&a.AssignedAuthor))
		}
		if len(e.Authors) == 0 {
			return fmt.Errorf("document has no author")
		}
		return nil
	}},
	{"patientId", "CI-SIS CDA-XDS: the INS as an HL7 v2 CX INS^^^&OID&ISO^NH (Portabilité LGC, xdm-patient-id.fsh)", func(e *DocumentEntry, d *cda.Document) error {
		ins, ok := d.INS()
		if !ok {
			return fmt.Errorf("document has no patient INS")
		}
		e.PatientID = ins
		return nil
	}},
	{"sourcePatientId", "CI-SIS CDA-XDS: the IPP as an HL7 v2 CX ^PI, or the INS without IPP", func(e *DocumentEntry, d *cda.Document) error {
		if ipp, ok := d.LocalPatientID(); ok {
			e.SourcePatientID = CX(ipp.Extension, ipp.Root, "PI")
		} else {
			e.SourcePatientID = CX(e.PatientID.Value, e.PatientID.OID, "NH")
		}
		return nil
	}},
	{"sourcePatientInfo", "ITI TF-3 §4.2.3.2, as the ANS XDM examples fill it: PID-5 (birth L, used D), PID-7, PID-8, PID-11 (BDL + COG)", func(e *DocumentEntry, d *cda.Document) error {
		p := d.Patient()
		if p.BirthName != "" {
			e.SourcePatientInfo = append(e.SourcePatientInfo, "PID-5|"+p.BirthName+"^"+p.FirstGivenName+"^"+strings.Join(p.GivenNames, " ")+"^^^^L")
		}
		if p.UsedName != "" {
			e.SourcePatientInfo = append(e.SourcePatientInfo, "PID-5|"+p.UsedName+"^"+p.UsedGivenName+"^^^^^D")
		}
		if !p.BirthDate.IsZero() {
			e.SourcePatientInfo = append(e.SourcePatientInfo, "PID-7|"+p.BirthDate.Format("20060102"))
		}
		if p.Sex != "" {
			e.SourcePatientInfo = append(e.SourcePatientInfo, "PID-8|"+string(p.Sex))
		}
		if p.BirthPlace != "" {
			e.SourcePatientInfo = append(e.SourcePatientInfo, "PID-11|^^^^^^BDL^^"+p.BirthPlace)
		}
		return nil
	}},
	{"replaces (RPLC)", "ITI TF-3 §4.2.2: relatedDocument[@typeCode='RPLC']/parentDocument/id → RPLC association to that entry", func(e *DocumentEntry, d *cda.Document) error {
		for _, r := range d.RelatedDocuments {
			if r.TypeCode == "RPLC" && len(r.ParentDocument.IDs) > 0 {
				e.Replaces = EntryUUIDFor(uniqueID(&r.ParentDocument.IDs[0]))
			}
		}
		return nil
	}},
	{"mimeType", "ITI TF-3 §4.2.3.2, CI-SIS CDA-XDS: text/xml for a CDA", func(e *DocumentEntry, d *cda.Document) error { e.MimeType = "text/xml"; return nil }},
}

func author(a *cda.AssignedAuthor) Author {
	var au Author
	if len(a.IDs) > 0 {
		f, g := a.Name()
		au.Person = XCN(a.IDs[0].Extension, f, g)
	}
	if o := a.RepresentedOrganization; o != nil {
		id := ""
		for _, i := range o.IDs {
			if i.Root == mssante.OIDIdNatStruct {
				id = i.Extension
			}
		}
		au.Institution = []string{XON(o.Name, id)}
	}
	if a.Code != nil && a.Code.Code != "" {
		au.Specialty = []string{a.Code.Code + "^" + a.Code.DisplayName + "^" + a.Code.CodeSystem}
	}
	return au
}

// EntryFromCDA derives the DocumentEntry of a CDA header by running every row of the mapping
// table. The integrity slots (hash, size, URI) are left to the writer.
func EntryFromCDA(d *cda.Document) (*DocumentEntry, error) {
	e := &DocumentEntry{}
	for _, m := range documentEntryMapping {
		if err := m.set(e, d); err != nil {
			return nil, fmt.Errorf("xdm: %s: %w", m.Attribute, err)
		}
	}
	e.EntryUUID = EntryUUIDFor(e.UniqueID)
	return e, nil
}

// toRIM writes the submission set and its entries as ebRIM.
func toRIM(ss *SubmissionSet, entries []*DocumentEntry) *submitObjectsRequest {
	req := &submitObjectsRequest{}
	n := 0
	id := func(owner, what string) string { n++; return uuidURN(owner + "\x00" + what + "\x00" + strconv.Itoa(n)) }
	coded := func(owner, scheme string, c Code) classification {
		nr := c.Code
		return classification{ID: id(owner, scheme), ClassificationScheme: scheme, ClassifiedObject: owner,
			NodeRepresentation: &nr, Slots: []slot{{Name: "codingScheme", Values: []string{c.Scheme}}}, Name: newLocalized(c.Display)}
	}
	authorCl := func(owner, scheme string, a Author) classification {
		empty := ""
		c := classification{ID: id(owner, scheme), ClassificationScheme: scheme, ClassifiedObject: owner, NodeRepresentation: &empty}
		if a.Person != "" {
			c.Slots = append(c.Slots, slot{"authorPerson", []string{a.Person}})
		}
		if len(a.Institution) > 0 {
			c.Slots = append(c.Slots, slot{"authorInstitution", a.Institution})
		}
		if len(a.Role) > 0 {
			c.Slots = append(c.Slots, slot{"authorRole", a.Role})
		}
		if len(a.Specialty) > 0 {
			c.Slots = append(c.Slots, slot{"authorSpecialty", a.Specialty})
		}
		return c
	}
	ext := func(owner, scheme, value, name string) externalIdentifier {
		return externalIdentifier{ID: id(owner, scheme), IdentificationScheme: scheme, RegistryObject: owner, Value: value, Name: newLocalized(name)}
	}
	for _, e := range entries {
		eo := registryObject{ID: e.EntryUUID, MimeType: e.MimeType, ObjectType: objectTypeStable, Status: statusApproved}
		add := func(name string, v ...string) {
			if len(v) > 0 && v[0] != "" {
				eo.Slots = append(eo.Slots, slot{name, v})
			}
		}
		add("creationTime", e.CreationTime)
		add("hash", e.Hash)
		add("languageCode", e.LanguageCode)
		add("legalAuthenticator", e.LegalAuthenticator)
		add("serviceStartTime", e.ServiceStartTime)
		add("serviceStopTime", e.ServiceStopTime)
		add("size", strconv.FormatInt(e.Size, 10))
		add("sourcePatientId", e.SourcePatientID)
		add("sourcePatientInfo", e.SourcePatientInfo...)
		add("URI", e.URI)
		eo.Name = newLocalized(e.Title)
		for _, a := range e.Authors {
			eo.Classifications = append(eo.Classifications, authorCl(e.EntryUUID, schemeDEAuthor, a))
		}
		eo.Classifications = append(eo.Classifications, coded(e.EntryUUID, schemeDEClass, e.ClassCode))
		for _, c := range e.Confidentiality {
			eo.Classifications = append(eo.Classifications, coded(e.EntryUUID, schemeDEConfidentiality, c))
		}
		for _, c := range e.EventCodes {
			eo.Classifications = append(eo.Classifications, coded(e.EntryUUID, schemeDEEvent, c))
		}
		eo.Classifications = append(eo.Classifications,
			coded(e.EntryUUID, schemeDEFormat, e.FormatCode),
			coded(e.EntryUUID, schemeDEFacility, e.FacilityType),
			coded(e.EntryUUID, schemeDEPractice, e.PracticeSetting),
			coded(e.EntryUUID, schemeDEType, e.TypeCode))
		eo.ExternalIdentifiers = []externalIdentifier{
			ext(e.EntryUUID, schemeDEPatientID, CX(e.PatientID.Value, e.PatientID.OID, "NH"), "XDSDocumentEntry.patientId"),
			ext(e.EntryUUID, schemeDEUniqueID, e.UniqueID, "XDSDocumentEntry.uniqueId"),
		}
		req.List.ExtrinsicObjects = append(req.List.ExtrinsicObjects, eo)
	}
	rp := registryObject{ID: ss.EntryUUID, Status: statusApproved,
		Slots: []slot{{"submissionTime", []string{ss.SubmissionTime}}}}
	if ss.Title != "" {
		rp.Name = newLocalized(ss.Title)
	}
	rp.Classifications = []classification{authorCl(ss.EntryUUID, schemeSSAuthor, ss.Author), coded(ss.EntryUUID, schemeSSContentType, ss.ContentType)}
	rp.ExternalIdentifiers = []externalIdentifier{
		ext(ss.EntryUUID, schemeSSUniqueID, ss.UniqueID, "XDSSubmissionSet.uniqueId"),
		ext(ss.EntryUUID, schemeSSSourceID, ss.SourceID, "XDSSubmissionSet.sourceId"),
		ext(ss.EntryUUID, schemeSSPatientID, CX(ss.PatientID.Value, ss.PatientID.OID, "NH"), "XDSSubmissionSet.patientId"),
	}
	req.List.RegistryPackages = []registryObject{rp}
	req.List.Classifications = []classification{{ID: id(ss.EntryUUID, "node"), ClassificationNode: schemeSubmissionSetNode, ClassifiedObject: ss.EntryUUID}}
	for _, e := range entries {
		req.List.Associations = append(req.List.Associations, association{ID: id(e.EntryUUID, "member"),
			AssociationType: assocHasMember, SourceObject: ss.EntryUUID, TargetObject: e.EntryUUID,
			Slots: []slot{{"SubmissionSetStatus", []string{"Original"}}}})
		if e.Replaces != "" {
			req.List.Associations = append(req.List.Associations, association{ID: id(e.EntryUUID, "rplc"),
				AssociationType: assocRPLC, SourceObject: e.EntryUUID, TargetObject: e.Replaces})
		}
	}
	return req
}

// dtmNow formats t as an XDS DTM (UTC, seconds).
func dtmNow(t time.Time) string { return t.UTC().Format("20060102150405") }
