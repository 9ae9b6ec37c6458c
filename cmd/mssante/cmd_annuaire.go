package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport"
)

const annuaireUsage = `search --source SRC [criteria] [--json]
       mssante annuaire fetch [--dir D] [--url U] [--ca F]
       mssante annuaire export-ldif [--base-dn DN] [--base-entry] [--out F] EXTRACTION
       mssante annuaire schema [--ldif]

search finds BALs in the Annuaire Santé and prints a table (or JSON lines with --json).
SRC is one of:
  extraction:FILE    the daily file Extraction_Correspondance_MSSante (.zip or .txt)
  ldap://HOST[:PORT], ldaps://HOST[:PORT]
                     an LDAP directory with the default schema ("mssante annuaire schema");
                     --bind-dn and the password in the variable named by --password-env,
                     or --external (SASL EXTERNAL with --cert/--key); --starttls; --ca
  fhir[:BASE]        the ANS FHIR API; the key is read from $ESANTE_API_KEY
                     (or the variable named by --api-key-env)
fetch downloads the current extraction into --dir (skipped when already there) with a
progress bar on stderr, and prints its path. The server is checked against the IGC-Santé root
(or --ca). export-ldif writes the extraction as LDIF for the default schema, so that a
structure can load it into its own OpenLDAP (slapadd -l, or ldapadd) every night.
schema prints the default LDAP schema (slapd.conf include format, or cn=config LDIF).
search exits 1 when nothing is found, 2 on a bad query.` + annuaireReconcileUsage

func runAnnuaire(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "Usage: mssante annuaire %s\n", annuaireUsage)
		return exitCode(2, nil)
	}
	switch args[0] {
	case "search":
		return annuaireSearch(ctx, e, args[1:])
	case "fetch":
		return annuaireFetch(ctx, e, args[1:])
	case "reconcile":
		return annuaireReconcile(ctx, e, args[1:])
	case "publish":
		return annuairePublish(ctx, e, args[1:])
	case "export-ldif":
		return annuaireExportLDIF(e, args[1:])
	case "schema":
		if len(args) > 1 && args[1] == "--ldif" {
			_, err := io.WriteString(e.stdout, annuaire.SchemaLDIF())
			return err
		}
		_, err := io.WriteString(e.stdout, annuaire.Schema())
		return err
	case "-h", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage: mssante annuaire %s\n", annuaireUsage)
		return nil
	}
	fmt.Fprintf(e.stderr, "Usage: mssante annuaire %s\n", annuaireUsage)
	return exitCode(2, fmt.Errorf("unknown subcommand %q", args[0]))
}

// tlsFlags are the TLS options shared by the network sources.
type tlsFlags struct{ ca, cert, key string }

func (t *tlsFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&t.ca, "ca", "", "PEM/DER/p7b file of the CA certificates to trust (default: the IGC-Santé root for fetch, the system roots otherwise)")
	fs.StringVar(&t.cert, "cert", "", "client certificate (PEM) for LDAP SASL EXTERNAL")
	fs.StringVar(&t.key, "key", "", "private key (PEM) of --cert")
}

