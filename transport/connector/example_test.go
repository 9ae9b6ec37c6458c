package connector_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/whitelist"
)

// A relay listener for other operators and the delivery loop, wired by hand (mssante serve
// does the same from its configuration).
func Example() {
	cert, err := tls.LoadX509KeyPair("mx.hopital.mssante.fr.crt", "mx.hopital.mssante.fr.key")
	if err != nil {
		log.Fatal(err)
	}
	trust := transport.NewTrustStore(nil) // the embedded IGC-Santé root; add its CRLs
	if err := trust.AddCRLFile("ACI-EL-ORG.crl"); err != nil {
		log.Fatal(err)
	}
	tlsOpts := &transport.TLSOptions{Trust: trust, Certificates: []tls.Certificate{cert}}
	var list *whitelist.List // from whitelist.Verify or a whitelist.Store
	q, err := queue.Open(&queue.Options{Dir: "/var/spool/mssante"})
	if err != nil {
		log.Fatal(err)
	}
	local := &connector.Maildir{Dir: "/var/lib/mssante/maildir"}
	relay, err := connector.NewServer(&connector.ServerOptions{Mode: connector.ModeRelay, Hostname: "mx.hopital.mssante.fr",
		TLS: tlsOpts, Policy: connector.ListedOperator(list), LocalDomains: []string{"hopital.mssante.fr"}, Local: local, Queue: q})
	if err != nil {
		log.Fatal(err)
	}
	delivery, err := connector.NewDelivery(&connector.DeliveryOptions{Hostname: "mx.hopital.mssante.fr", TLS: tlsOpts,
		Policy: list, LocalDomains: []string{"hopital.mssante.fr"}, Local: local})
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", ":25")
	if err != nil {
		log.Fatal(err)
	}
	go relay.Serve(l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	q.Run(ctx, delivery, &queue.RunOptions{Notifier: &connector.DSNNotifier{Queue: q, Hostname: "mx.hopital.mssante.fr"}})
	relay.Shutdown(context.Background())
}
