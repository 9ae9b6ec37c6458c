// Package sandbox wires a whole local MSSanté trust space on loopback, from the public packages
// of the module: a test PKI shaped like IGC-Santé (internal/testpki) kept in a state folder, a
// liste blanche signed by that PKI (whitelist.Sign) and served over HTTPS, two operators
// (hopital.dev.mssante.fr and cabinet.dev.mssante.fr) each running the reference connector
// (transport/connector: relay, submission, durable queue, delivery) over its own mailbox store
// (transport/mailbox) with IMAP access (transport/imapd) and PER, ORG and APP BALs, and a
// sample Annuaire Santé extraction file (annuaire).
//
// "mssante dev" runs it; tests and examples start it in-process with Start and ports :0.
// Everything it makes is for tests only: never trust the test PKI in production.
//
// What Start wrote is described in DIR/sandbox.json (Info), which Load reads back, so that
// other processes ("mssante selftest", "mssante doctor", the examples) find the endpoints and
// the certificate files of each BAL.
package sandbox

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/sandboxinfo"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/whitelist"
)

// The domains of the sandbox.
const (
	Hopital = "hopital.dev.mssante.fr"
	Cabinet = "cabinet.dev.mssante.fr"
	// TestDomain is the domain of the test responder, hosted by the cabinet's connector, like
	// reponse.automatique@test.mssante.fr in the real trust space.
	TestDomain = "test.dev.mssante.fr"
	// ResponderAddress answers every message it receives (RFC 3834 auto-reply), when a
	// responder is wired (see Info.Responder).
	ResponderAddress = "reponse.automatique@" + TestDomain
)

// InfoFile is the name of the description of the sandbox in its state folder.
const InfoFile = sandboxinfo.File

// renewWithin: leaves expiring sooner than this are re-issued at the next start.
const renewWithin = 30 * 24 * time.Hour

// Options configure Start.
type Options struct {
	// Dir is the state folder (required): the test PKI, certificates, mailboxes, queues and
	// audit logs. A second Start on the same Dir keeps them.
	Dir string
	// ReusePorts listens on the ports of the previous run recorded in Dir when they are free
	// (so that the commands printed before a restart still work), else on new ones.
	// The default listens on 127.0.0.1:0 (tests).
	ReusePorts bool
	// Logger receives the connectors' operational logs (nil: discard).
	Logger *slog.Logger
	// Extra are operators outside the sandbox (a connector under test, an example): each
	// domain is put on the liste blanche with its certificate DN, and the sandbox's connectors
	// route it to its relay.
	Extra []Extra
	// PSCSessionLength, when set, is the psc session_length of the connectors: the IMAP
	// sessions opened with a token end then (BYE), for tests of the clients' reconnection.
	PSCSessionLength time.Duration
	// PSCTokenLifetime, when set, is the lifetime of the provider's access tokens (default
	// 2 min, as at Pro Santé Connect).
	PSCTokenLifetime time.Duration
	// PSCEndWithToken sets psc end_with_token on the connectors, with a skew of 1 s: the IMAP
	// sessions opened with a token end about 1 s after it expires.
	PSCEndWithToken bool
}

// Extra is an operator outside the sandbox that the sandbox trusts and routes to.
type Extra = sandboxinfo.Extra

// Info describes a running (or the last started) sandbox. It is written to Dir/sandbox.json,
// whose schema is sandboxinfo's: the one reader of that file, which bal shares.
type Info struct {
	sandboxinfo.Info
}

// Operator is one connector of the sandbox.
type Operator = sandboxinfo.Operator

// BAL is one mailbox of an operator.
type BAL = sandboxinfo.BAL

// Load reads the description of the sandbox last started in dir.
func Load(dir string) (*Info, error) {
	i, err := sandboxinfo.Load(dir)
	if err != nil {
		return nil, err
	}
	return &Info{*i}, nil
}

// operatorSpec is what the sandbox builds for one operator.
type operatorSpec struct {
	name, org string
	domains   []string
	bals      []balSpec
}

type balSpec struct {
	local string
	typ   mailbox.Type
	owner string
	desc  string
}

