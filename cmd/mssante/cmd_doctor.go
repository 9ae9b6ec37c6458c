package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/whitelist"
)

const doctorUsage = `--domain DOMAIN | --connect [SERVICE://]HOST:PORT… [--sandbox DIR | options] [--json]

Runs the integration checklist of an MSSanté domain and prints, for each check, ok, warn or
fail with the fix:
  - the MX records of the domain and the addresses (A/AAAA) of each MX host;
  - on each MX host, port 25 answers SMTP with STARTTLS, TLS 1.2 (Réf. #2 suites), a server
    certificate that chains to IGC-Santé, names the host and is not near expiry (--warn-days);
    TLS 1.1 and older are refused;
  - the domain is on the liste blanche, and the DN of the certificate its MX presents (and of
    --cert, our own) is listed for it;
  - the submission (587 STARTTLS, 465) and IMAPS (993) ports of the first MX host answer with
    the same TLS, when they are there.
With --sandbox, the domain is checked in the trust space of "mssante dev" (its addresses, test
PKI and liste blanche) instead of DNS and the ANS; a domain of that trust space
(*.dev.mssante.fr) is checked there by default, in the default sandbox folder of "mssante
dev". --state is the old name of --sandbox.

With --connect, no DNS is used: each endpoint given (repeat the flag) gets the TLS checks of
an MX host (STARTTLS or implicit TLS, TLS 1.2 and the Réf. #2 suites, the certificate chain,
CRLs, expiry, the name --host or else HOST, TLS 1.1 refused), and, with --cert, the
certificate it presents must be that one. This tests a connector before its DNS records are
published or the ANS lists it. SERVICE is smtp (STARTTLS), submission (STARTTLS),
submissions (implicit TLS), imap (STARTTLS) or imaps (implicit TLS); without it the port
says which (25, 587, 465, 143, 993). --domain is then optional: given, the liste blanche
checks run on the certificates presented. A port that does not answer is a failure.

Files that hold keys, passwords or messages must be open to their owner only (files 0600,
folders 0700): doctor warns about any that group or others can reach, in the sandbox folder
(certificates and the liste blanche apart) and, with --config, in the key file, spool, mailbox
store, Maildir and audit folder of that "mssante serve" configuration. Exits 1 when a check
fails.

With --extraction and --store (or --config: the store its node opens, SQLite or PostgreSQL),
one more line reconciles the BALs of that mailbox store with the extraction (counts per verdict, the liste rouge BALs left out; "mssante annuaire
reconcile" lists them): warn when one is missing, stale or different.

With --json, one JSON object a line per check instead of text:
  {"status":"ok"|"warn"|"fail","check":…,"detail":…,"fix":…} (fix only when not ok)`

// doctorStatus is the outcome of one check.
type doctorStatus string

const (
	doctorOK   doctorStatus = "ok"
	doctorWarn doctorStatus = "warn"
	doctorFail doctorStatus = "fail"
)

type doctorCheck struct {
	Status       doctorStatus
	Name, Detail string
	Fix          string
}

// doctorResolver finds the MX hosts of a domain and their addresses; *net.Resolver is one.
type doctorResolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// doctorConfig is what the checks run against; every source is injectable.
type doctorConfig struct {
	Domain   string
	Resolver doctorResolver
	// Addr returns the address to dial for service ("smtp", "submission", "submissions",
	// "imaps") on host at ip.
	Addr func(host, ip, service string) string
	// List returns the verified liste blanche.
	List func(ctx context.Context) (*whitelist.List, error)
	// Trust verifies the servers' certificates.
	Trust *transport.TrustStore
	// Private are the files and folders open to their owner only (see doctorModes).
	Private []privatePath
	// Ours is our own certificate (optional): its DN must be listed for Domain.
	Ours *x509.Certificate
	// Client is the client certificate presented to the servers (optional).
	Client []tls.Certificate
	// Connect, when set, replaces the DNS lookups: the endpoints to probe.
	Connect    []doctorEndpoint
	Now        func() time.Time
	WarnWithin time.Duration
	Timeout    time.Duration
}

