package cda

// OIDs, templates and codes of the CI-SIS header and the two bodies, as the schematrons and
// examples of the ANS test kit TestContenuCDA (CI-SIS StrucMin, CI-SIS LDL-SES) write them.
const (
	// Header declarations (CDA R2 typeId, CI-SIS StrucMin templateIds).
	OIDTypeID          = "2.16.840.1.113883.1.3" // typeId root, extension POCD_HD000040
	TypeIDExtension    = "POCD_HD000040"
	TemplateHL7France  = "2.16.840.1.113883.2.8.2.1"
	TemplateCISIS      = "1.2.250.1.213.1.1.1.1"    // Structuration minimale
	TemplateXDSSD      = "1.3.6.1.4.1.19376.1.2.20" // IHE XDS-SD, N1 bodies
	TemplateLDLSES     = "1.2.250.1.213.1.1.1.29"   // lettre de liaison à la sortie
	TemplateLDLSESVers = "2022.01"

	// Code systems.
	OIDLOINC           = "2.16.840.1.113883.6.1"
	OIDSNOMED          = "2.16.840.1.113883.6.96"
	OIDConfidentiality = "2.16.840.1.113883.5.25"
	OIDActCode         = "2.16.840.1.113883.5.4"
	OIDGender          = "2.16.840.1.113883.5.1"
	OIDTAASIP          = "1.2.250.1.213.1.1.4.322" // TA_ASIP
	OIDProfession      = "1.2.250.1.213.1.1.4.5"   // TRE_G15 profession/specialty (authorSpecialty)
	OIDPracticeSetting = "1.2.250.1.213.1.1.4.9"   // JDV_J04 practiceSettingCode
	OIDSecteurActivite = "1.2.250.1.71.4.2.4"      // TRE_R02 healthcareFacilityTypeCode
	OIDCIS             = "1.2.250.1.213.2.3.1"     // CIS medication codes

	// Document code of the lettre de liaison (CI-SIS LDL-SES).
	CodeLDLSES        = "11490-0"
	DisplayLDLSES     = "Lettre de liaison à la sortie d'un établissement de soins"
	MediaTypePDF      = "application/pdf"
	MediaTypeText     = "text/plain"
	RepresentationB64 = "B64"
)

// LDL-SES sections (CI-SIS_LDL-SES_2022.01.sch makes the first four mandatory) and entries.
const (
	SectionStatus          = "1.2.250.1.213.1.1.2.35.1"           // FR-Statut-du-document-LDL-SES
	SectionStatusParent    = "1.2.250.1.213.1.1.2.35"             //
	SectionReason          = "1.3.6.1.4.1.19376.1.5.3.1.3.1"      // FR-Raison-de-la-recommandation-non-code
	SectionReasonFR        = "1.2.250.1.213.1.1.2.127"            //
	SectionOutcomes        = "1.3.6.1.4.1.19376.1.7.3.1.1.13.7"   // FR-Resultats-evenements-LDL-SES
	SectionOutcomesPCC     = "1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9" //
	SectionOutcomesParent  = "1.2.250.1.213.1.1.2.163"            //
	SectionOutcomesFR      = "1.2.250.1.213.1.1.2.163.1"          //
	SectionDischargeMeds   = "1.3.6.1.4.1.19376.1.5.3.1.3.22"     // FR-Traitements-a-la-sortie
	SectionDischargeMedsFR = "1.2.250.1.213.1.1.2.146"            //
	SectionResults         = "1.3.6.1.4.1.19376.1.5.3.1.3.27"     // FR-Resultats-examens-non-code (optional)
	SectionCarePlan        = "1.3.6.1.4.1.19376.1.5.3.1.3.36"     // FR-Plan-de-soins (optional)
	EntrySimpleObservation = "1.3.6.1.4.1.19376.1.5.3.1.4.13"     // IHE PCC simple observation
	EntrySimpleObsFR       = "1.2.250.1.213.1.1.3.48"             //
	EntryStatusParent      = "1.2.250.1.213.1.1.3.48.16"          // FR-Statut-document
	EntryStatus            = "1.2.250.1.213.1.1.3.48.16.1"        //
	EntryAdmissionMode     = "1.2.250.1.213.1.1.3.48.6"           // FR-Modalite-entree
	EntryDischargeMode     = "1.2.250.1.213.1.1.3.48.7"           // FR-Modalite-sortie
	EntrySynthesis         = "1.2.250.1.213.1.1.3.48.9"           // FR-Synthese-medicale-sejour
	EntryMedication        = "1.3.6.1.4.1.19376.1.5.3.1.4.7"      // IHE PCC medication
)

// Values of the status entry (JDV_StatutDoc_CISIS, SNOMED CT).
var documentStatus = map[string]CD{
	"in-progress": {Code: "385651009", DisplayName: "en cours d'exécution", CodeSystem: OIDSNOMED},
	"done":        {Code: "398166005", DisplayName: "réalisé", CodeSystem: OIDSNOMED},
	"approved":    {Code: "9571008", DisplayName: "approuvé", CodeSystem: OIDSNOMED},
	"closed":      {Code: "29179001", DisplayName: "clôturé", CodeSystem: OIDSNOMED},
}

// confidentiality are the CDA confidentialityCode values the LDL-SES template allows.
var confidentiality = map[string]string{"N": "Normal", "R": "Restreint", "V": "Très restreint"}
