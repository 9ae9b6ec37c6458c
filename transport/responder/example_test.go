package responder_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/responder"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "responder-example")
	defer os.RemoveAll(dir)
	store, _ := mailbox.OpenSQLite(ctx, dir, nil)
	defer store.Close()
	store.AddBAL(ctx, &mailbox.BAL{Address: "reponse.automatique@hopital.example.mssante.fr", Type: mailbox.ORG})

	r, err := responder.New(&responder.Options{
		Address: "reponse.automatique@hopital.example.mssante.fr",
		Store:   store,
		Send: func(ctx context.Context, from, to string, msg []byte) error {
			fmt.Printf("reply to %s (envelope sender %q)\n", to, from)
			return nil // a connector enqueues it: queue.Enqueue
		},
	})
	if err != nil {
		panic(err)
	}
	msg := "Return-Path: <dr.martin@autre.example.mssante.fr>\r\nFrom: dr.martin@autre.example.mssante.fr\r\nSubject: test\r\nMessage-ID: <1@autre>\r\n\r\nbonjour\r\n"
	r.Deliver(ctx, "reponse.automatique@hopital.example.mssante.fr", "queue-1", strings.NewReader(msg))
	r.Deliver(ctx, "reponse.automatique@hopital.example.mssante.fr", "queue-1", strings.NewReader(msg)) // retried: no second reply
	// Output: reply to dr.martin@autre.example.mssante.fr (envelope sender "")
}