var doctorPorts = map[string]string{"smtp": "25", "submission": "587", "submissions": "465", "imap": "143", "imaps": "993"}

// doctorEndpoint is one endpoint of --connect: Addr is dialled for Service, and the server's
// certificate must name Host.
type doctorEndpoint struct {
	Service, Addr, Host string
}

// parseEndpoint reads [SERVICE://]HOST:PORT; without SERVICE, the port must be a well-known
// one. host, when not empty, is the name the certificate must carry instead of HOST.
func parseEndpoint(s, host string) (doctorEndpoint, error) {
	svc, hp, ok := strings.Cut(s, "://")
	if !ok {
		svc, hp = "", s
	}
	h, port, err := net.SplitHostPort(hp)
	if err != nil || h == "" || port == "" {
		return doctorEndpoint{}, fmt.Errorf("--connect %q: want [SERVICE://]HOST:PORT", s)
	}
	if svc == "" {
		for name, p := range doctorPorts {
			if p == port {
				svc = name
			}
		}
		if svc == "" {
			return doctorEndpoint{}, fmt.Errorf("--connect %q: port %s is not a well-known one: say which service, e.g. smtp://%s", s, port, hp)
		}
	}
	if _, known := doctorPorts[svc]; !known {
		return doctorEndpoint{}, fmt.Errorf("--connect %q: unknown service %q (smtp, submission, submissions, imap, imaps)", s, svc)
	}
	if host == "" {
		host = h
	}
	return doctorEndpoint{Service: svc, Addr: hp, Host: host}, nil
}

