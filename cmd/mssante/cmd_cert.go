package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/transport"
)

const certUsage = `inspect [--password P] [--json] FILE...
       mssante cert check [--warn 90d] [--password P] [--json] FILE...
       mssante cert crl refresh --config FILE

inspect prints each certificate of each FILE: subject and issuer in liste blanche DN form,
validity, days left and the IGC-Santé profile it looks like. check exits 1 when a certificate is
expired or expires within the --warn window. FILE may be PEM, DER, a PKCS#7 bundle (.p7b) or
PKCS#12 (.p12/.pfx, with --password).

crl refresh fetches the CRLs of a configuration now: through the running "mssante serve" of its
spool (as "mssante reload" does), or, when none runs, into its CRL cache for the next start;
it prints the CRL held for each CA and exits 1 when a fetch was refused.

With --json, one JSON object a line per certificate instead of text:
  {"file":…,"index":1,"subject":…,"issuer":…,"serial":…,"not_before":…,"not_after":…,
   "days_left":…,"profile":…,"san":["DNS:…"],"key":…,"sha256":…,"status":…}
(times RFC 3339; days_left negative once expired; status, from check only: "ok", "renew",
"expired" or "not yet valid").`

func runCert(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "crl" {
		return runCertCRL(ctx, e, args[1:])
	}
	if len(args) == 0 || (args[0] != "inspect" && args[0] != "check") {
		fs := newFlagSet(e, "cert", certUsage)
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitCode(2, nil)
	}
	sub := args[0]
	fs := newFlagSet(e, "cert "+sub, "[options] FILE...")
	password := fs.String("password", "", "password of PKCS#12 files")
	asJSON := fs.Bool("json", false, "print one JSON object a line per certificate (fields in \"mssante cert --help\")")
	warnFlag := "0d"
	if sub == "check" {
		fs.StringVar(&warnFlag, "warn", "90d", "warn when a certificate expires within this delay (e.g. 90d, 36h)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() == 0 {
		return usageError(fs, "no FILE: give the certificate files to read")
	}
	warn, err := parseDays(warnFlag)
	if err != nil {
		return exitCode(2, fmt.Errorf("--warn: %w", err))
	}
	now := time.Now()
	failed := false
	for _, path := range fs.Args() {
		certs, err := readCertFile(path, *password)
		if err != nil {
			fmt.Fprintf(e.stderr, "mssante cert %s: %s: %v\n", sub, path, err)
			failed = true
			continue
		}
		for i, c := range certs {
			if sub == "inspect" {
				if *asJSON {
					jsonLine(e.stdout, certLine(path, i, c, now, ""))
				} else {
					printCert(e.stdout, path, i, len(certs), c, now)
				}
				continue
			}
			status := "OK"
			switch left := c.NotAfter.Sub(now); {
			case now.Before(c.NotBefore):
				status, failed = "NOT YET VALID", true
			case left < 0:
				status, failed = "EXPIRED", true
			case left < warn:
				status, failed = "RENEW", true
			}
			if *asJSON {
				jsonLine(e.stdout, certLine(path, i, c, now, strings.ToLower(status)))
				continue
			}
			fmt.Fprintf(e.stdout, "%-13s %s  %s  expires %s (%s)\n", status, path, transport.SubjectDN(c),
				c.NotAfter.UTC().Format(time.DateOnly), daysLeft(c, now))
		}
	}
	if failed {
		return exitCode(1, nil)
	}
	return nil
}

// parseDays reads a delay as a Go duration or a number of days ("90d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad delay %q (want e.g. 90d or 36h)", s)
	}
	return d, nil
}

// maxCertFile bounds what cert reads from one file.
const maxCertFile = 16 << 20

func readCertFile(path, password string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCertFile)
	}
	certs, err := transport.ParseCertificates(data)
	if err == nil {
		return certs, nil
	}
	_, leaf, chain, p12err := transport.ParsePKCS12(data, password)
	if p12err != nil {
		lower := strings.ToLower(path)
		if strings.HasSuffix(lower, ".p12") || strings.HasSuffix(lower, ".pfx") {
			return nil, p12err
		}
		return nil, err
	}
	if leaf != nil {
		return append([]*x509.Certificate{leaf}, chain...), nil
	}
	return chain, nil
}

func daysLeft(c *x509.Certificate, now time.Time) string {
	if now.Before(c.NotBefore) {
		return fmt.Sprintf("not valid before %s", c.NotBefore.UTC().Format(time.DateOnly))
	}
	d := int(c.NotAfter.Sub(now).Hours() / 24)
	if c.NotAfter.Before(now) {
		return fmt.Sprintf("expired %d days ago", -d)
	}
	return fmt.Sprintf("%d days left", d)
}

