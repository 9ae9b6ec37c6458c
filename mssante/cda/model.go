package cda

import (
	"encoding/xml"
	"strings"
)

// The XML types below map the subset of HL7 CDA R2 (POCD_HD000040) that the CI-SIS header and
// the two bodies use, element for element and in schema order, so that encoding/xml writes them
// deterministically and in the order CDA.xsd requires. Unknown elements of a parsed document
// are ignored (tolerant parsing); [ParseOptions.Strict] turns validation findings into errors.

// Namespaces.
const (
	NamespaceHL7 = "urn:hl7-org:v3"
	NamespaceXSI = "http://www.w3.org/2001/XMLSchema-instance"
)

// Document is a CDA R2 ClinicalDocument.
type Document struct {
	XMLName  xml.Name `xml:"urn:hl7-org:v3 ClinicalDocument"`
	XMLNSXSI string   `xml:"xmlns:xsi,attr,omitempty"`
	// AutoPresentable is set by Parse when the document was embedded in an XSLT stylesheet
	// (an "auto-présentable" CDA); Marshal writes the ClinicalDocument alone.
	AutoPresentable     bool                `xml:"-"`
	RealmCode           []CS                `xml:"realmCode"`
	TypeID              *II                 `xml:"typeId"`
	TemplateIDs         []II                `xml:"templateId"`
	ID                  *II                 `xml:"id"`
	Code                *CD                 `xml:"code"`
	Title               string              `xml:"title,omitempty"`
	EffectiveTime       *TS                 `xml:"effectiveTime"`
	ConfidentialityCode *CD                 `xml:"confidentialityCode"`
	LanguageCode        *CS                 `xml:"languageCode"`
	SetID               *II                 `xml:"setId"`
	VersionNumber       *INT                `xml:"versionNumber"`
	RecordTargets       []RecordTarget      `xml:"recordTarget"`
	Authors             []Author            `xml:"author"`
	Custodian           *Custodian          `xml:"custodian"`
	InformationRecips   []InfoRecipient     `xml:"informationRecipient"`
	LegalAuthenticator  *LegalAuthenticator `xml:"legalAuthenticator"`
	DocumentationOf     []DocumentationOf   `xml:"documentationOf"`
	RelatedDocuments    []RelatedDocument   `xml:"relatedDocument"`
	ComponentOf         *ComponentOf        `xml:"componentOf"`
	Component           *BodyComponent      `xml:"component"`
}

// II is an instance identifier (OID root and optional extension).
type II struct {
	Root       string `xml:"root,attr,omitempty"`
	Extension  string `xml:"extension,attr,omitempty"`
	NullFlavor string `xml:"nullFlavor,attr,omitempty"`
}

// CS is a simple code.
type CS struct {
	Code string `xml:"code,attr,omitempty"`
}

// CD is a concept descriptor (also used for CE and CV).
type CD struct {
	XSIType        XSIType `xml:"http://www.w3.org/2001/XMLSchema-instance type,attr,omitempty"`
	Code           string  `xml:"code,attr,omitempty"`
	DisplayName    string  `xml:"displayName,attr,omitempty"`
	CodeSystem     string  `xml:"codeSystem,attr,omitempty"`
	CodeSystemName string  `xml:"codeSystemName,attr,omitempty"`
	NullFlavor     string  `xml:"nullFlavor,attr,omitempty"`
	// OriginalText points at the narrative (medication codes).
	OriginalText *TextRef `xml:"originalText"`
}

// TS is a point in time, HL7 TS format (YYYYMMDDhhmmss+ZZZZ, truncatable).
type TS struct {
	Value      string `xml:"value,attr,omitempty"`
	NullFlavor string `xml:"nullFlavor,attr,omitempty"`
}

// IVLTS is an interval of time.
type IVLTS struct {
	XSIType XSIType `xml:"http://www.w3.org/2001/XMLSchema-instance type,attr,omitempty"`
	Value   string  `xml:"value,attr,omitempty"`
	Low     *TS     `xml:"low"`
	High    *TS     `xml:"high"`
}

// INT is an integer value.
type INT struct {
	Value string `xml:"value,attr"`
}