func runDoctor(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "doctor", doctorUsage)
	domain := fs.String("domain", "", "the MSSanté mail domain to check (required without --connect)")
	var connect multiFlag
	fs.Var(&connect, "connect", "probe this endpoint, [SERVICE://]HOST:PORT, instead of looking up the MX (repeatable)")
	host := fs.String("host", "", "with --connect: the host name the certificates must carry (default: HOST)")
	state := new(string)
	sandboxFlags(fs, state, "state")
	asJSON := fs.Bool("json", false, "print one JSON object a line per check (fields above)")
	certFile := fs.String("cert", "", "our server certificate (PEM), whose DN must be listed for the domain")
	keyFile := fs.String("key", "", "its key, to present it as client certificate")
	serveConfig := fs.String("config", "", `an "mssante serve" configuration whose key file and data folders are checked`)
	serverCA := fs.String("server-ca", "", "extra CA certificates (PEM/DER/p7b) for the servers' chains, e.g. the IGC-Santé intermediates")
	crls := fs.String("crl", "", "comma-separated CRL files (DER/PEM) of the IGC-Santé CAs; without them revocation is not checked")
	wl := fs.String("whitelist", whitelist.DefaultURL, "liste blanche URL (https) or file")
	warnDays := fs.Int("warn-days", 90, "warn when a certificate expires within this many days")
	timeout := fs.Duration("timeout", 15*time.Second, "time allowed for each network check")
	balStore := fs.String("store", "", "with --extraction: the mailbox store (SQLite folder) whose BALs are reconciled with the Annuaire Santé (default: that of --config)")
	extraction := fs.String("extraction", "", "with --store or --config: today's extraction file (mssante annuaire fetch)")
	var tf trustFlags
	tf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if *domain == "" && len(connect) == 0 {
		return usageError(fs, "--domain is required, or --connect HOST:PORT: the MSSanté mail domain to check, or the endpoints to probe")
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected argument %q", pos[0])
	}
	if *state == "" && strings.HasSuffix(strings.ToLower(strings.TrimSuffix(*domain, ".")), ".dev.mssante.fr") {
		*state = defaultDevState()
	}
	cfg := &doctorConfig{Domain: *domain, Now: time.Now, WarnWithin: time.Duration(*warnDays) * 24 * time.Hour, Timeout: *timeout}
	for _, c := range connect {
		ep, err := parseEndpoint(c, *host)
		if err != nil {
			return usageError(fs, "%v", err)
		}
		cfg.Connect = append(cfg.Connect, ep)
	}
	if *state != "" {
		info, err := loadSandbox(*state)
		if err != nil {
			return err
		}
		if err := doctorSandbox(cfg, info); err != nil {
			return err
		}
		cfg.Private = append(cfg.Private, privatePath{info.Dir, sandboxPublic})
		if *wl != whitelist.DefaultURL {
			opts := &whitelist.VerifyOptions{Roots: cfg.Trust.Roots()}
			cfg.List = func(ctx context.Context) (*whitelist.List, error) {
				return doctorList(ctx, *wl, opts, cfg.Trust.Roots())
			}
		}
	} else {
		cfg.Resolver = net.DefaultResolver
		cfg.Addr = func(host, ip, service string) string { return net.JoinHostPort(ip, doctorPorts[service]) }
		trust, err := transport.LoadTrustStore(&transport.TrustOptions{Revocation: transport.RevocationBestEffort},
			[]string{*serverCA}, commaList(*crls))
		if err != nil {
			return err
		}
		cfg.Trust = trust
		cfg.List = func(ctx context.Context) (*whitelist.List, error) {
			if strings.HasPrefix(*wl, "https://") {
				return fetchList(ctx, &tf, *wl, "")
			}
			opts, err := tf.options()
			if err != nil {
				return nil, err
			}
			return verifyFile(*wl, opts)
		}
	}
	if *certFile != "" {
		b, err := os.ReadFile(*certFile)
		if err != nil {
			return err
		}
		certs, err := transport.ParseCertificates(b)
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("%s: no certificate: %v", *certFile, err)
		}
		cfg.Ours = certs[0]
		if *keyFile != "" {
			crt, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				return err
			}
			cfg.Client = []tls.Certificate{crt}
		}
	}
	if *serveConfig != "" {
		paths, err := servePrivatePaths(*serveConfig)
		if err != nil {
			return err
		}
		cfg.Private = append(cfg.Private, paths...)
	}
	checks := doctorRun(ctx, cfg)
	if *extraction != "" && (*balStore != "" || *serveConfig != "") {
		sel := &storeSel{dir: balStore, config: new(string)}
		if *balStore == "" {
			sel.config = serveConfig
		}
		checks = append(checks, doctorAnnuaire(ctx, sel, *extraction))
	}
	if *serveConfig != "" {
		checks = append(checks, doctorRevocation(ctx, *serveConfig, cfg.Now())...)
		w, err := serveConfigWarnings(*serveConfig)
		if err != nil {
			return err
		}
		checks = append(checks, w...)
	}
	var failed int
	if *asJSON {
		failed = doctorJSON(e.stdout, checks)
	} else {
		failed = doctorPrint(e.stdout, checks)
	}
	if failed > 0 {
		return exitCode(1, fmt.Errorf("%d check(s) failed", failed))
	}
	return nil
}

// doctorSandbox points cfg at the trust space of "mssante dev": its operators' addresses as
// DNS, its test PKI as trust, its liste blanche over HTTPS.
func doctorSandbox(cfg *doctorConfig, info *sandbox.Info) error {
	trust, err := info.Trust()
	if err != nil {
		return err
	}
	cfg.Trust = trust
	cfg.Resolver = sandboxResolver{info}
	cfg.Addr = func(host, ip, service string) string {
		for _, op := range info.Operators {
			if op.Hostname != host {
				continue
			}
			a := map[string]string{"smtp": op.Relay, "submission": op.Submission, "submissions": op.SubmissionTLS, "imaps": op.IMAPS}[service]
			_, port, _ := net.SplitHostPort(a)
			return net.JoinHostPort(ip, port)
		}
		return net.JoinHostPort(ip, doctorPorts[service])
	}
	opts := &whitelist.VerifyOptions{Roots: trust.Roots()}
	cfg.List = func(ctx context.Context) (*whitelist.List, error) {
		return doctorList(ctx, info.WhitelistURL, opts, trust.Roots())
	}
	return nil
}

