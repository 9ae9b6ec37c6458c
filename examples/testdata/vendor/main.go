// Command dpi is a vendor's program outside the SDK's module: it sends a lettre de liaison from
// the hospital's BAL applicative of a "mssante dev" trust space and waits for its receipts.
//
//	go run . MSSANTE_DEV_FOLDER
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

func main() {
	opts, err := bal.OptionsFromSandbox(os.Args[1], "dpi@hopital.dev.mssante.fr")
	if err != nil {
		log.Fatal(err)
	}
	opts.StateDir, opts.NIL = "dpi-state", "DEV000000"
	client, err := bal.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	from := mssante.MustAddress("DPI", "dpi@hopital.dev.mssante.fr")
	to := mssante.MustAddress("", "logiciel@cabinet.dev.mssante.fr")
	msg, err := bal.NewDocumentMessage(from, []mssante.Address{to}, cda.Sample(cda.KindN1),
		&bal.DocumentOptions{WantMDN: true})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := client.Send(ctx, msg, nil) // end of set-up: counted by the test
	if err != nil {
		log.Fatal(err)
	}
	receipts, err := client.Await(ctx, res.MessageID)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range receipts {
		fmt.Printf("%s: %s\n", r.Recipient, r.Status)
	}
}