var specs = []operatorSpec{
	{name: "hopital", org: "CENTRE HOSPITALIER DEV", domains: []string{Hopital}, bals: []balSpec{
		{"jean.dupont", mailbox.PER, "810000000001", "Dr Jean Dupont, cardiologue"},
		{"secretariat.cardiologie", mailbox.ORG, "1010000001", "Secrétariat de cardiologie"},
		{"dpi", mailbox.APP, "1010000001", "DPI de l'hôpital (BAL applicative)"},
	}},
	{name: "cabinet", org: "CABINET MEDICAL DEV", domains: []string{Cabinet, TestDomain}, bals: []balSpec{
		{"marie.durand", mailbox.PER, "810000000002", "Dr Marie Durand, médecin généraliste"},
		{"accueil", mailbox.ORG, "1010000002", "Accueil du cabinet"},
		{"logiciel", mailbox.APP, "1010000002", "Logiciel de cabinet (BAL applicative)"},
	}},
}

// Sandbox is a running trust space.
type Sandbox struct {
	Info *Info
	// PKI is the test PKI of the state folder.
	PKI *testpki.PKI

	logger    *slog.Logger
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	httpSrv   *http.Server
	crlSrv    *http.Server
	pscSrv    *http.Server // the Pro Santé Connect stand-in (psc.go)
	opts      Options      // as given to Start
	nodes     []*node.Node
	connDone  []chan error
	closeOnce sync.Once
	closeErr  error
}