// sandboxResolver answers for the domains of a sandbox as its DNS would: each domain has the
// MX of its operator, every MX host is on 127.0.0.1.
type sandboxResolver struct{ info *sandbox.Info }

func (r sandboxResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if op := r.info.Operator(strings.TrimSuffix(name, ".")); op != nil {
		return []*net.MX{{Host: op.Hostname + ".", Pref: 10}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r sandboxResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	for _, op := range r.info.Operators {
		if op.Hostname == strings.TrimSuffix(host, ".") {
			return []string{"127.0.0.1"}, nil
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// doctorList reads a liste blanche from an https URL (server checked against roots) or a file,
// and verifies it.
func doctorList(ctx context.Context, src string, opts *whitelist.VerifyOptions, roots *x509.CertPool) (*whitelist.List, error) {
	if !strings.HasPrefix(src, "https://") {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		return whitelist.VerifyBytes(b, opts)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", src, resp.Status)
	}
	return whitelist.Verify(resp.Body, opts)
}

// doctorJSONLine is the --json line of one check.
type doctorJSONLine struct {
	Status doctorStatus `json:"status"`
	Check  string       `json:"check"`
	Detail string       `json:"detail"`
	Fix    string       `json:"fix,omitempty"`
}

func doctorJSON(w io.Writer, checks []doctorCheck) (failed int) {
	for _, c := range checks {
		line := doctorJSONLine{c.Status, c.Name, c.Detail, c.Fix}
		if c.Status == doctorOK {
			line.Fix = ""
		}
		jsonLine(w, line)
		if c.Status == doctorFail {
			failed++
		}
	}
	return failed
}

func doctorPrint(w io.Writer, checks []doctorCheck) (failed int) {
	for _, c := range checks {
		fmt.Fprintf(w, "%-4s  %s: %s\n", c.Status, c.Name, c.Detail)
		if c.Fix != "" && c.Status != doctorOK {
			fmt.Fprintf(w, "      fix: %s\n", c.Fix)
		}
		if c.Status == doctorFail {
			failed++
		}
	}
	return failed
}

// doctorOut collects the checks in the order they ran.
type doctorOut []doctorCheck

func (o *doctorOut) add(s doctorStatus, name, detail, fix string) {
	*o = append(*o, doctorCheck{s, name, detail, fix})
}

// doctorRun runs every check of cfg.Domain, or of the endpoints of cfg.Connect.
func doctorRun(ctx context.Context, cfg *doctorConfig) []doctorCheck {
	var out doctorOut
	d := strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if len(cfg.Connect) > 0 {
		var presented []*x509.Certificate
		var whose []string
		for _, ep := range cfg.Connect {
			who := fmt.Sprintf("%s (%s)", ep.Host, ep.Addr)
			leaf := doctorProbe(ctx, cfg, &out, fmt.Sprintf("%s %s", ep.Service, who), who, ep)
			if leaf == nil {
				continue
			}
			presented, whose = append(presented, leaf), append(whose, who)
			if cfg.Ours != nil {
				if leaf.Equal(cfg.Ours) {
					out.add(doctorOK, "certificate of "+who+" is --cert", transport.SubjectDN(leaf), "")
				} else {
					out.add(doctorFail, "certificate of "+who+" is --cert", fmt.Sprintf("it presents %s (serial %x), not --cert",
						transport.SubjectDN(leaf), leaf.SerialNumber),
						"install the certificate in [tls] cert_file and reload (systemctl reload mssante)")
				}
			}
		}
		if d != "" {
			doctorListed(ctx, cfg, &out, d, presented, whose)
		}
	} else {
		doctorDNS(ctx, cfg, &out, d)
	}
	if cfg.Ours != nil {
		out = append(out, doctorExpiry("our certificate", cfg.Ours, cfg))
	}
	for _, p := range cfg.Private {
		if c, ok := doctorModes(p); ok {
			out = append(out, c)
		}
	}
	return out
}

// doctorProbe runs the TLS checks of one endpoint: the handshake with the Réf. #2 client
// configuration (line name), then, when the server presented a certificate, its validity
// period and the refusal of TLS 1.1 (lines about who). It returns that certificate.
func doctorProbe(ctx context.Context, cfg *doctorConfig, out *doctorOut, name, who string, ep doctorEndpoint) *x509.Certificate {
	leaf, cs, err := doctorDial(ctx, cfg, ep.Host, ep.Addr, ep.Service, nil)
	if err != nil {
		s, fix := doctorDiagnose(err, ep.Host)
		out.add(s, name, err.Error(), fix)
	} else {
		out.add(doctorOK, name, fmt.Sprintf("%s %s, certificate verified for %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), ep.Host), "")
	}
	if leaf == nil {
		return nil
	}
	*out = append(*out, doctorExpiry("certificate of "+who, leaf, cfg))
	old := &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	// The server accepted TLS 1.1 when the handshake succeeded or got as far as the
	// certificate check; a protocol refusal is what we want.
	got, _, err := doctorDial(ctx, cfg, ep.Host, ep.Addr, ep.Service, old)
	if err == nil || got != nil {
		out.add(doctorFail, "TLS 1.1 refused by "+who, "the server accepted TLS 1.1", "allow TLS 1.2 only (Réf. #2): in Postfix smtpd_tls_protocols = >=TLSv1.2")
	} else {
		out.add(doctorOK, "TLS 1.1 refused by "+who, "TLS 1.0 and 1.1 handshakes fail", "")
	}
	return leaf
}

// doctorDNS runs the checks of domain d found through DNS: its MX hosts and their addresses,
// port 25 of each, the liste blanche, and the other ports of the first MX host.
func doctorDNS(ctx context.Context, cfg *doctorConfig, out *doctorOut, d string) {
	var hosts []string
	lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	mxs, err := cfg.Resolver.LookupMX(lctx, d)
	cancel()
	switch {
	case err == nil && len(mxs) > 0:
		var names []string
		for _, mx := range mxs {
			h := strings.TrimSuffix(mx.Host, ".")
			hosts = append(hosts, h)
			names = append(names, fmt.Sprintf("%s (%d)", h, mx.Pref))
		}
		out.add(doctorOK, "MX "+d, strings.Join(names, ", "), "")
	default:
		hosts = []string{d}
		out.add(doctorWarn, "MX "+d, fmt.Sprintf("no MX record (%v): senders fall back to the A record of the domain", err),
			"publish an MX record naming the host of your connector's relay (port 25)")
	}
	var presented []*x509.Certificate
	var whose []string
	first, firstIP := "", ""
	for _, h := range hosts {
		lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		ips, err := cfg.Resolver.LookupHost(lctx, h)
		cancel()
		if err != nil || len(ips) == 0 {
			out.add(doctorFail, "A/AAAA "+h, fmt.Sprintf("no address: %v", err), "publish A (and AAAA) records for "+h)
			continue
		}
		out.add(doctorOK, "A/AAAA "+h, strings.Join(ips, ", "), "")
		addr := cfg.Addr(h, ips[0], "smtp")
		if first == "" {
			first, firstIP = h, ips[0]
		}
		ep := doctorEndpoint{Service: "smtp", Addr: addr, Host: h}
		if leaf := doctorProbe(ctx, cfg, out, fmt.Sprintf("SMTP STARTTLS %s (%s)", h, addr), h, ep); leaf != nil {
			presented, whose = append(presented, leaf), append(whose, h)
		}
	}
	doctorListed(ctx, cfg, out, d, presented, whose)

	// The other ports of the first MX host.
	if first != "" {
		for _, svc := range []string{"submission", "submissions", "imaps"} {
			addr := cfg.Addr(first, firstIP, svc)
			name := fmt.Sprintf("%s %s (%s)", svc, first, addr)
			_, cs, err := doctorDial(ctx, cfg, first, addr, svc, nil)
			var op *net.OpError
			switch {
			case err == nil:
				out.add(doctorOK, name, fmt.Sprintf("%s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite)), "")
			case errors.As(err, &op) && op.Op == "dial":
				out.add(doctorWarn, name, "not reachable: "+err.Error(), "fine if your BALs use another host; else open the port")
			default:
				s, fix := doctorDiagnose(err, first)
				out.add(s, name, err.Error(), fix)
			}
		}
	}
}

// doctorListed checks the liste blanche: d is listed, and so are the DNs of the certificates
// presented (whose[i] names who presented presented[i]) and of our own.
func doctorListed(ctx context.Context, cfg *doctorConfig, out *doctorOut, d string, presented []*x509.Certificate, whose []string) {
	lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	list, err := cfg.List(lctx)
	cancel()
	if err != nil {
		out.add(doctorFail, "liste blanche", err.Error(), "check the list source and how its signer is trusted (--roots with the IGC-Santé intermediates, or --pin; --list-date for a list signed before its signer expired); mssante whitelist verify shows the same")
		return
	}
	e, n := list.Len()
	out.add(doctorOK, "liste blanche", fmt.Sprintf("verified: %d entries, %d domains, generated %s", e, n, list.Generated().UTC().Format(time.RFC3339)), "")
	if err := list.CheckDomain(d); err != nil {
		out.add(doctorFail, d+" on the liste blanche", err.Error(),
			"ask the ANS (espace de confiance MSSanté) to list "+d+" with the DN of your connector's certificate")
		return
	}
	entries, _ := list.Lookup(d)
	var dns []string
	for _, en := range entries {
		dns = append(dns, en.OperatorDNs...)
	}
	out.add(doctorOK, d+" on the liste blanche", "listed for "+strings.Join(dns, " | "), "")
	check := func(what string, c *x509.Certificate) {
		dn := transport.SubjectDN(c)
		if err := list.CheckOperator(d, dn); err != nil {
			out.add(doctorFail, what+" DN listed for "+d, dn+" is not listed ("+err.Error()+")",
				"install the certificate whose DN the list names, or ask the ANS to list "+dn)
		} else {
			out.add(doctorOK, what+" DN listed for "+d, dn, "")
		}
	}
	for i, c := range presented {
		check("certificate of "+whose[i], c)
	}
	if cfg.Ours != nil {
		check("our certificate", cfg.Ours)
	}
}

// privatePath is a file or folder whose content must be open to its owner only, except the
// paths public reports as public documents.
type privatePath struct {
	path   string
	public func(path string) bool
}

// sandboxPublic reports the public documents of a sandbox folder: certificates and the liste
// blanche. Everything else there (keys, passwords, stores, spools, audit logs) is private.
func sandboxPublic(p string) bool {
	b := filepath.Base(p)
	return strings.HasSuffix(b, ".crt.pem") || b == "ca-chain.pem" || b == "crl.der" ||
		strings.HasPrefix(b, "whitelist-cache.xml") || b == "listeblanchemssante.xml"
}

// servePrivatePaths returns the paths of an "mssante serve" configuration that hold keys or
// messages: the TLS key, the spool, the mailbox store or Maildir, the audit log.
func servePrivatePaths(file string) ([]privatePath, error) {
	c, err := node.LoadConfigFile(file)
	if err != nil {
		return nil, err
	}
	var out []privatePath
	for _, p := range []string{c.TLS.KeyFile, c.SpoolDir, c.Mailbox.Dir, c.Local.Maildir, c.Audit.Dir} {
		if p != "" && (p != c.Local.Maildir || c.Mailbox.Dir == "") {
			out = append(out, privatePath{path: p})
		}
	}
	return out, nil
}

// doctorModes checks that the files under p are open to their owner only (0600, folders 0700,
// the top folder at least not writable by others): keys, password hashes, queued and stored
// messages and audit records are read by the connector alone. A path that does not exist is
// not checked.
func doctorModes(p privatePath) (doctorCheck, bool) {
	name := "file modes of " + p.path
	var n int
	var open []string
	err := filepath.WalkDir(p.path, func(path string, d fs.DirEntry, err error) error {
		var info fs.FileInfo
		if err == nil {
			info, err = d.Info()
		}
		if errors.Is(err, fs.ErrNotExist) && path != p.path {
			return nil // a temporary file of the running connector, gone since it was listed
		}
		if err != nil {
			return err
		}
		n++
		// The top folder may be another's (a /var/spool made by a package): others may
		// list it, never write to it; below it, everything is the connector's alone.
		closed := fs.FileMode(0o077)
		if path == p.path && d.IsDir() {
			closed = 0o022
		}
		if info.Mode().Perm()&closed != 0 && (p.public == nil || !p.public(path)) {
			open = append(open, fmt.Sprintf("%s (%04o)", path, info.Mode().Perm()))
		}
		return nil
	})
	switch {
	case errors.Is(err, fs.ErrNotExist) && n == 0:
		return doctorCheck{}, false
	case err != nil:
		return doctorCheck{doctorWarn, name, err.Error(), "run doctor as the user of the connector"}, true
	case len(open) > 0:
		k, more := len(open), ""
		if k > 3 {
			more = fmt.Sprintf(" and %d more", k-3)
			open = open[:3]
		}
		return doctorCheck{doctorWarn, name, fmt.Sprintf("%d of %d files and folders are open to group or others: %s%s",
			k, n, strings.Join(open, ", "), more),
			"chmod -R go= " + p.path + " (keys, passwords and messages are for the connector's user only)"}, true
	}
	return doctorCheck{doctorOK, name, fmt.Sprintf("%d files and folders, open to their owner only", n), ""}, true
}

// doctorExpiry checks the validity period of c.
func doctorExpiry(name string, c *x509.Certificate, cfg *doctorConfig) doctorCheck {
	now := cfg.Now()
	left := c.NotAfter.Sub(now)
	until := c.NotAfter.UTC().Format(time.DateOnly)
	renew := "renew it with your IGC-Santé order, install it and reload (mssante serve: SIGHUP); mssante cert check --warn 90d FILE watches it"
	switch {
	case now.Before(c.NotBefore):
		return doctorCheck{doctorFail, name, "not valid before " + c.NotBefore.UTC().Format(time.DateOnly), "check the clock, or install the current certificate"}
	case left <= 0:
		return doctorCheck{doctorFail, name, "expired on " + until, renew}
	case left < cfg.WarnWithin:
		return doctorCheck{doctorWarn, name, fmt.Sprintf("expires on %s, in %d days", until, int(left.Hours()/24)), renew}
	}
	return doctorCheck{doctorOK, name, fmt.Sprintf("valid until %s (%d days)", until, int(left.Hours()/24)), ""}
}

// doctorDiagnose turns a connection error into a status and a fix.
func doctorDiagnose(err error, host string) (doctorStatus, string) {
	switch {
	case errors.Is(err, transport.ErrExpired):
		return doctorFail, "renew the server certificate (IGC-Santé SERV) and install it"
	case errors.Is(err, transport.ErrNotYetValid):
		return doctorFail, "check the server's clock, or install the current certificate"
	case errors.Is(err, transport.ErrHostname):
		return doctorFail, "the server certificate must name " + host + " (CN or DNS SAN), or the MX must name the host of the certificate"
	case errors.Is(err, transport.ErrUnknownAuthority), errors.Is(err, transport.ErrBadSignature):
		return doctorFail, "serve a certificate issued by IGC-Santé, with its intermediate CA in the chain"
	case errors.Is(err, transport.ErrRevoked):
		return doctorFail, "the certificate is revoked: install a new one"
	case errors.Is(err, transport.ErrWrongEKU):
		return doctorFail, "use a SERV certificate (serverAuth and clientAuth)"
	}
	return doctorFail, "check that the connector is running and the port is open to the MSSanté operators"
}

// doctorDial connects to addr for service and completes the TLS handshake towards host. It
// returns the leaf the server presented (also when it was refused) and the connection state.
// base, when set, replaces the Réf. #2 client configuration (for the old-protocol probe).
func doctorDial(ctx context.Context, cfg *doctorConfig, host, addr, service string, base *tls.Config) (*x509.Certificate, tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var tcfg *tls.Config
	var err error
	if base != nil {
		tcfg = base.Clone()
		tcfg.ServerName = host
		tcfg.RootCAs = cfg.Trust.Roots()
	} else {
		tcfg, err = transport.ClientConfig(nil, host, &transport.TLSOptions{Trust: cfg.Trust, Certificates: cfg.Client, Time: cfg.Now})
		if err != nil {
			return nil, tls.ConnectionState{}, err
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var cs tls.ConnectionState
	switch service {
	case "smtp", "submission":
		var c *smtp.Client
		c, err = smtp.NewClientStartTLS(conn, tcfg)
		if err == nil {
			// go-smtp handshakes on the first command after STARTTLS.
			err = c.Noop()
		}
		if err == nil {
			cs, _ = c.TLSConnectionState()
			c.Quit()
			c.Close()
		}
	case "imap":
		if err = imapStartTLS(conn); err != nil {
			break
		}
		fallthrough
	default:
		tc := tls.Client(conn, tcfg)
		if err = tc.HandshakeContext(ctx); err == nil {
			cs = tc.ConnectionState()
		}
		tc.Close()
	}
	if err != nil {
		var cve *tls.CertificateVerificationError
		var leaf *x509.Certificate
		if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
			leaf = cve.UnverifiedCertificates[0]
		}
		return leaf, cs, cfg.Trust.ClassifyError(err, cfg.Now())
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, cs, transport.ErrNoPeerCertificate
	}
	return cs.PeerCertificates[0], cs, nil
}

// imapStartTLS asks an IMAP server on conn to start TLS (RFC 9051 §6.2.1): after its
// greeting and the tagged OK, the next bytes are the TLS handshake. Lines are read one byte at
// a time so that nothing of the handshake is consumed here.
func imapStartTLS(conn net.Conn) error {
	line := func() (string, error) {
		var b []byte
		one := make([]byte, 1)
		for len(b) < 1024 {
			if _, err := io.ReadFull(conn, one); err != nil {
				return "", err
			}
			if one[0] == '\n' {
				return strings.TrimRight(string(b), "\r"), nil
			}
			b = append(b, one[0])
		}
		return "", errors.New("imap: line too long")
	}
	greeting, err := line()
	if err != nil {
		return fmt.Errorf("imap: greeting: %w", err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return fmt.Errorf("imap: greeting %q", greeting)
	}
	if _, err := io.WriteString(conn, "d1 STARTTLS\r\n"); err != nil {
		return err
	}
	for i := 0; i < 16; i++ {
		l, err := line()
		if err != nil {
			return fmt.Errorf("imap: STARTTLS: %w", err)
		}
		if strings.HasPrefix(l, "d1 ") {
			if !strings.HasPrefix(l, "d1 OK") {
				return fmt.Errorf("imap: STARTTLS refused: %q", l)
			}
			return nil
		}
	}
	return errors.New("imap: no answer to STARTTLS")
}
