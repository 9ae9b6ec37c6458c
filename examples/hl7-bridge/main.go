// Command hl7-bridge makes a program the platform of a DPI that speaks HL7v2 (CI-SIS
// Trans-CDA-R2): the DPI sends MDM^T02 or ORU^R01 with a CDA document over MLLP to --listen;
// each becomes an MSSanté mail from the BAL applicative --bal and is acknowledged (AA once
// queued, AE naming the cause when refused); the DSNs and MDNs that come back are sent to the
// DPI's MLLP endpoint --dpi as ZAM^Z02 and ZAM^Z03, and the documents the BAL receives are
// handed to it as MDM^T02, its ACK becoming the MDN (CI-SIS Trans-CDA-MSS).
//
// Against "mssante dev" (the BAL's connection is read from its folder):
//
//	go run ./examples/hl7-bridge --sandbox mssante-dev --bal dpi@hopital.dev.mssante.fr \
//	    --listen 127.0.0.1:2575 --dpi 127.0.0.1:2576
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/hl7bridge"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "hl7-bridge:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hl7-bridge", flag.ContinueOnError)
	sandbox := fs.String("sandbox", "mssante-dev", "folder of a running \"mssante dev\"")
	addr := fs.String("bal", "", "address of the BAL applicative")
	listen := fs.String("listen", "127.0.0.1:2575", "MLLP listener for the DPI's messages")
	dpiAddr := fs.String("dpi", "", "the DPI's MLLP endpoint, for ZAMs and received documents (optional)")
	state := fs.String("state", "hl7-state", "state folder: bal outbox, bridge journal")
	if err := fs.Parse(args); err != nil {
		return err
	}
	from, err := mssante.ParseAddress(*addr)
	if err != nil {
		return err
	}

	// The BAL applicative the mails leave from.
	o, err := bal.OptionsFromSandbox(*sandbox, *addr)
	if err != nil {
		return err
	}
	o.StateDir, o.NIL = *state+"/bal", "EXEMPLE01"
	client, err := bal.New(o)
	if err != nil {
		return err
	}
	defer client.Close()

	// The bridge, and the DPI's endpoint when there is one.
	bo := &hl7bridge.Options{Client: client, From: from, StateDir: *state + "/bridge"}
	handler := bal.Handler(func(context.Context, *bal.Incoming) error { return bal.ErrLeave })
	if *dpiAddr != "" {
		bo.DPI = mllp.Dial(*dpiAddr, nil)
		defer bo.DPI.Close()
	}
	br, err := hl7bridge.New(bo)
	if err != nil {
		return err
	}
	if bo.DPI != nil {
		handler = br.Deliver
	}
	watched := make(chan error, 1)
	go func() { watched <- client.Watch(ctx, handler, &bal.WatchOptions{OnReceipt: br.OnReceipt}) }()
	go br.Run(ctx) // sends the queued ZAMs to the DPI

	// MLLP: one message at a time per connection, ACK after the mail is queued.
	srv, err := mllp.NewServer(&mllp.Options{Handler: br.Handle, Oversize: br.Oversize})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "hl7-bridge: MLLP on %s for %s\n", l.Addr(), *addr)
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, mllp.ErrServerClosed) {
		return err
	}
	if err := <-watched; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
