package httpapi_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"net/http"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/httpapi"
)

// A vendor mounts the API in its own server, backed by the bal.Client of its BAL applicative:
// the callers authenticate with that BAL's IGC-Santé certificate, verified against the same
// trust store as the connector's, and Run watches the mailbox for received messages and
// receipts.
func Example() {
	opts, err := bal.OptionsFromSandbox("mssante-dev", "dpi@hopital.dev.mssante.fr")
	if err != nil {
		log.Fatal(err)
	}
	opts.StateDir, opts.NIL = "dpi-state", "DEV000000"
	client, err := bal.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	h, err := httpapi.New(&httpapi.Options{
		BALs: map[string]*bal.Client{"dpi@hopital.dev.mssante.fr": client},
		Auth: &httpapi.CertificateAuth{Trust: opts.TLS.Trust, Accounts: &connector.StaticAccounts{
			ByDN: map[string]string{"CN=dpi.hopital.dev.mssante.fr,O=…": "dpi@hopital.dev.mssante.fr"}}},
		StateDir: "api-state",
	})
	if err != nil {
		log.Fatal(err)
	}
	go h.Run(context.Background())
	mux := http.NewServeMux()
	mux.Handle("/v1/", h)
	// Its server certificate (IGC-Santé SERV); client certificates are verified as by the
	// connector (transport.ServerConfig), here through httpapi.NewServer.
	cert, err := tls.LoadX509KeyPair("server.crt.pem", "server.key.pem")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := httpapi.NewServer(mux, &httpapi.ServerOptions{TLS: transport.TLSOptions{Trust: opts.TLS.Trust,
		Certificates: []tls.Certificate{cert}}})
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(l))
}
