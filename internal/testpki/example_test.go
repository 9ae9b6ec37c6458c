package testpki_test

import (
	"crypto/tls"
	"fmt"

	"github.com/mssante-go/sdk/internal/testpki"
)

func Example() {
	pki, err := testpki.New(nil) // in memory, RSA-2048, shared CA within the process
	if err != nil {
		panic(err)
	}
	srv, err := pki.Server("mx.hopital.test", &testpki.LeafOptions{State: "Gironde (33)"})
	if err != nil {
		panic(err)
	}
	_ = &tls.Config{Certificates: []tls.Certificate{srv.TLSCertificate()}, ClientCAs: pki.Roots()}
	fmt.Println(srv.Cert.Subject)
	fmt.Println(srv.Cert.Issuer.CommonName)
	// Output:
	// CN=mx.hopital.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Gironde (33),C=FR
	// TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS
}
