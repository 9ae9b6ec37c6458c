package hl7bridge_test

import (
	"context"
	"net"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/hl7bridge"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
)

// A platform for one DPI: its MDM and ORU arrive on port 2575 and leave as MSSanté mail from
// its BAL applicative; the receipts go back to the DPI's own MLLP port as ZAM messages.
func Example() {
	ctx := context.Background()
	client, err := bal.New(&bal.Options{ /* the DPI's BAL applicative */ })
	if err != nil {
		return
	}
	defer client.Close()
	dpi := mllp.Dial("dpi.hopital.local:2576", nil)
	br, err := hl7bridge.New(&hl7bridge.Options{
		Client: client, From: mssante.MustAddress("DPI", "dpi@hopital.mssante.fr"),
		StateDir: "/var/lib/hl7bridge", DPI: dpi,
	})
	if err != nil {
		return
	}
	go client.Watch(ctx, func(context.Context, *bal.Incoming) error { return bal.ErrLeave },
		&bal.WatchOptions{OnReceipt: br.OnReceipt})
	go br.Run(ctx) // sends the queued ZAMs
	srv, err := mllp.NewServer(&mllp.Options{Handler: br.Handle, Oversize: br.Oversize})
	if err != nil {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:2575")
	if err != nil {
		return
	}
	srv.Serve(l)
}
