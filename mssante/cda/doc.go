// Package cda builds, marshals, parses and validates the HL7 CDA R2 documents MSSanté mails
// carry: the French header of the CI-SIS "Structuration minimale" (realmCode FR, templateIds
// 2.16.840.1.113883.2.8.2.1 and 1.2.250.1.213.1.1.1.1, patient INS with its traits, authors
// and legal authenticator by idNat_PS, custodian by idNat_Struct, serviceEvent, encounter,
// RPLC relatedDocument) with two bodies:
//
//   - the lettre de liaison à la sortie d'un établissement de santé, LDL-SES_2022.01
//     (templateId 1.2.250.1.213.1.1.1.29, LOINC 11490-0) with its four mandatory sections;
//   - N1, a PDF (or text) wrapped in nonXMLBody, B64, IHE XDS-SD (1.3.6.1.4.1.19376.1.2.20).
//
// [Build] refuses incomplete input with a [*BuildError] naming every field at fault;
// [Marshal] is deterministic; [Parse] is tolerant by default and strict on request; [Validate]
// runs the named [Rules]. Error messages never contain patient data.
//
// Specifications (docs/references.md): CDA R2; the CI-SIS StrucMin header, the CI-SIS
// document-core IG and CI-SIS LDL-SES; IHE XDS-SD for N1; as the schematrons and examples of
// the ANS test kit TestContenuCDA (ansforge/TestContenuCDA-3-0) check them. The golden files under
// testdata pass the ANS tools with zero failed asserts (CDA_extended.xsd; the IHE, CI-SIS,
// StrucMin and LDL-SES schematrons), run by testdata/anscheck.sh (TestANSChecks, when a
// TestContenuCDA checkout is given); in CI the golden files and [Validate] stand in for them.
//
// Start with [Sample] for a filled [Input], [Build] and [Marshal] to write a document, and
// [Parse] then [Validate] to read one. Example (minimal) shows the smallest N1 input [Build]
// accepts, written out field by field.
//
// # Code values
//
// Every [Code] of an [Input] comes from a terminology the ANS publishes (Nomenclatures des
// objets de santé, NOS, and the CI-SIS value sets); [Build] checks that a code and its code
// system are present, not that the pair is in the set. The fields, the set their value is taken
// from, the code system to write, and the value [Sample] uses:
//
//	Author.Specialty                    TRE_G15 profession/specialty  OIDProfession       G15_10/SM27 (médecine interne)
//	Structure.PracticeSetting           JDV_J04 practiceSettingCode   OIDPracticeSetting  ETABLISSEMENT
//	Encounter.FacilityType              TRE_R02 SecteurActivite       OIDSecteurActivite  SA01 (établissement public)
//	ServiceEvent.Code                   HL7 ActCode                   OIDActCode          IMP (hospitalisation)
//	Code (N1 only)                      JDV_J07 XdsTypeCode (LOINC)   OIDLOINC            11490-0
//	LDLSES.AdmissionMode                JDV_ModaliteEntree_CISIS      OIDSNOMED           183452005
//	LDLSES.DischargeMode                JDV_ModaliteSortie_CISIS      OIDSNOMED           160849004
//	LDLSES.Medications[].Code           CIS spécialité (BDPM)         OIDCIS              60234100
//	LDLSES.Status (a string)            JDV_StatutDoc_CISIS           (SNOMED CT, set by Build)  done
//	Confidentiality (a string)          HL7 Confidentiality           (set by Build)      N, R or V
//
// "mssante cda example --json" prints [Sample] as the JSON an [Input] is read from.
package cda