// Start builds (or reloads) the sandbox in opts.Dir and starts its servers. Close stops them.
func Start(ctx context.Context, opts *Options) (_ *Sandbox, err error) {
	if opts == nil || opts.Dir == "" {
		return nil, errors.New("sandbox: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Sandbox{logger: opts.Logger, opts: *opts}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	var prev *Info
	if opts.ReusePorts {
		prev, _ = Load(dir)
	}
	lns := &listeners{prev: prev}
	defer func() {
		if err != nil {
			lns.closeAll()
			s.Close()
		}
	}()

	crlURL, ocspURL, err := listenCRL(lns)
	if err != nil {
		return nil, err
	}
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki"), CRLDistributionPoints: []string{crlURL},
		OCSPServer: []string{ocspURL}})
	if err != nil {
		return nil, err
	}
	s.PKI = pki
	info := &Info{sandboxinfo.Info{Dir: dir, CAFile: filepath.Join(dir, "ca-chain.pem"), CRLFile: filepath.Join(dir, "crl.der"),
		CRLURL: crlURL, Extra: opts.Extra}}
	s.Info = info
	s.startCRL(lns.take("pki", "http"))
	if err := os.WriteFile(info.CAFile, append(pki.RootPEM(), pki.IntermediatePEM()...), 0o644); err != nil {
		return nil, err
	}
	crl, err := pki.CRL()
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(info.CRLFile, crl); err != nil {
		return nil, err
	}

	// Operators: certificates, BALs and listeners first, so that routes can name the relays.
	for _, sp := range specs {
		od := filepath.Join(dir, sp.name)
		if err := os.MkdirAll(filepath.Join(od, "bal"), 0o700); err != nil {
			return nil, err
		}
		host := "mx." + sp.domains[0]
		lo := &testpki.LeafOptions{Org: sp.org, DNSNames: []string{"localhost"}}
		srv, err := leaf(od, "server", pki, func() (*testpki.Leaf, error) { return pki.Server(host, lo) })
		if err != nil {
			return nil, err
		}
		op := &Operator{Name: sp.name, Domains: sp.domains, Hostname: host,
			CertFile: filepath.Join(od, "server.crt.pem"), KeyFile: filepath.Join(od, "server.key.pem"),
			CertDN: transport.SubjectDN(srv.Cert), Config: filepath.Join(od, "serve.toml")}
		for _, b := range sp.bals {
			addr := b.local + "@" + sp.domains[0]
			bi := &BAL{Address: addr, Type: string(b.typ)}
			if b.typ == mailbox.APP {
				l, err := leaf(filepath.Join(od, "bal"), b.local, pki, func() (*testpki.Leaf, error) {
					return pki.Org(addr, &testpki.LeafOptions{Org: sp.org})
				})
				if err != nil {
					return nil, err
				}
				bi.CertFile = filepath.Join(od, "bal", b.local+".crt.pem")
				bi.KeyFile = filepath.Join(od, "bal", b.local+".key.pem")
				bi.CertDN = transport.SubjectDN(l.Cert)
			} else {
				pw, err := password(filepath.Join(od, "bal", b.local+".password"))
				if err != nil {
					return nil, err
				}
				bi.Password = pw
			}
			op.BALs = append(op.BALs, bi)
		}
		for _, name := range []string{"relay", "submission", "submission_tls", "imap", "imaps", "metrics"} {
			addr, err := lns.listen(sp.name, name)
			if err != nil {
				return nil, err
			}
			switch name {
			case "relay":
				op.Relay = addr
			case "submission":
				op.Submission = addr
			case "submission_tls":
				op.SubmissionTLS = addr
			case "imap":
				op.IMAP = addr
			case "imaps":
				op.IMAPS = addr
			case "metrics":
				op.Metrics = addr
			}
		}
		info.Operators = append(info.Operators, op)
	}

	// The liste blanche: every domain with the DN of its operator's server certificate,
	// signed by a test signer and served over HTTPS.
	if err := s.startWhitelist(ctx, dir, lns); err != nil {
		return nil, err
	}
	if err := s.startPSC(lns); err != nil {
		return nil, err
	}

	// The sample annuaire.
	info.Annuaire = filepath.Join(dir, "annuaire", "Extraction_Correspondance_MSSante_dev.txt")
	if err := writeAnnuaire(info); err != nil {
		return nil, err
	}

	if err := writeSamples(info); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for i, sp := range specs {
		if err := s.startOperator(ctx, runCtx, info.Operators[i], sp, lns); err != nil {
			return nil, err
		}
	}
	if info.HL7, err = hl7Ports(lns); err != nil {
		return nil, err
	}
	if info.API, err = apiInfo(info, lns); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(dir, InfoFile), info); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sandbox) startWhitelist(ctx context.Context, dir string, lns *listeners) error {
	info := s.Info
	wd := filepath.Join(dir, "whitelist")
	if err := os.MkdirAll(wd, 0o700); err != nil {
		return err
	}
	// The test signer has the subject of the ANS signer (whitelist.DefaultSigner): only the
	// trusted roots differ from production, so tools need no --signer for the sandbox.
	signer, err := leaf(wd, "alb-signer", s.PKI, func() (*testpki.Leaf, error) {
		return s.PKI.Leaf(testpki.ProfileOrgSign, s.PKI.Subject("alb.mssante.fr", &testpki.LeafOptions{
			SIRET: "347976684200724", Org: "CAPGEMINI TECHNOLOGY SERVICES", State: "Hauts-de-Seine (92)"}), nil)
	})
	if err != nil {
		return err
	}
	info.WhitelistSigner = transport.SubjectDN(signer.Cert)
	var entries []whitelist.Entry
	for _, op := range info.Operators {
		for _, d := range op.Domains {
			entries = append(entries, whitelist.Entry{Domain: d, Description: "mssante dev: " + op.Name,
				OperatorDNs: []string{op.CertDN}, Updated: time.Now().UTC().Truncate(time.Second)})
		}
	}
	for _, x := range info.Extra {
		entries = append(entries, whitelist.Entry{Domain: x.Domain, Description: "mssante dev: extra operator",
			OperatorDNs: []string{x.CertDN}, Updated: time.Now().UTC().Truncate(time.Second)})
	}
	// Generated a second ago, so that a list fetched right after is never "in the future".
	doc, err := whitelist.Sign(whitelist.NewList(time.Now().Add(-time.Second).UTC().Truncate(time.Second), entries), signer.Key, signer.Chain)
	if err != nil {
		return err
	}
	info.WhitelistFile = filepath.Join(wd, "listeblanchemssante.xml")
	if err := writeAtomic(info.WhitelistFile, doc); err != nil {
		return err
	}
	web, err := leaf(wd, "https", s.PKI, func() (*testpki.Leaf, error) {
		return s.PKI.Server("localhost", nil)
	})
	if err != nil {
		return err
	}
	ln, err := lns.raw("whitelist", "https")
	if err != nil {
		return err
	}
	modTime := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("/listeblanchemssante.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		http.ServeContent(w, r, "listeblanchemssante.xml", modTime, strings.NewReader(string(doc)))
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{web.TLSCertificate()}}}
	info.WhitelistURL = "https://" + ln.Addr().String() + "/listeblanchemssante.xml"
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.httpSrv.ServeTLS(ln, "", "")
	}()
	return nil
}

