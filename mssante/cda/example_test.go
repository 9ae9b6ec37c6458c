package cda_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

func Example() {
	in := cda.Sample(cda.KindLDLSES) // fictitious patient and professionals
	doc, err := cda.Build(in)
	if err != nil {
		fmt.Println(err)
		return
	}
	xml, _ := cda.Marshal(doc)
	back, err := cda.Parse(bytes.NewReader(xml), &cda.ParseOptions{Strict: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	ins, _ := back.INS()
	fmt.Println(back.Code.Code, ins.OID, cda.Validate(back).OK())

	in.Title = ""
	_, err = cda.Build(in)
	fmt.Println(err)
	// Output:
	// 11490-0 1.2.250.1.213.1.4.10 true
	// cda: cannot build document: title: required
}

// The smallest input Build accepts for an N1 document (a PDF wrapped in CDA): every field
// below is required. The code values and their sets are listed in the package documentation.
func Example_minimal() {
	at := time.Date(2026, 3, 12, 10, 30, 0, 0, time.FixedZone("CET", 3600))
	hospital := cda.Structure{ID: "1750803447", Name: "Hôpital Exemple", // idNat_Struct: 1 + FINESS
		PracticeSetting: &cda.Code{Code: "ETABLISSEMENT", CodeSystem: cda.OIDPracticeSetting}}
	in := &cda.Input{
		Kind:  cda.KindN1,
		Code:  &cda.Code{Code: cda.CodeLDLSES, DisplayName: cda.DisplayLDLSES, CodeSystem: cda.OIDLOINC},
		ID:    cda.OID{Root: "1.2.250.1.999.1.1.1", Extension: "DOC-1"}, // your document OID
		SetID: cda.OID{Root: "1.2.250.1.999.1.1.2", Extension: "SET-1"},
		Title: "Lettre de liaison",
		Time:  at,
		Patient: cda.Patient{Patient: mssante.Patient{
			INS: mssante.INS{Value: "279035121518989", OID: mssante.OIDINSNIRTest},
			Traits: mssante.Traits{BirthName: "PAT-TROIS", FirstGivenName: "DOMINIQUE",
				GivenNames: []string{"DOMINIQUE"}, BirthDate: time.Date(1979, 3, 28, 0, 0, 0, 0, time.UTC),
				Sex: mssante.SexFemale, BirthPlace: "51215"}}},
		Author:       cda.Professional{ID: "801234567897", Given: "Charles", Family: "DAVID", Organization: &hospital}, // idNat_PS: 8 + RPPS
		Custodian:    hospital,
		ServiceEvent: cda.Act{Start: at.AddDate(0, 0, -7)},
		Encounter:    cda.Visit{Start: at.AddDate(0, 0, -7), FacilityType: cda.Code{Code: "SA01", CodeSystem: cda.OIDSecteurActivite}},
		PDF:          []byte("%PDF-1.4\n…your PDF…"),
	}
	doc, err := cda.Build(in)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(doc.Code.Code, cda.Validate(doc).OK())
	// Output:
	// 11490-0 true
}