// XSIType is an xsi:type attribute. It is written with the xsi prefix the root declares.
type XSIType string

// MarshalXMLAttr writes the attribute as xsi:type.
func (t XSIType) MarshalXMLAttr(xml.Name) (xml.Attr, error) {
	if t == "" {
		return xml.Attr{}, nil
	}
	return xml.Attr{Name: xml.Name{Local: "xsi:type"}, Value: string(t)}, nil
}

// AD is a postal address.
type AD struct {
	Use         string `xml:"use,attr,omitempty"`
	NullFlavor  string `xml:"nullFlavor,attr,omitempty"`
	HouseNumber string `xml:"houseNumber,omitempty"`
	StreetName  string `xml:"streetName,omitempty"`
	StreetLine  string `xml:"streetAddressLine,omitempty"`
	PostalCode  string `xml:"postalCode,omitempty"`
	City        string `xml:"city,omitempty"`
	County      string `xml:"county,omitempty"`
	Country     string `xml:"country,omitempty"`
}

// TEL is a telecom address (tel:, mailto:, fax:).
type TEL struct {
	Value      string `xml:"value,attr,omitempty"`
	Use        string `xml:"use,attr,omitempty"`
	NullFlavor string `xml:"nullFlavor,attr,omitempty"`
}

// PN is a person name. Parts keep their order and qualifiers.
type PN struct {
	Parts []NamePart `xml:",any"`
}

// UnmarshalXML reads the parts, dropping their namespace so that they are written back
// unqualified under the root's default namespace.
func (n *PN) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var tmp struct {
		Parts []NamePart `xml:",any"`
	}
	if err := d.DecodeElement(&tmp, &start); err != nil {
		return err
	}
	for i := range tmp.Parts {
		tmp.Parts[i].XMLName.Space = ""
	}
	n.Parts = tmp.Parts
	return nil
}

// NamePart is one part of a name: prefix, given, family or suffix.
type NamePart struct {
	XMLName   xml.Name
	Qualifier string `xml:"qualifier,attr,omitempty"`
	Value     string `xml:",chardata"`
}

// Part returns the first part with that element name and qualifier ("" = no qualifier).
func (n *PN) Part(kind, qualifier string) string {
	if n == nil {
		return ""
	}
	for _, p := range n.Parts {
		if p.XMLName.Local == kind && p.Qualifier == qualifier {
			return strings.TrimSpace(p.Value)
		}
	}
	return ""
}

func namePart(kind, qualifier, value string) NamePart {
	return NamePart{XMLName: xml.Name{Local: kind}, Qualifier: qualifier, Value: value}
}

// RecordTarget holds the patient.
type RecordTarget struct {
	PatientRole PatientRole `xml:"patientRole"`
}

// PatientRole holds the patient's identifiers (INS, IPP), address and person.
type PatientRole struct {
	IDs     []II        `xml:"id"`
	Addr    []AD        `xml:"addr"`
	Telecom []TEL       `xml:"telecom"`
	Patient *PatientPsn `xml:"patient"`
}

// PatientPsn is the patient person with the INS traits.
type PatientPsn struct {
	ClassCode            string      `xml:"classCode,attr,omitempty"`
	Names                []PN        `xml:"name"`
	AdministrativeGender *CD         `xml:"administrativeGenderCode"`
	BirthTime            *TS         `xml:"birthTime"`
	Birthplace           *Birthplace `xml:"birthplace"`
}

// Birthplace holds the birth place address (county = COG code).
type Birthplace struct {
	Place struct {
		Addr *AD `xml:"addr"`
	} `xml:"place"`
}

// Person is a person with names.
type Person struct {
	Names []PN `xml:"name"`
}

// Organization is an organization (also used for representedCustodianOrganization,
// receivedOrganization and scopingOrganization).
type Organization struct {
	IDs                       []II   `xml:"id"`
	Name                      string `xml:"name,omitempty"`
	Telecom                   []TEL  `xml:"telecom"`
	Addr                      []AD   `xml:"addr"`
	StandardIndustryClassCode *CD    `xml:"standardIndustryClassCode"`
}

