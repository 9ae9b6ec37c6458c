package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

const whitelistUsage = `verify [options] FILE
       mssante whitelist lookup DOMAIN (--file F | --url U) [--json] [options]
       mssante whitelist fetch --out F [--url U] [options]
       mssante whitelist sign --key KEY.pem --cert CERT.pem [--generated TIME] [--out F] [ENTRIES.tsv]

verify checks the signature and signer of a liste blanche and prints
"ok: <entries> entries, <domains> domains, generated <time>", or exits 1 with the reason.
lookup verifies the list the same way, then prints the operator DNs of DOMAIN, or exits 1 when
it is not listed (with --json, one line {"domain":…,"operator_dn":…} per DN). fetch downloads the list over HTTPS (server checked against IGC-Santé),
verifies it and writes it to --out. sign writes a list signed in the ANS profile (for tests and
the dev sandbox) from lines "domain<TAB>operator DN[<TAB>description]" (stdin when no file).

Trust: with neither --roots nor --pin, the signer must be the certificate that signed the lists
of 2023-2026 (CN=alb.mssante.fr, pinned, valid 2023-08-23 to 2026-08-23: use --at or
--list-date for those lists). --roots adds a chain check to IGC-Santé roots (give the
intermediate with --intermediates); --pin pins another certificate.
--at takes RFC 3339 (2025-03-01T00:00:00Z) or a plain date (2025-03-01).`

func runWhitelist(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(context.Context, *env, []string) error{
		"verify": whitelistVerify, "lookup": whitelistLookup, "fetch": whitelistFetch, "sign": whitelistSign,
	}
	if len(args) == 0 || subs[args[0]] == nil {
		newFlagSet(e, "whitelist", whitelistUsage).Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitCode(2, nil)
	}
	return subs[args[0]](ctx, e, args[1:])
}

// parseInterspersed parses flags placed before, between or after the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, exitCode(2, nil)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// trustFlags are the verification options every subcommand shares.
type trustFlags struct {
	at, signer, roots, inters, pin, ca string
	listDate                           bool
}

func (t *trustFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.at, "at", "", "verify the signer certificate at this time (RFC 3339 or YYYY-MM-DD; default now)")
	fs.BoolVar(&t.listDate, "list-date", false, "verify the signer certificate at the list's own DateDeGeneration")
	fs.StringVar(&t.signer, "signer", "", "expected subject DN of the signer (default "+whitelist.DefaultSigner+")")
	fs.StringVar(&t.roots, "roots", "", "PEM/DER/p7b file of trusted roots for the signer chain")
	fs.StringVar(&t.inters, "intermediates", "", "PEM/DER/p7b file of intermediate CAs for the signer chain")
	fs.StringVar(&t.pin, "pin", "", "PEM/DER file of the signer certificate to pin")
	fs.StringVar(&t.ca, "ca", "", "PEM/DER/p7b roots for the HTTPS server of --url (default: the IGC-Santé root)")
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("bad time %q: use RFC 3339 (2025-03-01T00:00:00Z) or a date (2025-03-01)", s)
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return transport.ParseCertificates(b)
}

func certPool(path string) (*x509.CertPool, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

func (t *trustFlags) options() (*whitelist.VerifyOptions, error) {
	o := &whitelist.VerifyOptions{Signer: t.signer, UseListDate: t.listDate}
	if t.at != "" {
		at, err := parseTime(t.at)
		if err != nil {
			return nil, err
		}
		o.At = func() time.Time { return at }
	}
	var err error
	if t.roots != "" {
		if o.Roots, err = certPool(t.roots); err != nil {
			return nil, err
		}
	}
	if t.inters != "" {
		if o.Intermediates, err = certPool(t.inters); err != nil {
			return nil, err
		}
	}
	switch {
	case t.pin != "":
		certs, err := readCerts(t.pin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.pin, err)
		}
		o.PinnedSigner = certs[0]
	case o.Roots == nil:
		o.PinnedSigner = whitelist.DefaultSignerCertificate()
	}
	return o, nil
}

// client is the HTTPS client for --url: TLS 1.2 at least, server checked against --ca or the
// IGC-Santé root.
func (t *trustFlags) client() (*http.Client, error) {
	pool := x509.NewCertPool()
	if t.ca != "" {
		var err error
		if pool, err = certPool(t.ca); err != nil {
			return nil, err
		}
	} else {
		pool.AddCert(transport.IGCSanteRoot())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}

func summary(l *whitelist.List) string {
	n, d := l.Len()
	return fmt.Sprintf("ok: %d entries, %d domains, generated %s", n, d, l.Generated().Format(time.RFC3339))
}

func whitelistVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "whitelist verify", "[options] FILE")
	var tf trustFlags
	tf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitCode(2, nil)
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	l, err := verifyFile(pos[0], opts)
	if err != nil {
		return signerHint(pos[0], &tf, err)
	}
	fmt.Fprintln(e.stdout, summary(l))
	return nil
}

