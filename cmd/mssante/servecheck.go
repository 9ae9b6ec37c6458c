package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/whitelist"
)

// checkStatus is the outcome of one check of "serve --check".
type checkStatus string

const (
	checkOK   checkStatus = "ok"
	checkInfo checkStatus = "info" // worth knowing, not a problem
	checkWarn checkStatus = "warn" // the node starts, but something will need a hand
	checkFail checkStatus = "fail" // the node would not start, or would refuse mail
)

// serveCheckLine is one check of "serve --check", and its --json line.
type serveCheckLine struct {
	Status checkStatus `json:"status"`
	Check  string      `json:"check"`
	Detail string      `json:"detail"`
}

// serveCheckTimeout bounds the download of the liste blanche by --check, which runs before
// the service starts (ExecStartPre) and must not hold it for the two minutes of a refresh.
const serveCheckTimeout = 30 * time.Second

// serveChecker runs the dry run of "mssante serve --check": what the node would load and
// bind at start, checked without writing anything, each outcome one line.
type serveChecker struct {
	cfg        *node.Config
	configPath string
	now        time.Time
	lines      []serveCheckLine
}

func (c *serveChecker) add(st checkStatus, check, format string, a ...any) {
	c.lines = append(c.lines, serveCheckLine{st, check, fmt.Sprintf(format, a...)})
}

// runServeCheck checks cfg as "mssante serve" would start with it, prints one line per check
// (or one JSON object a line) and fails when one check fails.
func runServeCheck(ctx context.Context, e *env, cfg *node.Config, configPath string, asJSON bool) error {
	c := &serveChecker{cfg: cfg, configPath: configPath, now: time.Now()}
	c.run(ctx)
	failed := 0
	for _, l := range c.lines {
		if asJSON {
			jsonLine(e.stdout, l)
		} else {
			fmt.Fprintf(e.stdout, "%-4s  %s: %s\n", l.Status, l.Check, l.Detail)
		}
		if l.Status == checkFail {
			failed++
		}
	}
	if failed > 0 {
		return exitCode(1, fmt.Errorf("%d problem(s): the service would not work as configured", failed))
	}
	if !asJSON {
		fmt.Fprintln(e.stdout, "configuration OK")
	}
	return nil
}

func (c *serveChecker) run(ctx context.Context) {
	c.checkModes()
	c.checkStateFolders()
	leaf, chain := c.checkCertificate()
	trust := c.checkTrust()
	if leaf != nil && trust != nil {
		if _, err := trust.Verify(chain, x509.ExtKeyUsageServerAuth, c.now); err != nil {
			c.add(checkFail, "certificate chain", "%v: the node refuses to start with a certificate the other operators would refuse", err)
		} else {
			c.add(checkOK, "certificate chain", "chains to the configured CAs, not revoked")
		}
	}
	if trust != nil {
		if l := c.checkWhitelist(ctx, trust); l != nil && leaf != nil {
			c.checkListed(l, leaf)
		}
	}
	c.checkPorts()
	c.checkStore(ctx)
}

// checkStore, with [store] backend = "postgres", reaches the database and compares each
// component's schema with this binary's (as "mssante store check").
func (c *serveChecker) checkStore(ctx context.Context) {
	if !c.cfg.Store.Postgres() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, serveCheckTimeout)
	defer cancel()
	lines, err := storeVersions(ctx, &c.cfg.Store, false)
	for _, l := range lines {
		switch l.State {
		case "current":
			c.add(checkOK, "store "+l.Component, "schema version %d, this binary's", l.Version)
		case "pending":
			c.add(checkInfo, "store "+l.Component, "schema version %d, this binary's is %d: the node migrates at start (or: mssante store migrate)", l.Version, l.Binary)
		default:
			c.add(checkFail, "store "+l.Component, "schema version %d, newer than this binary's %d: a newer release migrated the database; run that release", l.Version, l.Binary)
		}
	}
	if err != nil {
		c.add(checkFail, "store", "%s", strings.TrimPrefix(err.Error(), "store: "))
	}
}

