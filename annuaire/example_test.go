package annuaire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
)

var example = annuaire.HeaderLine() + "\n" +
	"PER|helene.lefevre@medecin.mssante.fr|8|10003456786|810003456786||||MME|LEFÈVRE|Hélène|C|Civil|10|Médecin|||O|||||12||R|DE LA PAIX||40100 DAX|40100|40|FRANCE\n" +
	"ORG|cardio@ch-dax.mssante.fr||||1|1400780284|Cardiologie||||||||||N|CENTRE HOSPITALIER DE DAX||||1||BD|YVES DU MANOIR||40107 DAX CEDEX|40107|40|FRANCE\n"

// Load the daily extraction file and search it by name (accents and case ignored) and by
// RPPS number.
func ExampleLoad() {
	x, err := annuaire.Load(strings.NewReader(example), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	r, _ := x.Search(ctx, annuaire.Query{Name: "lefevre hel"})
	for _, e := range r.Entries {
		fmt.Println(e.Type, e.Address, e.Person.RPPS())
	}
	r, _ = x.Search(ctx, annuaire.Query{StructureID: "400780284", Type: annuaire.ORG})
	for _, e := range r.Entries {
		fmt.Println(e.Type, e.Address, e.Structure.IDType, e.Structure.Service)
	}
	// Output:
	// PER helene.lefevre@medecin.mssante.fr 10003456786
	// ORG cardio@ch-dax.mssante.fr FINESS Cardiologie
}

// Turn an extraction into LDIF for the default schema, to feed a local OpenLDAP.
func ExampleWriteLDIF() {
	var out bytes.Buffer
	n, err := annuaire.WriteLDIF(&out, strings.NewReader(example), nil)
	if err != nil {
		panic(err)
	}
	first, _, _ := strings.Cut(out.String(), "\n\n")
	fmt.Println(n, "entries; the first:")
	fmt.Println(first)
	// Output:
	// 2 entries; the first:
	// dn: uid=helene.lefevre@medecin.mssante.fr,dc=mssante,dc=fr
	// objectClass: mssanteBAL
	// uid: helene.lefevre@medecin.mssante.fr
	// TypeBAL: PER
	// mail: helene.lefevre@medecin.mssante.fr
	// TypeIdentifiantPP: 8
	// IdentifiantPP: 10003456786
	// mssanteIdNat: 810003456786
	// mssanteCivilite: MME
	// sn:: TEVGw4hWUkU=
	// givenName:: SMOpbMOobmU=
	// mssanteCategorieProfession: C
	// mssanteLibelleCategorieProfession: Civil
	// profession: 10
	// mssanteLibelleProfession:: TcOpZGVjaW4=
	// mssanteDematerialisation: TRUE
	// mssanteL4Numero: 12
	// mssanteL4TypeVoie: R
	// mssanteL4LibelleVoie: DE LA PAIX
	// mssanteL6Acheminement: 40100 DAX
	// postalCode: 40100
	// mssanteDepartement: 40
	// mssantePays: FRANCE
	// mssanteNomRecherche: LEFEVRE HELENE
	// l: DAX
}

// Search an LDAP directory with the default profile, over ldaps with a client certificate
// (SASL EXTERNAL).
func ExampleNewLDAP() {
	cert, err := tls.LoadX509KeyPair("bal.crt", "bal.key")
	if err != nil {
		fmt.Println("no certificate here")
		return
	}
	l, err := annuaire.NewLDAP(&annuaire.LDAPOptions{
		URL:          "ldaps://annuaire.example.org",
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ExternalBind: true,
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	r, err := l.Search(context.Background(), annuaire.Query{RPPS: "10003456786", Limit: 5})
	fmt.Println(r, err)
	// Output: no certificate here
}

// Find the applicative BALs of a structure through the ANS FHIR API.
func ExampleNewFHIR() {
	f, err := annuaire.NewFHIR(&annuaire.FHIROptions{APIKey: os.Getenv("ESANTE_API_KEY")})
	if err != nil {
		panic(err)
	}
	var d annuaire.Directory = f // the same interface as the other sources
	_ = func() {
		r, err := d.Search(context.Background(), annuaire.Query{StructureID: "400780284", Type: annuaire.APP})
		fmt.Println(r, err)
	}
	fmt.Println("ready")
	// Output: ready
}

// Keep a local annuaire fresh: the daily file is downloaded when a new one is published.
func ExampleRefresher() {
	dir, _ := os.MkdirTemp("", "annuaire")
	defer os.RemoveAll(dir)
	r, err := annuaire.NewRefresher(dir, &annuaire.FetchOptions{ /* HTTPClient trusting IGC-Santé */ })
	if err != nil {
		panic(err)
	}
	_ = func(ctx context.Context) { go r.Run(ctx, 6*time.Hour) }
	_, err = r.Search(context.Background(), annuaire.Query{Name: "DUPONT"})
	fmt.Println(err)
	// Output: annuaire: no extraction loaded yet
}

// Generate a realistic synthetic extraction, for tests and demonstrations.
func Example_generated() {
	var b bytes.Buffer
	annuairetest.WriteExtraction(&b, 1000, 1)
	x, _ := annuaire.Load(&b, nil)
	fmt.Println(x.Len(), "BALs")
	// Output: 1000 BALs
}