// config returns the TLS configuration the flags describe; igcSante makes the IGC-Santé root
// the default trust.
func (t *tlsFlags) config(igcSante bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case t.ca != "":
		b, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, err
		}
		certs, err := transport.ParseCertificates(b)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		for _, cert := range certs {
			c.RootCAs.AddCert(cert)
		}
	case igcSante:
		c.RootCAs = x509.NewCertPool()
		c.RootCAs.AddCert(transport.IGCSanteRoot())
	}
	if t.cert != "" || t.key != "" {
		pair, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func annuaireSearch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "annuaire search", "--source SRC [criteria] [--json]")
	var q annuaire.Query
	var source, typ, bindDN, passwordEnv, apiKeyEnv, baseDN string
	var asJSON, startTLS, external, scanRoles, noIterate bool
	var timeout time.Duration
	var tf tlsFlags
	fs.StringVar(&source, "source", "", "extraction:FILE, ldap://…, ldaps://… or fhir[:BASE] (required)")
	fs.StringVar(&q.Address, "address", "", "exact BAL address")
	fs.StringVar(&q.Name, "name", "", "name prefix (case and accents ignored)")
	fs.StringVar(&q.RPPS, "rpps", "", "RPPS number (11 digits)")
	fs.StringVar(&q.NationalID, "idnat", "", "national identifier (8+RPPS, 0+ADELI)")
	fs.StringVar(&q.StructureID, "structure", "", "structure identifier (FINESS, SIRET…)")
	fs.StringVar(&q.StructureIDType, "structure-type", "", "FINESS, SIRET, SIREN…")
	fs.StringVar(&q.PostalCode, "postal-code", "", "postal code")
	fs.StringVar(&q.Departement, "departement", "", "département (e.g. 33, 2A, 974)")
	fs.StringVar(&q.Profession, "profession", "", "profession code (10 médecin, 21 pharmacien…)")
	fs.StringVar(&typ, "type", "", "BAL type: PER, ORG, APP or CAB")
	fs.IntVar(&q.Limit, "limit", 20, "most results")
	fs.StringVar(&q.Cursor, "cursor", "", "continue after a previous page (printed on stderr)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object a line")
	fs.StringVar(&bindDN, "bind-dn", "", "LDAP: DN for a simple bind")
	fs.StringVar(&passwordEnv, "password-env", "", "LDAP: name of the environment variable holding the bind password")
	fs.BoolVar(&startTLS, "starttls", false, "LDAP: StartTLS on ldap://")
	fs.BoolVar(&external, "external", false, "LDAP: SASL EXTERNAL bind with --cert/--key")
	fs.StringVar(&baseDN, "base-dn", "", "LDAP: search base (default dc=mssante,dc=fr)")
	fs.StringVar(&apiKeyEnv, "api-key-env", "ESANTE_API_KEY", "FHIR: name of the environment variable holding the API key")
	fs.BoolVar(&scanRoles, "fhir-scan-roles", false, "FHIR: filter PractitionerRoles by profession on the client instead of sending role= (for a server that does not index it)")
	fs.BoolVar(&noIterate, "fhir-no-include-iterate", false, "FHIR: do not send _include:iterate on name searches (for a server that refuses it)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "FHIR: bound of each HTTP request")
	tf.add(fs)
	if err := fs.Parse(args); err != nil {
		return exitCode(2, nil)
	}
	if source == "" || fs.NArg() != 0 {
		return usageError(fs, "--source is required (extraction:FILE, ldap://…, ldaps://… or fhir), and no argument is expected")
	}
	q.Type = annuaire.BALType(strings.ToUpper(typ))
	var dir annuaire.Directory
	switch {
	case strings.HasPrefix(source, "extraction:"):
		x, err := annuaire.LoadFile(strings.TrimPrefix(source, "extraction:"), nil)
		if err != nil {
			return err
		}
		skippedNote(e.stderr, x)
		dir = x
	case strings.HasPrefix(source, "ldap://"), strings.HasPrefix(source, "ldaps://"):
		tc, err := tf.config(false)
		if err != nil {
			return err
		}
		o := annuaire.LDAPOptions{URL: source, StartTLS: startTLS, TLSConfig: tc, BindDN: bindDN, ExternalBind: external}
		if passwordEnv != "" {
			o.Password = os.Getenv(passwordEnv)
		}
		if baseDN != "" {
			o.Profile = annuaire.DefaultProfile()
			o.Profile.BaseDN = baseDN
		}
		l, err := annuaire.NewLDAP(&o)
		if err != nil {
			return err
		}
		defer l.Close()
		dir = l
	case source == "fhir", strings.HasPrefix(source, "fhir:"):
		tc, err := tf.config(false)
		if err != nil {
			return err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		f, err := annuaire.NewFHIR(&annuaire.FHIROptions{BaseURL: strings.TrimPrefix(strings.TrimPrefix(source, "fhir"), ":"),
			APIKey: os.Getenv(apiKeyEnv), HTTPClient: &http.Client{Transport: tr, Timeout: timeout},
			ScanRolesForProfession: scanRoles, NoIncludeIterate: noIterate})
		if err != nil {
			return err
		}
		dir = f
	default:
		return exitCode(2, fmt.Errorf("unknown source %q: extraction:FILE, ldap://…, ldaps://… or fhir", source))
	}
	r, err := dir.Search(ctx, q)
	if errors.Is(err, annuaire.ErrInvalidQuery) || errors.Is(err, annuaire.ErrUnsupported) {
		return exitCode(2, err)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, en := range r.Entries {
			if err := enc.Encode(en); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tADDRESS\tNAME\tID\tSTRUCTURE\tPOSTAL CODE")
		for _, en := range r.Entries {
			name := strings.TrimSpace(en.Person.LastName + " " + en.Person.FirstName)
			if name == "" {
				name = en.Structure.Name
			}
			id := en.Person.NationalID
			structure := strings.TrimSpace(en.Structure.IDType + " " + en.Structure.ID)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", en.Type, en.Address, name, id, structure, en.Postal.PostalCode)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.Next != "" {
		fmt.Fprintf(e.stderr, "more results: --cursor %s\n", r.Next)
	}
	if len(r.Entries) == 0 {
		return exitCode(1, nil)
	}
	return nil
}

func annuaireFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "annuaire fetch", "[--dir D] [--url U] [--ca F]")
	dir := fs.String("dir", ".", "folder of the downloaded files")
	u := fs.String("url", annuaire.DefaultExtractionURL, "where the extraction is published")
	quiet := fs.Bool("quiet", false, "no progress bar")
	var tf tlsFlags
	tf.add(fs)
	if err := fs.Parse(args); err != nil {
		return exitCode(2, nil)
	}
	tc, err := tf.config(true)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	opts := &annuaire.FetchOptions{URL: *u, HTTPClient: &http.Client{Transport: tr}}
	if !*quiet {
		opts.Progress = progressBar(e.stderr)
	}
	path, fresh, err := annuaire.Fetch(ctx, *dir, opts)
	if err != nil {
		return err
	}
	if fresh && !*quiet {
		fmt.Fprintln(e.stderr)
	}
	if !fresh {
		fmt.Fprintf(e.stderr, "already up to date\n")
	}
	fmt.Fprintln(e.stdout, path)
	return nil
}

// progressBar draws "[#####     ]  12.3/20.0 MB  61%" on w, redrawn in place.
func progressBar(w io.Writer) func(done, total int64) {
	last := -1
	return func(done, total int64) {
		const width = 30
		mb := float64(done) / 1e6
		if total <= 0 {
			if n := int(mb); n != last {
				last = n
				fmt.Fprintf(w, "\r%8.1f MB", mb)
			}
			return
		}
		pct := int(done * 100 / total)
		if pct == last {
			return
		}
		last = pct
		bar := strings.Repeat("#", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
		fmt.Fprintf(w, "\r[%s] %6.1f/%.1f MB %3d%%", bar, mb, float64(total)/1e6, pct)
	}
}

func annuaireExportLDIF(e *env, args []string) error {
	fs := newFlagSet(e, "annuaire export-ldif", "[--base-dn DN] [--base-entry] [--out F] EXTRACTION")
	baseDN := fs.String("base-dn", "dc=mssante,dc=fr", "where the BAL entries go")
	baseEntry := fs.Bool("base-entry", false, "also write the base entry (for an empty directory)")
	out := fs.String("out", "", "output file (default stdout)")
	if err := fs.Parse(args); err != nil {
		return exitCode(2, nil)
	}
	if fs.NArg() != 1 {
		return usageError(fs, "one extraction file expected")
	}
	in, err := annuaire.OpenFile(fs.Arg(0))
	if err != nil {
		return err
	}
	defer in.Close()
	w := e.stdout
	var f *os.File
	if *out != "" {
		if f, err = os.Create(*out); err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	p := annuaire.DefaultProfile()
	p.BaseDN = *baseDN
	n, err := annuaire.WriteLDIF(w, in, &annuaire.LDIFOptions{Profile: p, BaseEntry: *baseEntry})
	if err != nil {
		return err
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "%d entries\n", n)
	return nil
}