func (s *Sandbox) startOperator(ctx, runCtx context.Context, op *Operator, sp operatorSpec, lns *listeners) error {
	od := filepath.Join(s.Info.Dir, sp.name)
	// The BALs with what the configuration has no room for (owner, description, password) are
	// registered first; the node then opens the same store.
	store, err := mailbox.OpenSQLite(ctx, filepath.Join(od, "mailbox"), &mailbox.Options{Logger: s.logger})
	if err != nil {
		return err
	}
	defer store.Close()
	if slices.Contains(op.Domains, TestDomain) {
		// The test responder: a BAL of this operator answering every message (RFC 3834).
		if _, err := store.GetBAL(ctx, ResponderAddress); errors.Is(err, mailbox.ErrNoBAL) {
			err = store.AddBAL(ctx, &mailbox.BAL{Address: ResponderAddress, Type: mailbox.ORG, Owner: sp.bals[0].owner,
				Description: "Réponse automatique (test responder)"})
			if err != nil {
				return err
			}
		}
	}
	for i, b := range op.BALs {
		if _, err := store.GetBAL(ctx, b.Address); errors.Is(err, mailbox.ErrNoBAL) {
			err = store.AddBAL(ctx, &mailbox.BAL{Address: b.Address, Type: mailbox.Type(b.Type), Owner: sp.bals[i].owner,
				Description: sp.bals[i].desc, CertDN: b.CertDN})
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if b.Password != "" {
			if err := store.SetPassword(ctx, b.Address, b.Password); err != nil {
				return err
			}
		}
	}
	if err := s.addMembers(ctx, store, op); err != nil {
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(op.Config, []byte(s.serveConfig(op)), 0o600); err != nil {
		return err
	}
	f, err := os.Open(op.Config)
	if err != nil {
		return err
	}
	cfg, err := node.LoadConfig(f)
	f.Close()
	if err != nil {
		return err
	}
	// The whitelist store starts from its cache: seed it with the list just signed, so that
	// the connector enforces it from the first message; it then refreshes over HTTPS.
	doc, err := os.ReadFile(s.Info.WhitelistFile)
	if err != nil {
		return err
	}
	if err := writeAtomic(cfg.Whitelist.CacheFile, doc); err != nil {
		return err
	}
	n, err := node.New(ctx, cfg, &node.Options{Logger: s.logger.With("operator", sp.name),
		Listeners: map[string]net.Listener{"relay": lns.take(sp.name, "relay"), "submission": lns.take(sp.name, "submission"),
			"submission_tls": lns.take(sp.name, "submission_tls"), "metrics": lns.take(sp.name, "metrics"),
			"imap": lns.take(sp.name, "imap"), "imaps": lns.take(sp.name, "imaps")}})
	if err != nil {
		return err
	}
	if n.Responder != nil {
		s.Info.Responder = ResponderAddress
	}
	s.nodes = append(s.nodes, n)
	done := make(chan error, 1)
	s.connDone = append(s.connDone, done)
	go func() { done <- n.Serve(runCtx) }()
	return nil
}

// serveConfig is the "mssante serve" configuration of op in the sandbox (its listen addresses
// are those of the sandbox's listeners, handed to the connector directly).
func (s *Sandbox) serveConfig(op *Operator) string {
	od := filepath.Dir(op.Config)
	var b strings.Builder
	fmt.Fprintf(&b, "# mssante dev: configuration of the %s connector (written at every start).\n", op.Name)
	fmt.Fprintf(&b, "hostname = %q\ndomains = [%s]\nspool_dir = %q\n\n", op.Hostname, quoteList(op.Domains), filepath.Join(od, "spool"))
	fmt.Fprintf(&b, "[tls]\ncert_file = %q\nkey_file = %q\nca_files = [%q]\nno_igc_sante_root = true\ncrl_files = [%q]\n",
		op.CertFile, op.KeyFile, s.Info.CAFile, s.Info.CRLFile)
	fmt.Fprintf(&b, "# The sandbox's CRL server: a certificate revoked with \"mssante dev revoke\" is refused within %s.\n"+
		"crl_urls = [%q]\ncrl_refresh_interval = %q\n# and answers OCSP at the address written in them.\nocsp = \"both\"\n\n",
		CRLRefresh, s.Info.CRLURL, CRLRefresh.String())
	fmt.Fprintf(&b, "[whitelist]\nurl = %q\ncache_file = %q\nrefresh_interval = \"1m\"\n\n",
		s.Info.WhitelistURL, filepath.Join(od, "whitelist-cache.xml"))
	// The sandbox keeps passwords beside Pro Santé Connect tokens, for the tools that have no
	// token source.
	b.WriteString(s.pscConfig())
	fmt.Fprintf(&b, "[auth]\nallow_passwords = true\n\n[relay]\nlisten = %q\n\n[submission]\nlisten = %q\nlisten_tls = %q\nallow_plain = true\n\n",
		op.Relay, op.Submission, op.SubmissionTLS)
	for _, bal := range op.BALs {
		fmt.Fprintf(&b, "[[bal]]\naddress = %q\n", bal.Address)
		if bal.CertDN != "" {
			fmt.Fprintf(&b, "cert_dn = %q\n", bal.CertDN)
		} else {
			fmt.Fprintf(&b, "login = %q\npassword = %q\n", bal.Address, bal.Password)
		}
		b.WriteString("\n")
	}
	b.WriteString("[delivery]\nroutes = {")
	sep := " "
	for _, other := range s.Info.Operators {
		if other == op {
			continue
		}
		for _, d := range other.Domains {
			fmt.Fprintf(&b, "%s%q = %q", sep, d, other.Relay)
			sep = ", "
		}
	}
	for _, x := range s.Info.Extra {
		fmt.Fprintf(&b, "%s%q = %q", sep, x.Domain, x.Relay)
		sep = ", "
	}
	b.WriteString(" }\nconnect_timeout = \"10s\"\n# Short, so that a stop does not wait for the pooled connections of the other operator.\nidle_timeout = \"1s\"\n\n")
	b.WriteString("[queue]\nretry_first = \"2s\"\nretry_max = \"30s\"\ngive_up = \"1h\"\ndelay_notice = \"10m\"\n\n")
	fmt.Fprintf(&b, "[audit]\ndir = %q\n\n[metrics]\nlisten = %q\n\n", filepath.Join(od, "audit"), op.Metrics)
	fmt.Fprintf(&b, "[mailbox]\ndir = %q\n\n[imap]\nlisten = %q\nlisten_tls = %q\n", filepath.Join(od, "mailbox"), op.IMAP, op.IMAPS)
	if slices.Contains(op.Domains, TestDomain) {
		fmt.Fprintf(&b, "\n[responder]\naddress = %q\n", ResponderAddress)
	}
	return b.String()
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// stopTimeout bounds the stop of each connector (its own grace period for open sessions is
// limits.shutdown_grace, 30 s by default): Ctrl-C must never hang.
const stopTimeout = 45 * time.Second

// Close stops every server of the sandbox and closes its stores. The state folder stays. An
// error reports a node that did not stop in time (its store is then left open).
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		for i, d := range s.connDone {
			select {
			case <-d:
			case <-time.After(stopTimeout):
				s.closeErr = errors.Join(s.closeErr, fmt.Errorf("sandbox: connector %s did not stop within %s", s.Info.Operators[i].Name, stopTimeout))
			}
		}
		if len(s.connDone) < len(s.nodes) { // built but not started (Start failed)
			for _, n := range s.nodes[len(s.connDone):] {
				n.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s.httpSrv != nil {
			s.httpSrv.Shutdown(ctx)
		}
		s.stopCRL(ctx)
		if s.pscSrv != nil {
			s.pscSrv.Shutdown(ctx)
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// Store returns the mailbox store of the operator named name ("hopital", "cabinet"), for tests.
func (s *Sandbox) Store(name string) mailbox.Store {
	for i, op := range s.Info.Operators {
		if op.Name == name && i < len(s.nodes) && s.nodes[i].Store != nil {
			return s.nodes[i].Store
		}
	}
	return nil
}

// listeners opens the sandbox's listeners, on the previous run's ports when asked and free.
type listeners struct {
	prev *Info
	open map[string]net.Listener
}

func (l *listeners) raw(op, name string) (net.Listener, error) {
	addr := "127.0.0.1:0"
	if p := l.prevAddr(op, name); p != "" {
		if ln, err := net.Listen("tcp", p); err == nil {
			return l.keep(op, name, ln), nil
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return l.keep(op, name, ln), nil
}

func (l *listeners) keep(op, name string, ln net.Listener) net.Listener {
	if l.open == nil {
		l.open = map[string]net.Listener{}
	}
	l.open[op+"/"+name] = ln
	return ln
}

func (l *listeners) listen(op, name string) (string, error) {
	ln, err := l.raw(op, name)
	if err != nil {
		return "", err
	}
	return ln.Addr().String(), nil
}

// take hands a listener over to its server (which closes it from then on).
func (l *listeners) take(op, name string) net.Listener {
	ln := l.open[op+"/"+name]
	delete(l.open, op+"/"+name)
	return ln
}

func (l *listeners) closeAll() {
	for _, ln := range l.open {
		ln.Close()
	}
}

func (l *listeners) prevAddr(op, name string) string {
	if l.prev == nil {
		return ""
	}
	if op == "hl7" && l.prev.HL7 != nil {
		return map[string]string{"listen": l.prev.HL7.Listen, "dpi": l.prev.HL7.DPI}[name]
	}
	if op == "api" && l.prev.API != nil {
		return l.prev.API.Listen
	}
	if op == "psc" && l.prev.PSC != nil {
		return "127.0.0.1:" + portOf(l.prev.PSC.Issuer)
	}
	if u := map[string]string{"whitelist": l.prev.WhitelistURL, "pki": l.prev.CRLURL}[op]; op == "whitelist" || op == "pki" {
		if i := strings.Index(u, "://"); i >= 0 {
			host, _, _ := strings.Cut(u[i+3:], "/")
			return host
		}
		return ""
	}
	for _, o := range l.prev.Operators {
		if o.Name != op {
			continue
		}
		switch name {
		case "relay":
			return o.Relay
		case "submission":
			return o.Submission
		case "submission_tls":
			return o.SubmissionTLS
		case "imap":
			return o.IMAP
		case "imaps":
			return o.IMAPS
		case "metrics":
			return o.Metrics
		}
	}
	return ""
}

// leaf returns the leaf stored as dir/base.{crt,key}.pem when it was issued by pki and is valid
// for more than renewWithin, else issues a new one with issue and writes it.
func leaf(dir, base string, pki *testpki.PKI, issue func() (*testpki.Leaf, error)) (*testpki.Leaf, error) {
	certPath := filepath.Join(dir, base+".crt.pem")
	keyPath := filepath.Join(dir, base+".key.pem")
	if tc, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && tc.Leaf != nil {
		c := tc.Leaf
		key, isSigner := tc.PrivateKey.(crypto.Signer)
		if isSigner && pki.Issued(c) && time.Until(c.NotAfter) > renewWithin {
			return &testpki.Leaf{Cert: c, Key: key, Chain: []*x509.Certificate{c, pki.Intermediate}}, nil
		}
	}
	l, err := issue()
	if err != nil {
		return nil, err
	}
	if _, _, err := l.WriteFiles(dir, base); err != nil {
		return nil, err
	}
	return l, nil
}

// password returns the password kept in path, creating a random one the first time.
func password(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	r := make([]byte, 12)
	rand.Read(r)
	pw := hex.EncodeToString(r)
	return pw, writeAtomic(path, []byte(pw+"\n"))
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

// writeAtomic writes b to path through a temporary file and a rename.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeSamples writes the sample lettre de liaison of mssante/cda and its PDF copy.
func writeSamples(info *Info) error {
	d, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := cda.Encode(&b, d); err != nil {
		return err
	}
	info.SampleCDA = filepath.Join(info.Dir, "exemples", "lettre-de-liaison.xml")
	info.SamplePDF = filepath.Join(info.Dir, "exemples", "lettre-de-liaison.pdf")
	if err := writeAtomic(info.SampleCDA, b.Bytes()); err != nil {
		return err
	}
	return writeAtomic(info.SamplePDF, samplepdf.Page("Lettre de liaison (exemple fictif, mssante dev)"))
}
