package audit_test

import (
	"log"

	"github.com/mssante-go/sdk/transport/audit"
)

// A record per event of the mail path: identifiers and envelope only. The patient address is
// written pseudonymised.
func Example() {
	l, err := audit.Open(&audit.Options{Dir: "/var/log/mssante/audit"})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	l.Log(&audit.Record{Event: audit.EventQueued, Source: "relay", MsgID: "1f3a9c", From: "dr.martin@hopital.mssante.fr",
		Rcpts: []string{"146026322000196@patient.mssante.fr"}, Code: "250 2.0.0"})
}
