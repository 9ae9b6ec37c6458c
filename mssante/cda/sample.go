package cda

import (
	"time"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/mssante"
)

// Sample returns a complete builder input made of fictitious data: a test INS (OID
// 1.2.250.1.213.1.4.10, the ANS test matricule), test RPPS and FINESS numbers, a fixed date.
// It is what "mssante cda example" prints and what the tests and golden files start from.
func Sample(kind Kind) *Input {
	paris := time.FixedZone("CET", 3600)
	at := time.Date(2026, 3, 12, 10, 30, 0, 0, paris)
	hospital := &Structure{ID: "1750803447", Name: "Hôpital Exemple", Telecom: "tel:0100000000",
		Address:         &Address{Street: "1 rue de l'Exemple", PostalCode: "75015", City: "PARIS"},
		PracticeSetting: &Code{Code: "ETABLISSEMENT", DisplayName: "Etablissement de santé", CodeSystem: OIDPracticeSetting}}
	in := &Input{
		Kind:    kind,
		ID:      OID{Root: "1.2.250.1.999.1.1.1", Extension: "DOC-2026-0001"},
		SetID:   OID{Root: "1.2.250.1.999.1.1.2", Extension: "SET-2026-0001"},
		Version: 1,
		Time:    at,
		Patient: Patient{Patient: mssante.Patient{
			INS: mssante.INS{Value: "279035121518989", OID: mssante.OIDINSNIRTest},
			Traits: mssante.Traits{BirthName: "PAT-TROIS", FirstGivenName: "DOMINIQUE",
				GivenNames: []string{"DOMINIQUE", "MARIE-LOUISE"}, BirthDate: time.Date(1979, 3, 28, 0, 0, 0, 0, time.UTC),
				Sex: mssante.SexFemale, BirthPlace: "51215", UsedName: "PAT-TROIS", UsedGivenName: "DOMINIQUE"},
		}, IPP: &OID{Root: "1.2.250.1.999.1.2", Extension: "1234567890121"}},
		Author: Professional{ID: "801234567897", Prefix: "M", Given: "Charles", Family: "DAVID", Suffix: "DR",
			Specialty:    &Code{Code: "G15_10/SM27", DisplayName: "Médecin - Médecine interne (SM)", CodeSystem: OIDProfession},
			Telecom:      "tel:0100000001",
			Organization: hospital},
		Custodian: *hospital,
		ServiceEvent: Act{Code: &Code{Code: "IMP", DisplayName: "Hospitalisation (établissement, y compris HAD)", CodeSystem: OIDActCode},
			Start: at.AddDate(0, 0, -7), End: at},
		Encounter: Visit{Start: at.AddDate(0, 0, -7), End: at,
			FacilityType: Code{Code: "SA01", DisplayName: "Etablissement public de santé", CodeSystem: OIDSecteurActivite}},
	}
	switch kind {
	case KindN1:
		in.Title = "Compte rendu (exemple)"
		in.Code = &Code{Code: CodeLDLSES, DisplayName: DisplayLDLSES, CodeSystem: OIDLOINC}
		in.Title = "Lettre de liaison à la sortie (PDF, exemple)"
		in.PDF = samplepdf.Page("Lettre de liaison - document fictif")
	default:
		in.Kind = KindLDLSES
		in.Title = "Lettre de liaison à la sortie de l'établissement de santé"
		in.LDLSES = &LDLSES{
			Status:        "done",
			Reason:        "Episode infectieux respiratoire (exemple fictif)",
			AdmissionMode: Code{Code: "183452005", DisplayName: "hospitalisation en urgence", CodeSystem: OIDSNOMED},
			DischargeMode: Code{Code: "160849004", DisplayName: "retour au domicile", CodeSystem: OIDSNOMED},
			Synthesis:     "Infection respiratoire aiguë traitée, évolution favorable.",
			Results:       "Radiographie thoracique de contrôle attendue.",
			CarePlan:      "Consultation de suivi avec le médecin traitant sous 15 jours.",
			Medications: []Medication{{Name: "AMOXICILLINE 1 g", Start: at, End: at.AddDate(0, 0, 5), Dose: "1 comprimé 3 fois par jour",
				Code: &Code{Code: "60234100", DisplayName: "AMOXICILLINE 1 g, comprimé", CodeSystem: OIDCIS}}},
		}
	}
	return in
}
