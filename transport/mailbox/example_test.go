package mailbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mssante-go/sdk/transport/mailbox"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "mailbox-example")
	defer os.RemoveAll(dir)

	store, err := mailbox.OpenSQLite(ctx, dir, nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// An applicative BAL, authenticated by its certificate DN.
	err = store.AddBAL(ctx, &mailbox.BAL{
		Address: "dpi@hopital.example.mssante.fr",
		Type:    mailbox.APP,
		Owner:   "010000001",
		CertDN:  "CN=dpi.hopital.example,O=Hopital Example",
	})
	if err != nil {
		panic(err)
	}
	// Local delivery: idempotent by delivery ID.
	msg := "From: a@b.mssante.fr\r\nSubject: test\r\n\r\nhello\r\n"
	res, _ := store.Append(ctx, "dpi@hopital.example.mssante.fr", mailbox.Inbox, strings.NewReader(msg),
		&mailbox.AppendOptions{DeliveryID: "queue-42"})
	again, _ := store.Append(ctx, "dpi@hopital.example.mssante.fr", mailbox.Inbox, strings.NewReader(msg),
		&mailbox.AppendOptions{DeliveryID: "queue-42"})
	fmt.Println(res.UID, again.UID, again.Duplicate)
	// Output: 1 1 true
}
