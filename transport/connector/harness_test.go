package connector

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/antivirus"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/whitelist"
)

var (
	pkiOnce sync.Once
	pkiVal  *testpki.PKI
	pkiErr  error
)

func testPKI(t testing.TB) *testpki.PKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = testpki.New(nil) }) // RSA: the Réf. #2 suites are ECDHE_RSA
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func must(t testing.TB) func(*testpki.Leaf, error) *testpki.Leaf {
	return func(l *testpki.Leaf, err error) *testpki.Leaf {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

// trustStore returns a trust store of the test PKI with its current CRL.
func trustStore(t testing.TB) *transport.TrustStore {
	t.Helper()
	p := testPKI(t)
	ts := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	ts.AddRoot(p.Root)
	ts.AddIntermediate(p.Intermediate)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.AddCRL(crl); err != nil {
		t.Fatal(err)
	}
	return ts
}

// switchPolicy lets a test swap the whitelist (or remove it) while servers run.
type switchPolicy struct {
	mu sync.Mutex
	l  *whitelist.List
}

func (p *switchPolicy) get() *whitelist.List             { p.mu.Lock(); defer p.mu.Unlock(); return p.l }
func (p *switchPolicy) set(l *whitelist.List)            { p.mu.Lock(); p.l = l; p.mu.Unlock() }
func (p *switchPolicy) CheckDomain(d string) error       { return p.get().CheckDomain(d) }
func (p *switchPolicy) CheckOperator(d, dn string) error { return p.get().CheckOperator(d, dn) }
func (p *switchPolicy) Domains(fn func(string, []whitelist.Entry) bool) {
	p.get().Domains(fn)
}

// node is one connector: relay and submission listeners, queue, delivery, Maildir.
type node struct {
	domain    string
	server    *testpki.Leaf // MTA certificate (relay server and delivery client)
	bal       string        // the BAL hosted here
	balCert   *testpki.Leaf
	policy    *switchPolicy
	q         *queue.Queue
	maildir   *Maildir
	audit     *audit.Log
	metrics   *metrics.Metrics
	relay     *Server
	sub       *Server
	delivery  *Delivery
	relayAddr string
	subAddr   string
	spool     string
	auditDir  string
}

type nodeOpts struct {
	scanner  antivirus.Scanner
	noRun    bool // do not start the delivery loop
	perPeer  int
	maxRcpts int
	maxBytes int64
	routes   map[string]string
	timeout  time.Duration
	limits   func(*ServerOptions) // changes the options of both servers
	noSync   bool                 // queue without fsync (benchmarks of the rest of the path)
}

func newNode(t testing.TB, domain string, o *nodeOpts) *node {
	t.Helper()
	if o == nil {
		o = &nodeOpts{}
	}
	p := testPKI(t)
	n := &node{domain: domain, policy: &switchPolicy{}, metrics: metrics.New()}
	n.server = must(t)(p.Server("mx."+domain, &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
	n.bal = "bal@" + domain
	n.balCert = must(t)(p.Org(n.bal, nil))
	n.spool = t.TempDir()
	var err error
	n.q, err = queue.Open(&queue.Options{Dir: n.spool, Schedule: queue.Schedule{First: 50 * time.Millisecond, Max: time.Second}, NoSync: o.noSync})
	if err != nil {
		t.Fatal(err)
	}
	n.maildir = &Maildir{Dir: t.TempDir(), Mailboxes: map[string]bool{n.bal: true, "dr@" + domain: true}}
	n.auditDir = t.TempDir()
	n.audit, err = audit.Open(&audit.Options{Dir: n.auditDir})
	if err != nil {
		t.Fatal(err)
	}
	tc := &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{n.server.TLSCertificate()}}
	mk := func(mode Mode) (*Server, string) {
		so := &ServerOptions{Mode: mode, Hostname: "mx." + domain, TLS: tc, Policy: ListedOperator(n.policy),
			LocalDomains: []string{domain}, Local: n.maildir, Queue: n.q, Scanner: o.scanner, Audit: n.audit, Metrics: n.metrics,
			Accounts: &StaticAccounts{ByDN: map[string]string{transport.SubjectDN(n.balCert.Cert): n.bal},
				Passwords: map[string]PasswordAccount{"bal": {Password: "secret", BAL: n.bal}}},
			AllowPlain: true, MaxConnsPerPeer: o.perPeer, MaxRecipients: o.maxRcpts, MaxMessageBytes: o.maxBytes,
			ReadTimeout: cmp.Or(o.timeout, 20*time.Second)}
		if o.limits != nil {
			o.limits(so)
		}
		s, err := NewServer(so)
		if err != nil {
			t.Fatal(err)
		}
		return s, serve(t, s).Addr().String()
	}
	n.relay, n.relayAddr = mk(ModeRelay)
	n.sub, n.subAddr = mk(ModeSubmission)
	n.delivery, err = NewDelivery(&DeliveryOptions{Hostname: "mx." + domain, TLS: tc, Policy: n.policy,
		LocalDomains: []string{domain}, Local: n.maildir, Routes: o.routes, Audit: n.audit, Metrics: n.metrics,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if !o.noRun {
		go func() {
			defer close(done)
			n.q.Run(ctx, n.delivery, &RunOptions{Notifier: &DSNNotifier{Queue: n.q, Hostname: "mx." + domain}})
		}()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		n.q.Close()
		n.delivery.Close()
		n.audit.Close()
	})
	return n
}

// RunOptions is queue.RunOptions, named here for brevity.
type RunOptions = queue.RunOptions

// trust lists each node's MTA certificate DN for its domain, in every node's whitelist.
func trust(nodes ...*node) *whitelist.List {
	var es []whitelist.Entry
	for _, n := range nodes {
		es = append(es, whitelist.Entry{Domain: n.domain, OperatorDNs: []string{transport.SubjectDN(n.server.Cert)}})
	}
	l := whitelist.NewList(time.Now(), es)
	for _, n := range nodes {
		n.policy.set(l)
	}
	return l
}

// route makes a deliver to b's relay listener.
func route(a, b *node) {
	if a.delivery.opts.Routes == nil {
		a.delivery.opts.Routes = map[string]string{}
	}
	a.delivery.opts.Routes[b.domain] = b.relayAddr
}

// clientTLS returns a client TLS config presenting l (nil: no certificate).
func clientTLS(l *testpki.Leaf, p *testpki.PKI) *tls.Config {
	c := &tls.Config{RootCAs: p.Roots(), ServerName: "localhost"}
	if l != nil {
		c.Certificates = []tls.Certificate{l.TLSCertificate()}
	}
	return c
}

// dialSMTP connects with STARTTLS (tc != nil) or in plaintext, then EHLO.
func dialSMTP(t *testing.T, addr string, tc *tls.Config) (*smtp.Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var c *smtp.Client
	if tc != nil {
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err == nil {
			err = c.Hello("client.test")
		}
	} else {
		c = smtp.NewClient(conn)
		err = c.Hello("client.test")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// code renders an SMTP error as "550 5.7.1", or "ok" for nil.
func code(err error) string {
	if err == nil {
		return "ok"
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return "error: " + err.Error()
}

// send runs one transaction and returns the code of the first failing step ("ok" if none).
func send(c *smtp.Client, from string, to []string, body string, mo *smtp.MailOptions, ro *smtp.RcptOptions) string {
	if err := c.Mail(from, mo); err != nil {
		return code(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, ro); err != nil {
			return code(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return code(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return code(err)
	}
	return code(w.Close())
}

// submit sends as n's BAL through n's submission listener with SASL EXTERNAL.
func submit(t *testing.T, n *node, to []string, body string, ro *smtp.RcptOptions) string {
	t.Helper()
	c, err := dialSMTP(t, n.subAddr, clientTLS(n.balCert, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatalf("AUTH EXTERNAL: %v", err)
	}
	return send(c, n.bal, to, body, nil, ro)
}

func msg(from, to, subject string) string {
	return "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@test>\r\n\r\nbody line\r\n"
}

// waitFor polls cond until it holds or 20 s pass (events, not timing, decide the outcome).
func waitFor(t *testing.T, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, d := range detail {
				what += "\n" + d()
			}
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *node) count(addr string) int {
	m, _ := n.maildir.Messages(addr)
	return len(m)
}

func (n *node) read(t *testing.T, addr string) []string {
	t.Helper()
	paths, err := n.maildir.Messages(addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// rawSession drives SMTP by hand over STARTTLS (for smuggling payloads).
type rawSession struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func rawDial(t testing.TB, addr string, tc *tls.Config) *rawSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	s := &rawSession{t: t, c: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { s.c.Close() })
	s.expect("220")
	s.cmd("EHLO client.test", "250")
	s.cmd("STARTTLS", "220")
	tconn := tls.Client(conn, tc)
	if err := tconn.Handshake(); err != nil {
		t.Fatal(err)
	}
	tconn.SetDeadline(time.Now().Add(30 * time.Second))
	s.c, s.r = tconn, bufio.NewReader(tconn)
	s.cmd("EHLO client.test", "250")
	return s
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (s *rawSession) reply() string {
	s.t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "EOF"
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (s *rawSession) expect(prefix string) string {
	s.t.Helper()
	l := s.reply()
	if !strings.HasPrefix(l, prefix) {
		s.t.Fatalf("got %q, want %s", l, prefix)
	}
	return l
}

func (s *rawSession) cmd(line, want string) string {
	s.t.Helper()
	s.write(line + "\r\n")
	return s.expect(want)
}

func (s *rawSession) write(data string) {
	s.t.Helper()
	if _, err := s.c.Write([]byte(data)); err != nil {
		s.t.Fatal(err)
	}
}

// trustWith gives n a whitelist listing itself and domain → dn.
func trustWith(t *testing.T, n *node, domain, dn string) *whitelist.List {
	t.Helper()
	l := whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: n.domain, OperatorDNs: []string{transport.SubjectDN(n.server.Cert)}},
		{Domain: domain, OperatorDNs: []string{dn}},
	})
	n.policy.set(l)
	return l
}

// implicitSubmission runs a's submission listener with implicit TLS (port 465), its APP BAL
// bound to its certificate and b.mssante.test trusted, until the test ends.
func implicitSubmission(t *testing.T) (*node, net.Listener) {
	t.Helper()
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	s, err := NewServer(&ServerOptions{Mode: ModeSubmission, ImplicitTLS: true, Hostname: "mx.a.mssante.test",
		TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
		Policy: a.policy, LocalDomains: []string{a.domain}, Local: a.maildir, Queue: a.q,
		Accounts: &StaticAccounts{ByDN: map[string]string{transport.SubjectDN(a.balCert.Cert): a.bal}}})
	if err != nil {
		t.Fatal(err)
	}
	return a, serve(t, s)
}

// serve runs s on a loopback listener until the test ends.
func serve(t testing.TB, s *Server) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l
}
