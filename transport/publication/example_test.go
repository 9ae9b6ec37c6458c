package publication_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/publication"
)

// The dry run an operator starts with: what a publication would write, from the store and
// today's extraction.
func Example() {
	ctx := context.Background()
	st, err := mailbox.OpenSQLite(ctx, "mssante-data/mailbox", nil)
	if err != nil {
		return
	}
	defer st.Close()
	x, err := annuaire.LoadFile("Extraction_Correspondance_MSSante_202612070130.zip", nil)
	if err != nil {
		return
	}
	at, _ := annuaire.ExtractionTime("Extraction_Correspondance_MSSante_202612070130.zip")
	rec, listings, err := publication.Reconcile(ctx, st, x, &annuaire.ReconcileOptions{ExtractionTime: at})
	if err != nil {
		return
	}
	plan, err := publication.NewPlan(ctx, st, rec, listings)
	if err != nil {
		return
	}
	publication.Run(ctx, st, nil, plan, nil) // no Apply: nothing is sent
	for _, a := range plan.Actions {
		fmt.Println(a.Address, a.Op, a.Result, strings.TrimSpace(a.Why))
	}
}