// certJSON is the --json line of one certificate.
type certJSON struct {
	File      string   `json:"file"`
	Index     int      `json:"index"` // 1 for the first certificate of the file
	Subject   string   `json:"subject"`
	Issuer    string   `json:"issuer"`
	Serial    string   `json:"serial"`
	NotBefore string   `json:"not_before"`
	NotAfter  string   `json:"not_after"`
	DaysLeft  int      `json:"days_left"`
	Profile   string   `json:"profile"`
	SAN       []string `json:"san,omitempty"`
	Key       string   `json:"key"`
	SHA256    string   `json:"sha256"`
	Status    string   `json:"status,omitempty"`
}

func certLine(path string, i int, c *x509.Certificate, now time.Time, status string) certJSON {
	return certJSON{File: path, Index: i + 1, Subject: transport.SubjectDN(c), Issuer: issuerDN(c),
		Serial: fmt.Sprintf("%X", c.SerialNumber), NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter: c.NotAfter.UTC().Format(time.RFC3339), DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24),
		Profile: certProfile(c), SAN: certSANs(c), Key: keyDesc(c), SHA256: fmt.Sprintf("%X", sha256.Sum256(c.Raw)), Status: status}
}

// certSANs lists the subject alternative names as "DNS:…", "email:…", "IP:…".
func certSANs(c *x509.Certificate) []string {
	var sans []string
	for _, d := range c.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, m := range c.EmailAddresses {
		sans = append(sans, "email:"+m)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	return sans
}

func printCert(w io.Writer, path string, i, n int, c *x509.Certificate, now time.Time) {
	if n > 1 {
		fmt.Fprintf(w, "%s [%d/%d]\n", path, i+1, n)
	} else {
		fmt.Fprintf(w, "%s\n", path)
	}
	fmt.Fprintf(w, "  subject:  %s\n", transport.SubjectDN(c))
	fmt.Fprintf(w, "  issuer:   %s\n", issuerDN(c))
	fmt.Fprintf(w, "  serial:   %X\n", c.SerialNumber)
	fmt.Fprintf(w, "  valid:    %s to %s (%s)\n", c.NotBefore.UTC().Format(time.DateOnly),
		c.NotAfter.UTC().Format(time.DateOnly), daysLeft(c, now))
	fmt.Fprintf(w, "  profile:  %s\n", certProfile(c))
	if sans := certSANs(c); len(sans) > 0 {
		fmt.Fprintf(w, "  SAN:      %s\n", strings.Join(sans, ", "))
	}
	fmt.Fprintf(w, "  key:      %s\n", keyDesc(c))
	fmt.Fprintf(w, "  sha256:   %X\n", sha256.Sum256(c.Raw))
}

// issuerDN renders the issuer in whitelist form, as SubjectDN renders subjects.
func issuerDN(c *x509.Certificate) string {
	return transport.SubjectDN(&x509.Certificate{Subject: c.Issuer})
}

func keyDesc(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case interface{ Size() int }:
		return fmt.Sprintf("%s %d bits", c.PublicKeyAlgorithm, k.Size()*8)
	default:
		return c.PublicKeyAlgorithm.String()
	}
}

// certProfile names the IGC-Santé offer (ORG, SERV, …) a certificate looks like, from
// its CA flag and extended key usages.
func certProfile(c *x509.Certificate) string {
	if c.IsCA {
		if string(c.RawSubject) == string(c.RawIssuer) {
			return "root CA"
		}
		return "intermediate CA"
	}
	has := func(u x509.ExtKeyUsage) bool {
		for _, e := range c.ExtKeyUsage {
			if e == u || e == x509.ExtKeyUsageAny {
				return true
			}
		}
		return false
	}
	switch {
	case has(x509.ExtKeyUsageServerAuth):
		return "SERV/SSL_SERV (server or relay: serverAuth)"
	case has(x509.ExtKeyUsageClientAuth):
		return "ORG/AUTH_CLI (client authentication, e.g. a BAL applicative)"
	case has(x509.ExtKeyUsageEmailProtection) && c.KeyUsage&x509.KeyUsageContentCommitment != 0:
		return "ORG/SIGN (signature)"
	case has(x509.ExtKeyUsageEmailProtection):
		return "S/MIME or CONF (emailProtection)"
	}
	return "unknown (no IGC-Santé usage recognised)"
}