// checkModes checks that the configuration (which may hold BAL passwords) and the private
// key are readable by their owner only.
func (c *serveChecker) checkModes() {
	if runtime.GOOS == "windows" {
		return
	}
	if fi, err := os.Stat(c.configPath); err == nil {
		if fi.Mode().Perm()&0o077 != 0 {
			c.add(checkFail, "configuration", "%s has mode %04o, open to group or others, and may hold BAL passwords: chmod 600 %[1]s",
				c.configPath, uint32(fi.Mode().Perm()))
		} else {
			c.add(checkOK, "configuration", "%s readable by its owner only", c.configPath)
		}
	}
	if err := transport.CheckKeyFileMode(c.cfg.TLS.KeyFile); err != nil {
		c.add(checkFail, "tls.key_file", "%v", err)
	} else {
		c.add(checkOK, "tls.key_file", "%s readable by its owner only", c.cfg.TLS.KeyFile)
	}
}

// stateFolders are the folders the node writes to, by setting name.
func stateFolders(cfg *node.Config) [][2]string {
	out := [][2]string{{"spool_dir", cfg.SpoolDir}, {"audit.dir", cfg.Audit.Dir}}
	if cfg.Mailbox.Dir != "" {
		out = append(out, [2]string{"mailbox.dir", cfg.Mailbox.Dir})
	} else if cfg.Local.Maildir != "" && !cfg.Store.Postgres() {
		out = append(out, [2]string{"local.maildir", cfg.Local.Maildir})
	}
	if cfg.Whitelist.URL != "" && cfg.Whitelist.CacheFile != "" {
		out = append(out, [2]string{"whitelist.cache_file", filepath.Dir(cfg.Whitelist.CacheFile)})
	}
	if cfg.API.Enabled && cfg.API.StateDir != "" {
		out = append(out, [2]string{"api.state_dir", cfg.API.StateDir})
	}
	return out
}

// checkStateFolders checks that the user running the check (the service's, in the unit's
// ExecStartPre) owns the state folders, or can create them.
func (c *serveChecker) checkStateFolders() {
	me := euid()
	if me < 0 {
		return
	}
	for _, s := range stateFolders(c.cfg) {
		at, fi := existingAncestor(s[1])
		if fi == nil {
			continue
		}
		if at != s[1] {
			if writable(at) {
				c.add(checkOK, s[0], "%s will be created in %s", s[1], at)
			} else {
				c.add(checkFail, s[0], "%s does not exist and %s cannot create it in %s: install -d -o %[2]s -m 0700 %[1]s",
					s[1], userName(me), at)
			}
			continue
		}
		uid, ok := fileUID(fi)
		switch {
		case !ok:
		case uid != me:
			c.add(checkFail, s[0], "%s belongs to %s, not to %s who runs this check: run it as the service's user (sudo -u %[2]s mssante serve --check …), or chown -R %[3]s %[1]s",
				s[1], userName(uid), userName(me))
		default:
			c.add(checkOK, s[0], "%s owned by %s", s[1], userName(me))
		}
	}
}

// checkCertificate loads our certificate and key as the node does (the key matching the
// certificate) and checks that the certificate names hostname. It returns the leaf and the
// chain of the file, nil when they do not load.
func (c *serveChecker) checkCertificate() (*x509.Certificate, []*x509.Certificate) {
	t := c.cfg.TLS
	crt, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		c.add(checkFail, "certificate", "%s and %s: %v", t.CertFile, t.KeyFile, err)
		return nil, nil
	}
	leaf := crt.Leaf
	chain := []*x509.Certificate{leaf}
	for _, der := range crt.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			c.add(checkFail, "certificate", "%s: certificate chain: %v", t.CertFile, err)
			return nil, nil
		}
		chain = append(chain, ic)
	}
	c.add(checkOK, "certificate", "%s, matching its key, valid until %s", transport.SubjectDN(leaf), leaf.NotAfter.UTC().Format(time.DateOnly))
	if err := leaf.VerifyHostname(c.cfg.Hostname); err != nil {
		c.add(checkFail, "hostname", "the certificate does not name %s (names: %s): the other operators would refuse it; set hostname to a name of the certificate, or order one for %[1]s",
			c.cfg.Hostname, strings.Join(leaf.DNSNames, ", "))
	} else {
		c.add(checkOK, "hostname", "%s is a name of the certificate", c.cfg.Hostname)
	}
	return leaf, chain
}

