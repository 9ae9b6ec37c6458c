package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// Example runs a mutual-TLS server and dials it with a BAL applicative's certificate. In
// production the trust store is transport.NewTrustStore(nil) (the embedded IGC-Santé root) with
// the ANS bundle and CRLs added; here a test PKI stands in for IGC-Santé.
func Example() {
	pki, _ := testpki.New(nil)
	serverCert, _ := pki.Server("localhost", nil)
	balCert, _ := pki.Org("bal.app@hopital.test", nil)
	crl, _ := pki.CRL()

	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	trust.AddRoot(pki.Root)
	trust.AddIntermediate(pki.Intermediate)
	if err := trust.AddCRL(crl); err != nil {
		panic(err)
	}

	srvCfg, err := transport.ServerConfig(nil, &transport.TLSOptions{
		Trust: trust, Certificates: []tls.Certificate{serverCert.TLSCertificate()},
	})
	if err != nil {
		panic(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc, err := transport.Server(context.Background(), c, srvCfg)
		if err != nil {
			return
		}
		dn, _ := transport.PeerDN(tc.ConnectionState())
		fmt.Fprintln(tc, dn) // tell the client whom the server saw
		tc.Close()
	}()

	d := &transport.Dialer{Options: transport.TLSOptions{
		Trust:        trust,
		Certificates: []tls.Certificate{balCert.TLSCertificate()},
		VerifyPeer: func(chain []*x509.Certificate) error {
			// e.g. the whitelist check: is this DN listed for the recipient's domain?
			if !transport.EqualDN(transport.SubjectDN(chain[0]),
				"cn=localhost, ou=12345678200010, o=hopital de test, st=haute-garonne (31), c=fr") {
				return errors.New("operator not listed")
			}
			return nil
		},
	}}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", port))
	if err != nil {
		panic(err)
	}
	dn, _ := transport.PeerDN(conn.ConnectionState())
	fmt.Println("client sees", dn)
	seen, _ := io.ReadAll(conn)
	fmt.Print("server sees ", string(seen))
	conn.Close()
	// Output:
	// client sees CN=localhost,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR
	// server sees CN=bal.app@hopital.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR
}

// At start, a BAL or a relay loads the trust material its configuration names, then verifies
// the liste blanche against the same CAs and CRLs. Here a test PKI and a list it signed stand
// in for IGC-Santé and the ANS list.
func ExampleLoadTrustStore() {
	dir, _ := os.MkdirTemp("", "trust")
	defer os.RemoveAll(dir)
	pki, _ := testpki.New(nil)
	caFile, crlFile, listFile, signer, _ := writeTrustFiles(pki, dir, false)

	trust, err := transport.LoadTrustStore(
		&transport.TrustOptions{NoIGCSanteRoot: true}, // in production: nil, the IGC-Santé root
		[]string{caFile},  // in production: the ANS bundle Chaine_de_certification-IGC-Sante.p7b
		[]string{crlFile}, // in production: the CRLs of the IGC-Santé CAs
	)
	if err != nil {
		log.Fatal(err)
	}
	list, err := trust.VerifyWhitelistFile(listFile,
		&whitelist.VerifyOptions{Signer: signer}) // in production: nil, whitelist.DefaultSigner
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(list.CheckDomain("ch-exemple.mssante.fr"))
	// Output: <nil>
}