func verifyFile(path string, opts *whitelist.VerifyOptions) (*whitelist.List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return whitelist.Verify(f, opts)
}

// fetchList downloads, verifies and (when out is set) persists the list of url.
func fetchList(ctx context.Context, tf *trustFlags, url, out string) (*whitelist.List, error) {
	opts, err := tf.options()
	if err != nil {
		return nil, err
	}
	client, err := tf.client()
	if err != nil {
		return nil, err
	}
	if out != "" {
		if out, err = filepath.Abs(out); err != nil {
			return nil, err
		}
	}
	st, err := whitelist.NewStore(&whitelist.StoreOptions{URL: url, Client: client, Verify: *opts, CacheFile: out})
	if err != nil {
		return nil, err
	}
	if err := st.Refresh(ctx); err != nil {
		return nil, err
	}
	return st.List(), nil
}

func whitelistLookup(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "whitelist lookup", "DOMAIN (--file F | --url U) [--json] [options]")
	asJSON := fs.Bool("json", false, `print one JSON object a line: {"domain":…,"operator_dn":…}`)
	var tf trustFlags
	tf.register(fs)
	file := fs.String("file", "", "liste blanche file")
	url := fs.String("url", "", "liste blanche URL (https; "+whitelist.DefaultURL+")")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (*file == "") == (*url == "") {
		fs.Usage()
		return exitCode(2, nil)
	}
	var l *whitelist.List
	if *file != "" {
		var opts *whitelist.VerifyOptions
		if opts, err = tf.options(); err != nil {
			return err
		}
		if l, err = verifyFile(*file, opts); err != nil {
			err = signerHint(*file, &tf, err)
		}
	} else {
		l, err = fetchList(ctx, &tf, *url, "")
	}
	if err != nil {
		return err
	}
	entries, ok := l.Lookup(pos[0])
	if !ok {
		return fmt.Errorf("%s: %w", pos[0], whitelist.ErrDomainNotListed)
	}
	seen := map[string]bool{}
	for _, en := range entries {
		for _, dn := range en.OperatorDNs {
			if !seen[dn] {
				seen[dn] = true
				if *asJSON {
					jsonLine(e.stdout, struct {
						Domain     string `json:"domain"`
						OperatorDN string `json:"operator_dn"`
					}{pos[0], dn})
				} else {
					fmt.Fprintln(e.stdout, dn)
				}
			}
		}
	}
	return nil
}

func whitelistFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "whitelist fetch", "--out F [--url U] [options]")
	var tf trustFlags
	tf.register(fs)
	out := fs.String("out", "", "where to write the verified list")
	url := fs.String("url", whitelist.DefaultURL, "liste blanche URL (https)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *out == "" {
		fs.Usage()
		return exitCode(2, nil)
	}
	l, err := fetchList(ctx, &tf, *url, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s, written to %s\n", summary(l), *out)
	return nil
}

func whitelistSign(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "whitelist sign", "--key KEY.pem --cert CERT.pem [--generated TIME] [--out F] [ENTRIES.tsv]")
	keyPath := fs.String("key", "", "PEM private key of the signer (RSA)")
	certPath := fs.String("cert", "", "PEM signer certificate, then its intermediates")
	gen := fs.String("generated", "", "DateDeGeneration (RFC 3339 or date; default now)")
	out := fs.String("out", "", "output file (default stdout)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || *keyPath == "" || *certPath == "" {
		fs.Usage()
		return exitCode(2, nil)
	}
	key, err := readKey(*keyPath)
	if err != nil {
		return err
	}
	chain, err := readCerts(*certPath)
	if err != nil {
		return fmt.Errorf("%s: %w", *certPath, err)
	}
	generated := time.Now().UTC().Truncate(time.Second)
	if *gen != "" {
		if generated, err = parseTime(*gen); err != nil {
			return err
		}
	}
	in := e.stdin
	if len(pos) == 1 {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	entries, err := readEntries(in)
	if err != nil {
		return err
	}
	doc, err := whitelist.Sign(whitelist.NewList(generated, entries), key, chain)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = e.stdout.Write(doc)
		return err
	}
	return os.WriteFile(*out, doc, 0o644)
}

// readEntries reads "domain<TAB>operator DN[<TAB>description]" lines; # starts a comment.
func readEntries(r io.Reader) ([]whitelist.Entry, error) {
	var entries []whitelist.Entry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("line %d: want domain<TAB>operator DN[<TAB>description]", n)
		}
		if _, err := whitelist.NormalizeDomain(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := whitelist.CanonicalDN(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		en := whitelist.Entry{Domain: f[0], OperatorDNs: []string{f[1]}, Updated: time.Now().UTC().Truncate(time.Second)}
		if len(f) == 3 {
			en.Description = f[2]
		}
		entries = append(entries, en)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no entries")
	}
	return entries, nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no private key", path)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key", path)
		}
		return s, nil
	}
}