// Author is a document author.
type Author struct {
	Time           TS             `xml:"time"`
	AssignedAuthor AssignedAuthor `xml:"assignedAuthor"`
}

// AssignedAuthor is the author's role: national id, profession, person, organization.
type AssignedAuthor struct {
	ClassCode               string        `xml:"classCode,attr,omitempty"`
	IDs                     []II          `xml:"id"`
	Code                    *CD           `xml:"code"`
	Addr                    []AD          `xml:"addr"`
	Telecom                 []TEL         `xml:"telecom"`
	AssignedPerson          *Person       `xml:"assignedPerson"`
	RepresentedOrganization *Organization `xml:"representedOrganization"`
}

// Custodian is the organization keeping the document.
type Custodian struct {
	AssignedCustodian struct {
		Organization Organization `xml:"representedCustodianOrganization"`
	} `xml:"assignedCustodian"`
}

// InfoRecipient is an intended recipient of the document.
type InfoRecipient struct {
	IntendedRecipient struct {
		IDs                  []II          `xml:"id"`
		Addr                 []AD          `xml:"addr"`
		Telecom              []TEL         `xml:"telecom"`
		InformationRecipient *Person       `xml:"informationRecipient"`
		ReceivedOrganization *Organization `xml:"receivedOrganization"`
	} `xml:"intendedRecipient"`
}

// LegalAuthenticator is the professional responsible for the document.
type LegalAuthenticator struct {
	Time           TS             `xml:"time"`
	SignatureCode  CS             `xml:"signatureCode"`
	AssignedEntity AssignedEntity `xml:"assignedEntity"`
}

// AssignedEntity is a professional in a role (legal authenticator, performer).
type AssignedEntity struct {
	IDs                     []II          `xml:"id"`
	Code                    *CD           `xml:"code"`
	Addr                    []AD          `xml:"addr"`
	Telecom                 []TEL         `xml:"telecom"`
	AssignedPerson          *Person       `xml:"assignedPerson"`
	RepresentedOrganization *Organization `xml:"representedOrganization"`
}

// DocumentationOf holds the documented act.
type DocumentationOf struct {
	ServiceEvent ServiceEvent `xml:"serviceEvent"`
}

// ServiceEvent is the documented act, with its period and performer.
type ServiceEvent struct {
	ClassCode     string      `xml:"classCode,attr,omitempty"`
	MoodCode      string      `xml:"moodCode,attr,omitempty"`
	IDs           []II        `xml:"id"`
	Code          *CD         `xml:"code"`
	EffectiveTime *IVLTS      `xml:"effectiveTime"`
	Performers    []Performer `xml:"performer"`
}

// Performer performs the documented act.
type Performer struct {
	TypeCode       string         `xml:"typeCode,attr,omitempty"`
	AssignedEntity AssignedEntity `xml:"assignedEntity"`
}

// RelatedDocument links to the document this one replaces (typeCode RPLC).
type RelatedDocument struct {
	TypeCode       string `xml:"typeCode,attr"`
	ParentDocument struct {
		IDs []II `xml:"id"`
	} `xml:"parentDocument"`
}

// ComponentOf holds the encounter.
type ComponentOf struct {
	EncompassingEncounter Encounter `xml:"encompassingEncounter"`
}

// Encounter is the stay or visit the document belongs to.
type Encounter struct {
	IDs           []II      `xml:"id"`
	Code          *CD       `xml:"code"`
	EffectiveTime IVLTS     `xml:"effectiveTime"`
	Location      *Location `xml:"location"`
}

// Location is where the encounter took place: the health-care facility and its type.
type Location struct {
	HealthCareFacility Facility `xml:"healthCareFacility"`
}

// Facility is the health-care facility (code: TRE_R02 SecteurActivite).
type Facility struct {
	IDs  []II `xml:"id"`
	Code *CD  `xml:"code"`
}

// BodyComponent holds exactly one of the two bodies.
type BodyComponent struct {
	NonXMLBody     *NonXMLBody     `xml:"nonXMLBody"`
	StructuredBody *StructuredBody `xml:"structuredBody"`
}