// checkTrust loads the CA and CRL files as the node does, and checks each CRL's date: with
// revocation = "required", a CRL past its next update refuses every certificate of its CA.
// It returns nil when a CA file does not load (what depends on the CAs is then not checked).
func (c *serveChecker) checkTrust() *transport.TrustStore {
	t := c.cfg.TLS
	rev := transport.RevocationRequired
	if t.Revocation == "best_effort" {
		rev = transport.RevocationBestEffort
	}
	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: t.NoIGCSanteRoot, Revocation: rev})
	ok := true
	for _, f := range t.CAFiles {
		if err := trust.AddFile(f); err != nil {
			c.add(checkFail, "tls.ca_files", "%s: %v", f, err)
			ok = false
		}
	}
	if ok {
		roots, inters := trust.Counts()
		c.add(checkOK, "tls.ca_files", "%d root(s), %d intermediate(s)", roots, inters)
	}
	for _, f := range t.CRLFiles {
		if err := trust.AddCRLFile(f); err != nil {
			c.add(checkFail, "tls.crl_files", "%v", err)
			continue
		}
		next := crlNextUpdate(f)
		switch {
		case !next.IsZero() && c.now.After(next) && rev == transport.RevocationRequired:
			c.add(checkFail, "tls.crl_files", "%s is past its next update (%s): with revocation = \"required\" the certificates of its CA are refused; download the current CRL",
				f, next.UTC().Format(time.RFC3339))
		case !next.IsZero() && c.now.After(next):
			c.add(checkWarn, "tls.crl_files", "%s is past its next update (%s): revocation is not checked for its CA until it is replaced",
				f, next.UTC().Format(time.RFC3339))
		default:
			c.add(checkOK, "tls.crl_files", "%s signed by its CA, next update %s", f, next.UTC().Format(time.RFC3339))
		}
	}
	if !ok {
		return nil
	}
	return trust
}

// crlNextUpdate reads the next update of the CRL file at path (which AddCRLFile accepted).
func crlNextUpdate(path string) time.Time {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}
	}
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return time.Time{}
	}
	return crl.NextUpdate
}

// checkWhitelist gets the liste blanche as the node would at start: the file, or a download
// from the URL and the cached copy. It returns the list the node would hold, nil for none.
func (c *serveChecker) checkWhitelist(ctx context.Context, trust *transport.TrustStore) *whitelist.List {
	w := c.cfg.Whitelist
	now := c.now
	vo := &whitelist.VerifyOptions{Roots: trust.Roots(), Signer: w.Signer, UseListDate: w.UseListDate, At: func() time.Time { return now }}
	if w.File != "" {
		l, err := verifyListFile(w.File, vo)
		if err != nil {
			c.add(checkFail, "whitelist", "%s: %v", w.File, err)
			return nil
		}
		c.add(checkOK, "whitelist", "%s: %s", w.File, describeList(l, now))
		return l
	}
	var cached *whitelist.List
	if w.CacheFile != "" {
		l, err := verifyListFile(w.CacheFile, vo)
		switch {
		case errors.Is(err, os.ErrNotExist):
			c.add(checkInfo, "whitelist.cache_file", "%s: no cached copy yet (the node writes it after its first download)", w.CacheFile)
		case err != nil:
			c.add(checkWarn, "whitelist.cache_file", "%s refused: %v", w.CacheFile, err)
		case now.Sub(l.Generated()) > whitelist.DefaultMaxAge:
			cached = l
			c.add(checkWarn, "whitelist.cache_file", "%s: %s, older than %s", w.CacheFile, describeList(l, now), whitelist.DefaultMaxAge)
		default:
			cached = l
			c.add(checkOK, "whitelist.cache_file", "%s: %s", w.CacheFile, describeList(l, now))
		}
	}
	l, transient, err := downloadList(ctx, w.URL, vo, trust.Roots(), now)
	switch {
	case err == nil:
		c.add(checkOK, "whitelist", "%s: %s", w.URL, describeList(l, now))
		return l
	case transient && cached != nil:
		// The node starts on the cached list and keeps retrying: not a reason to keep it down.
		c.add(checkWarn, "whitelist", "%s: %v; the node would start with the cached list and retry", w.URL, err)
		return cached
	case cached != nil:
		c.add(checkFail, "whitelist", "%s: %v; the cached list would never be refreshed", w.URL, err)
		return cached
	default:
		c.add(checkFail, "whitelist", "%s: %v, and no cached list: the node would refuse every recipient (451 4.7.1) until a download succeeds", w.URL, err)
		return nil
	}
}

