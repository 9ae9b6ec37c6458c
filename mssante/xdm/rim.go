package xdm

import "encoding/xml"

// ebRIM 3.0 / ebRS lcm 3.0 elements of an XDM METADATA.XML (IHE ITI TF-3 §4.2). The same
// types are written and read: elements are written under the rim default namespace that
// RegistryObjectList declares, and read in any namespace (ANS files use prefixes).

const (
	statusApproved   = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
	assocHasMember   = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
	assocRPLC        = "urn:ihe:iti:2007:AssociationType:RPLC"
	objectTypeStable = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
)

// Scheme UUIDs of IHE ITI TF-3 §4 (XDS metadata).
const (
	schemeSubmissionSetNode = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
	schemeDEAuthor          = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
	schemeDEClass           = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
	schemeDEConfidentiality = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
	schemeDEEvent           = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
	schemeDEFormat          = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
	schemeDEFacility        = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
	schemeDEPractice        = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
	schemeDEType            = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
	schemeDEPatientID       = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
	schemeDEUniqueID        = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
	schemeSSAuthor          = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
	schemeSSContentType     = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
	schemeSSUniqueID        = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
	schemeSSSourceID        = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
	schemeSSPatientID       = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
)

type submitObjectsRequest struct {
	XMLName xml.Name           `xml:"urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0 SubmitObjectsRequest"`
	List    registryObjectList `xml:"RegistryObjectList"`
}

type registryObjectList struct {
	XMLName          xml.Name         `xml:"urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0 RegistryObjectList"`
	ExtrinsicObjects []registryObject `xml:"ExtrinsicObject"`
	RegistryPackages []registryObject `xml:"RegistryPackage"`
	Classifications  []classification `xml:"Classification"`
	Associations     []association    `xml:"Association"`
}

// registryObject is an ExtrinsicObject (document entry) or a RegistryPackage (submission set).
type registryObject struct {
	ID                  string               `xml:"id,attr"`
	MimeType            string               `xml:"mimeType,attr,omitempty"`
	ObjectType          string               `xml:"objectType,attr,omitempty"`
	Status              string               `xml:"status,attr,omitempty"`
	Slots               []slot               `xml:"Slot"`
	Name                *localized           `xml:"Name"`
	Description         *localized           `xml:"Description"`
	Classifications     []classification     `xml:"Classification"`
	ExternalIdentifiers []externalIdentifier `xml:"ExternalIdentifier"`
}

type slot struct {
	Name   string   `xml:"name,attr"`
	Values []string `xml:"ValueList>Value"`
}

type localized struct {
	Strings []struct {
		Lang    string `xml:"http://www.w3.org/XML/1998/namespace lang,attr,omitempty"`
		Charset string `xml:"charset,attr,omitempty"`
		Value   string `xml:"value,attr"`
	} `xml:"LocalizedString"`
}

func newLocalized(v string) *localized {
	l := &localized{}
	l.Strings = append(l.Strings, struct {
		Lang    string `xml:"http://www.w3.org/XML/1998/namespace lang,attr,omitempty"`
		Charset string `xml:"charset,attr,omitempty"`
		Value   string `xml:"value,attr"`
	}{Charset: "UTF-8", Value: v})
	return l
}

func (l *localized) value() string {
	if l == nil || len(l.Strings) == 0 {
		return ""
	}
	return l.Strings[0].Value
}

type classification struct {
	ID                   string     `xml:"id,attr"`
	ClassificationScheme string     `xml:"classificationScheme,attr,omitempty"`
	ClassificationNode   string     `xml:"classificationNode,attr,omitempty"`
	ClassifiedObject     string     `xml:"classifiedObject,attr"`
	NodeRepresentation   *string    `xml:"nodeRepresentation,attr"`
	Slots                []slot     `xml:"Slot"`
	Name                 *localized `xml:"Name"`
}

type externalIdentifier struct {
	ID                   string     `xml:"id,attr"`
	IdentificationScheme string     `xml:"identificationScheme,attr"`
	RegistryObject       string     `xml:"registryObject,attr"`
	Value                string     `xml:"value,attr"`
	Name                 *localized `xml:"Name"`
}

type association struct {
	ID              string `xml:"id,attr"`
	AssociationType string `xml:"associationType,attr"`
	SourceObject    string `xml:"sourceObject,attr"`
	TargetObject    string `xml:"targetObject,attr"`
	Slots           []slot `xml:"Slot"`
}

func slotValues(slots []slot, name string) []string {
	for _, s := range slots {
		if s.Name == name {
			return s.Values
		}
	}
	return nil
}

func slotValue(slots []slot, name string) string {
	if v := slotValues(slots, name); len(v) > 0 {
		return v[0]
	}
	return ""
}
