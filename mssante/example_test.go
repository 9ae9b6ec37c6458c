package mssante_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

func ExampleParseINS() {
	ins, err := mssante.ParseINS("2 79 03 51 215 189 89", mssante.OIDINSNIRTest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ins.Value, ins.IsTest())
	_, err = mssante.ParseINS("279035121518988", mssante.OIDINSNIR)
	fmt.Println(err)
	// Output:
	// 279035121518989 true
	// mssante: invalid INS: key 88 does not match
}

func ExampleParsePSNationalID() {
	id, err := mssante.ParsePSNationalID("801234567897")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id.Kind, id.Value, id.OID())
	// Output: RPPS 01234567897 1.2.250.1.71.4.2.1
}

func ExamplePatientAddress() {
	p := &mssante.Patient{
		INS: mssante.INS{Value: "146026322000196", OID: mssante.OIDINSNIR},
		Traits: mssante.Traits{BirthName: "VIAL", FirstGivenName: "Paul", Sex: mssante.SexMale,
			BirthDate: time.Date(1978, 11, 26, 0, 0, 0, 0, time.UTC)},
	}
	a, err := mssante.PatientAddress(p)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Addr)
	// Output: 146026322000196@patient.mssante.fr
}

func ExampleMessage_WriteTo() {
	patient := &mssante.Patient{
		INS: mssante.INS{Value: "146026322000196", OID: mssante.OIDINSNIR},
		Traits: mssante.Traits{BirthName: "Vial", FirstGivenName: "Paul", Sex: mssante.SexMale,
			BirthDate: time.Date(1978, 11, 26, 0, 0, 0, 0, time.UTC)},
	}
	m := &mssante.Message{
		From:    mssante.MustAddress("Laboratoire", "labo-app@labo.test.mssante.fr"),
		To:      []mssante.Address{mssante.MustAddress("", "dr.martin@medecin.test.mssante.fr")},
		Text:    "Compte rendu ci-joint.\n",
		Patient: patient,
		Documents: []mssante.Document{{Code: "11502-2", DisplayName: "CR d'examens biologiques",
			Date: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), PDF: []byte("%PDF-1.4 …")}},
		XDM:     []byte("PK…"), // from mssante/xdm
		NIL:     "DEV935997",
		WantMDN: true,
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b, nil); err != nil {
		log.Fatal(err)
	}
	got, err := mssante.ReadMessage(&b, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Subject)
	fmt.Println(got.CodeCDA, got.INSHeader, got.Documents[0].PDFName)
	// Output:
	// XDM/1.0/DDM+CR d'examens biologiques VIAL Paul 26/11/1978
	// [11502-2] O 20261127_CR d'examens biologiques_VIAL_Paul.pdf
}

func ExampleWriteReceipt() {
	// A received message asking for an MDN, whose patient is unknown here.
	raw := "From: labo-app@labo.test.mssante.fr\r\nTo: pfi@clinique.test.mssante.fr\r\n" +
		"Message-ID: <m1@labo.test.mssante.fr>\r\nSubject: XDM/1.0/DDM+CR VIAL Paul\r\n" +
		"Disposition-Notification-To: labo-app@labo.test.mssante.fr\r\n\r\nbody\r\n"
	orig, err := mssante.ReadMessage(strings.NewReader(raw), nil)
	if err != nil {
		log.Fatal(err)
	}
	var mdn bytes.Buffer
	_, err = mssante.WriteReceipt(&mdn, orig, []byte(raw), mssante.CodeUnknownPatient, &mssante.ReceiptOptions{
		From: mssante.MustAddress("", "pfi@clinique.test.mssante.fr"), ReportingUA: "clinique; MonDPI 4.2", NIL: "DEV111111",
	})
	if err != nil {
		log.Fatal(err)
	}
	n, m, err := mssante.ParseMDN(&mdn, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Subject)
	fmt.Println(n.Disposition())
	// Output:
	// [KO Intégration système !][902] XDM/1.0/DDM+CR VIAL Paul
	// automatic-action/MDN-sent-automatically; processed/Error: 902^Patient inconnu
}

func ExampleBuildDSN() {
	d := &mssante.DSN{
		ReportingMTA:       "mx.hopital.test.mssante.fr",
		OriginalEnvelopeID: "Q42",
		Recipients: []mssante.DSNRecipient{{
			FinalRecipient: "dr.martin@medecin.test.mssante.fr", Action: mssante.ActionFailed, Status: "5.1.1",
			RemoteMTA: "mx.medecin.test.mssante.fr", DiagnosticCode: "smtp; 550 5.1.1 unknown user",
		}},
	}
	env := &mssante.DSNEnvelope{
		From: mssante.MustAddress("Mail Delivery System", "mailer-daemon@hopital.test.mssante.fr"),
		To:   mssante.MustAddress("", "labo-app@hopital.test.mssante.fr"),
	}
	var b bytes.Buffer
	if _, err := mssante.BuildDSN(&b, env, d, nil); err != nil {
		log.Fatal(err)
	}
	got, m, err := mssante.ParseDSN(&b, nil)
	if err != nil {
		log.Fatal(err)
	}
	r := got.Recipients[0]
	fmt.Println(m.Subject)
	fmt.Println(got.OriginalEnvelopeID, r.FinalRecipient, r.Action, r.Status, r.Action.Final())
	// Output:
	// Undelivered Mail Returned to Sender
	// Q42 dr.martin@medecin.test.mssante.fr failed 5.1.1 true
}
