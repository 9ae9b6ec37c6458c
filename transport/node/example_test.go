package node_test

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/mssante-go/sdk/transport/node"
)

// An operator node from the configuration of "mssante serve": with [mailbox] dir set it runs
// the mailbox store, the IMAP listeners of [imap], the responder of [responder] and the
// retention purge beside the connector.
func Example() {
	f, err := os.Open("/etc/mssante/serve.toml")
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := node.LoadConfig(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	n, err := node.New(ctx, cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := n.Serve(ctx); err != nil { // until Ctrl-C; then stops everything and closes the store
		log.Fatal(err)
	}
}