// NonXMLBody is the N1 body: an encapsulated document, base64.
type NonXMLBody struct {
	Text B64Text `xml:"text"`
}

// B64Text is the encapsulated document. Data holds the base64 text exactly as written inside
// the element (base64 needs no XML escaping, so it is written and read without copying through
// the XML escaper: a 10 MB PDF stays cheap).
type B64Text struct {
	MediaType      string `xml:"mediaType,attr,omitempty"`
	Representation string `xml:"representation,attr,omitempty"`
	Data           string `xml:",innerxml"`
	// plain is set by Parse when Data was taken as it stands (no markup, no entity).
	plain bool
}

// StructuredBody is the N3 body.
type StructuredBody struct {
	Components []SectionComponent `xml:"component"`
}

// SectionComponent wraps a section.
type SectionComponent struct {
	Section Section `xml:"section"`
}

// Section is a structured body section: templates, code, title, narrative and entries.
type Section struct {
	TemplateIDs []II      `xml:"templateId"`
	ID          *II       `xml:"id"`
	Code        *CD       `xml:"code"`
	Title       string    `xml:"title,omitempty"`
	Text        Narrative `xml:"text"`
	Entries     []Entry   `xml:"entry"`
}

// HasTemplate reports whether the section declares the templateId root.
func (s *Section) HasTemplate(root string) bool { return hasTemplate(s.TemplateIDs, root) }

func hasTemplate(ids []II, root string) bool {
	for _, t := range ids {
		if t.Root == root {
			return true
		}
	}
	return false
}

// Narrative is a section's narrative block, kept as XML.
type Narrative struct {
	Inner string `xml:",innerxml"`
}

// Entry holds one coded entry.
type Entry struct {
	Observation             *Observation             `xml:"observation"`
	SubstanceAdministration *SubstanceAdministration `xml:"substanceAdministration"`
}

// Observation is a (simple) observation entry.
type Observation struct {
	ClassCode     string   `xml:"classCode,attr"`
	MoodCode      string   `xml:"moodCode,attr"`
	TemplateIDs   []II     `xml:"templateId"`
	ID            *II      `xml:"id"`
	Code          *CD      `xml:"code"`
	Text          *TextRef `xml:"text"`
	StatusCode    *CS      `xml:"statusCode"`
	EffectiveTime *IVLTS   `xml:"effectiveTime"`
	Value         *Value   `xml:"value"`
}

// TextRef points at the narrative.
type TextRef struct {
	Reference struct {
		Value string `xml:"value,attr"`
	} `xml:"reference"`
}

// Value is an observation value: coded (xsi:type CD/CE) or a string (ST).
type Value struct {
	XSIType     XSIType `xml:"http://www.w3.org/2001/XMLSchema-instance type,attr,omitempty"`
	Code        string  `xml:"code,attr,omitempty"`
	DisplayName string  `xml:"displayName,attr,omitempty"`
	CodeSystem  string  `xml:"codeSystem,attr,omitempty"`
	Text        string  `xml:",chardata"`
}

// SubstanceAdministration is a medication entry.
type SubstanceAdministration struct {
	ClassCode     string   `xml:"classCode,attr"`
	MoodCode      string   `xml:"moodCode,attr"`
	TemplateIDs   []II     `xml:"templateId"`
	ID            *II      `xml:"id"`
	Code          *CD      `xml:"code"`
	Text          *TextRef `xml:"text"`
	StatusCode    *CS      `xml:"statusCode"`
	EffectiveTime []IVLTS  `xml:"effectiveTime"`
	DoseQuantity  *struct {
		Value string `xml:"value,attr,omitempty"`
		Unit  string `xml:"unit,attr,omitempty"`
	} `xml:"doseQuantity"`
	Consumable struct {
		ManufacturedProduct struct {
			TemplateIDs          []II `xml:"templateId"`
			ManufacturedMaterial struct {
				Code *CD    `xml:"code"`
				Name string `xml:"name,omitempty"`
			} `xml:"manufacturedMaterial"`
		} `xml:"manufacturedProduct"`
	} `xml:"consumable"`
}
