package annuaire_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mssante-go/sdk/annuaire"
)

// Reconcile an operator's registry with this morning's extraction: one BAL right, one not
// published yet, and one of the operator's domain published but no longer served.
func ExampleReconcile() {
	text := example + "ORG|ancien@ch-dax.mssante.fr||||1|1400780284|Ancien service||||||||||N|CENTRE HOSPITALIER DE DAX||||1||BD|YVES DU MANOIR||40107 DAX CEDEX|40107|40|FRANCE\n"
	x, err := annuaire.Load(strings.NewReader(text), nil)
	if err != nil {
		panic(err)
	}
	registry := []annuaire.Local{
		{Address: "cardio@ch-dax.mssante.fr", Type: annuaire.ORG, StructureID: "400780284"},
		{Address: "urgences@ch-dax.mssante.fr", Type: annuaire.ORG, StructureID: "400780284"},
	}
	at, _ := annuaire.ExtractionTime("Extraction_Correspondance_MSSante_202612070130.zip")
	rec, err := annuaire.Reconcile(context.Background(), registry, x, &annuaire.ReconcileOptions{
		ExtractionTime: at, Now: func() time.Time { return at.Add(6 * time.Hour) }})
	if err != nil {
		panic(err)
	}
	for _, f := range rec.Findings {
		fmt.Println(f.Status, f.Address)
	}
	// Output:
	// stale ancien@ch-dax.mssante.fr
	// ok cardio@ch-dax.mssante.fr
	// missing urgences@ch-dax.mssante.fr
}

// Publish a new ORG BAL on the Organization of its FINESS, through the FHIR write API (the
// ANS announces that endpoint as still in development: its base URL is configuration).
func ExamplePublisher() {
	p, err := annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: "https://api.example.test/fhir", APIKey: "…"})
	if err != nil {
		panic(err)
	}
	err = p.Insert(context.Background(), annuaire.Target{FINESS: "400780284"},
		&annuaire.Mailbox{Address: "urgences@ch-dax.mssante.fr", Type: annuaire.ORG, Description: "Urgences"})
	fmt.Println(err != nil)
}