func describeList(l *whitelist.List, now time.Time) string {
	_, domains := l.Len()
	return fmt.Sprintf("signature and signer verified, generated %s (%s ago), %d domains",
		l.Generated().UTC().Format(time.RFC3339), now.Sub(l.Generated()).Round(time.Minute), domains)
}

func verifyListFile(path string, vo *whitelist.VerifyOptions) (*whitelist.List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return whitelist.Verify(f, vo)
}

// downloadList downloads and verifies the list at url as the node's refresh does (HTTPS with TLS
// 1.2 at least, the server checked against roots), without writing it anywhere. transient
// says whether the failure may go away by itself (network, server error) rather than being a
// wrong URL or a list that does not verify.
func downloadList(ctx context.Context, url string, vo *whitelist.VerifyOptions, roots *x509.CertPool, now time.Time) (_ *whitelist.List, transient bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, serveCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var ue *tls.CertificateVerificationError
		return nil, !errors.As(err, &ue), fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, fmt.Errorf("download: HTTP status %s", resp.Status)
	}
	l, err := whitelist.Verify(resp.Body, vo)
	if err != nil {
		return nil, false, err
	}
	if l.Generated().After(now.Add(whitelist.MaxClockSkew)) {
		return nil, false, fmt.Errorf("%w: generated %s", whitelist.ErrFutureList, l.Generated().Format(time.RFC3339))
	}
	return l, false, nil
}

// checkListed says whether the list names our certificate for our domains: until the ANS
// lists it, the other operators refuse our mail and do not deliver to us.
func (c *serveChecker) checkListed(l *whitelist.List, leaf *x509.Certificate) {
	dn := transport.SubjectDN(leaf)
	for _, d := range c.cfg.Domains {
		if err := l.CheckOperator(d, dn); err != nil {
			c.add(checkWarn, "listed", "%s: %v: the other operators will refuse mail from and to it until the ANS lists %s for it", d, err, dn)
		} else {
			c.add(checkOK, "listed", "%s lists our certificate's DN", d)
		}
	}
}

// listeners are the addresses the node would listen on, by listener name.
func listeners(cfg *node.Config) [][2]string {
	out := [][2]string{{"relay", cfg.Relay.Listen}, {"submission", cfg.Submission.Listen},
		{"submission_tls", cfg.Submission.ListenTLS}, {"metrics", cfg.Metrics.Listen}}
	if cfg.Mailbox.Dir != "" {
		out = append(out, [2]string{"imap", cfg.IMAP.Listen}, [2]string{"imaps", cfg.IMAP.ListenTLS})
	}
	if cfg.API.Enabled {
		out = append(out, [2]string{"api", cfg.API.Listen})
	}
	return out
}

// checkPorts binds each listening address and closes it at once. An address in use while a
// node holds the spool is that node's, not a conflict.
func (c *serveChecker) checkPorts() {
	for _, ln := range listeners(c.cfg) {
		name, addr := ln[0], ln[1]
		if addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			c.add(checkOK, name, "%s can be bound", addr)
			continue
		}
		var le *statelock.LockedError
		switch {
		case errors.Is(err, syscall.EADDRINUSE) && errors.As(statelock.Held(c.cfg.SpoolDir, serveLockName), &le):
			c.add(checkInfo, name, "%s in use by the running node%s", addr, pidSuffix(le.PID))
		case errors.Is(err, syscall.EADDRINUSE):
			c.add(checkFail, name, "%s already in use by another program (ss -ltnp shows which)", addr)
		case errors.Is(err, syscall.EACCES):
			c.add(checkFail, name, "%s: %v: a port below 1024 needs CAP_NET_BIND_SERVICE (the unit's AmbientCapabilities)", addr, err)
		default:
			c.add(checkFail, name, "%s: %v", addr, err)
		}
	}
}

func pidSuffix(pid int) string {
	if pid > 0 {
		return fmt.Sprintf(" (PID %d)", pid)
	}
	return ""
}
