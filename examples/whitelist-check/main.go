// Command whitelist-check downloads the ANS liste blanche, verifies its signature, and says
// for each domain given whether MSSanté mail may be exchanged with it, and which operator
// certificate DNs are listed for it. It is what a BAL client or a connector does before every
// message: fail closed on a domain that is not listed.
//
//	go run ./examples/whitelist-check ch-exemple.mssante.fr gmail.com
//
// Against "mssante dev", trust its test PKI instead of IGC-Santé:
//
//	go run ./examples/whitelist-check --url https://127.0.0.1:PORT/listeblanchemssante.xml \
//	    --ca mssante-dev/ca-chain.pem --roots mssante-dev/ca-chain.pem hopital.dev.mssante.fr
//
// It exits 0 when every domain is listed, 1 otherwise.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "whitelist-check:", err)
		os.Exit(1)
	}
}

// errNotListed is returned when at least one domain is not on the list.
var errNotListed = errors.New("some domains are not on the liste blanche")

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("whitelist-check", flag.ContinueOnError)
	url := fs.String("url", whitelist.DefaultURL, "URL of the liste blanche (https)")
	ca := fs.String("ca", "", "PEM roots for the HTTPS server (default: the IGC-Santé root)")
	roots := fs.String("roots", "", "CA certificates (PEM, DER or .p7b) for the signer of the list (default: the IGC-Santé root)")
	signer := fs.String("signer", "", "expected signer DN (default: the ANS signer)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: whitelist-check [options] DOMAIN [DOMAIN ...]")
	}
	serverRoots, err := pool(*ca)
	if err != nil {
		return err
	}
	trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: *roots != ""}, []string{*roots}, nil)
	if err != nil {
		return err
	}
	// A Store is what a long-running program keeps: it refreshes the list in the background
	// (Run), keeps the last good one, and refuses rollbacks. Here one Refresh is enough.
	store, err := whitelist.NewStore(&whitelist.StoreOptions{
		URL: *url,
		Client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: serverRoots}}},
		Verify: *trust.WhitelistOptions(&whitelist.VerifyOptions{Signer: *signer}),
	})
	if err != nil {
		return err
	}
	if err := store.Refresh(ctx); err != nil {
		return err
	}
	st := store.State()
	fmt.Fprintf(out, "liste blanche generated %s: %d entries, %d domains\n", st.Generated.UTC().Format(time.RFC3339), st.Entries, st.Domains)
	list := store.List()
	var policy whitelist.Policy = store // what a connector or a BAL client enforces
	missing := false
	for _, d := range fs.Args() {
		if err := policy.CheckDomain(d); err != nil {
			fmt.Fprintf(out, "%s: NOT LISTED (%v): no MSSanté mail to or from it\n", d, err)
			missing = true
			continue
		}
		entries, _ := list.Lookup(d)
		var dns []string
		for _, e := range entries {
			dns = append(dns, e.OperatorDNs...)
		}
		fmt.Fprintf(out, "%s: listed; operator certificate: %s\n", d, strings.Join(dns, " | "))
	}
	if missing {
		return errNotListed
	}
	return nil
}

// pool reads PEM certificates from path, or returns the IGC-Santé root when path is empty.
func pool(path string) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if path == "" {
		p.AddCert(transport.IGCSanteRoot())
		return p, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return p, nil
}
