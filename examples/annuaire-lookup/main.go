// Command annuaire-lookup finds the MSSanté mailbox (BAL) of a recipient in the Annuaire Santé,
// the way a DPI fills in the recipient of a lettre de liaison: by name, RPPS or structure, in
// the daily extraction file Extraction_Correspondance_MSSante (mssante annuaire fetch
// downloads it), and, with --whitelist, says whether the BAL's domain is on the liste blanche.
//
//	go run ./examples/annuaire-lookup --extraction Extraction_Correspondance_MSSante.zip --name "dupont jean"
//
// Against "mssante dev" (its sample annuaire and its liste blanche):
//
//	go run ./examples/annuaire-lookup --extraction mssante-dev/annuaire/Extraction_Correspondance_MSSante_dev.txt \
//	    --whitelist mssante-dev/whitelist/listeblanchemssante.xml --roots mssante-dev/ca-chain.pem --name durand
//
// The same annuaire.Directory interface is implemented by annuaire.LDAP and annuaire.FHIR.
// It exits 1 when nothing is found.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "annuaire-lookup:", err)
		os.Exit(1)
	}
}

// errNotFound is returned when no BAL matches.
var errNotFound = errors.New("no BAL found")

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("annuaire-lookup", flag.ContinueOnError)
	extraction := fs.String("extraction", "", "the extraction file (.zip or .txt), required")
	var q annuaire.Query
	fs.StringVar(&q.Name, "name", "", "name prefix: last name then first name, or structure name")
	fs.StringVar(&q.RPPS, "rpps", "", "RPPS number of the health professional")
	fs.StringVar(&q.StructureID, "structure", "", "structure identifier (FINESS, SIRET)")
	fs.StringVar(&q.Address, "address", "", "the BAL address itself")
	typ := fs.String("type", "", "BAL type: PER, ORG, APP or CAB")
	wl := fs.String("whitelist", "", "a liste blanche file, to say whether each BAL's domain is listed")
	roots := fs.String("roots", "", "CA certificates (PEM, DER or .p7b) for the signer of --whitelist (default: the IGC-Santé root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *extraction == "" || fs.NArg() > 0 {
		return errors.New("usage: annuaire-lookup --extraction FILE [--name N] [--rpps R] [--structure S] [--address A] [--type T]")
	}
	q.Type = annuaire.BALType(*typ)
	q.Limit = 20

	var list *whitelist.List
	if *wl != "" {
		trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: *roots != ""}, []string{*roots}, nil)
		if err != nil {
			return err
		}
		if list, err = trust.VerifyWhitelistFile(*wl, nil); err != nil {
			return err
		}
	}
	x, err := annuaire.LoadFile(*extraction, nil)
	if err != nil {
		return err
	}
	var dir annuaire.Directory = x // or annuaire.NewLDAP, annuaire.NewFHIR: same queries, same entries
	res, err := dir.Search(ctx, q)
	if err != nil {
		return err
	}
	if len(res.Entries) == 0 {
		return errNotFound
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tADDRESS\tNAME\tSTRUCTURE\tLISTE BLANCHE")
	for _, e := range res.Entries {
		name := e.Person.LastName + " " + e.Person.FirstName
		if e.Type != annuaire.PER {
			name = e.Structure.Service
		}
		listed := "-"
		if list != nil {
			listed = "listed"
			if err := list.CheckDomain(domain(e.Address)); err != nil {
				listed = "NOT LISTED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.Address, name, e.Structure.Name, listed)
	}
	return tw.Flush()
}

func domain(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}
