package imapd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"

	"github.com/mssante-go/sdk/transport/imapd"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// A connector serves its BALs on 993 (implicit TLS) and 143 (STARTTLS). Applicative BALs log
// in with their IGC-Santé certificate (SASL EXTERNAL); the TLS configuration asks for client
// certificates and verifies them against the IGC-Santé roots.
func Example() {
	var (
		serverCert tls.Certificate // the connector's SERV certificate
		igcSante   *x509.CertPool  // IGC-Santé roots
	)
	store, err := mailbox.OpenSQLite(context.Background(), "/var/lib/mssante/mailbox", nil)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := imapd.New(&imapd.Options{
		Store: store,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    igcSante,
			MinVersion:   tls.VersionTLS12,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	l993, _ := net.Listen("tcp", ":993")
	l143, _ := net.Listen("tcp", ":143")
	go srv.ServeTLS(l993)
	go srv.Serve(l143)
}
