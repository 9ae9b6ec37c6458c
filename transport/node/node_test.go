package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/whitelist"
)

// operator is one node of a test trust space, on 127.0.0.1 listeners.
type operator struct {
	dir, domain string
	server, app *testpki.Leaf // server certificate, client certificate of the APP BAL
	lns         map[string]net.Listener
	extra       string                         // appended to the configuration
	setup       func(*node.Node, *node.Config) // called between New and Serve
	mbox        string                         // added to its [mailbox] section
	store       string                         // its [store] table; when set, no [mailbox] dir
	queue       string                         // added to its [queue] section
}

func (o *operator) addr(name string) string { return o.lns[name].Addr().String() }
func (o *operator) appBAL() string          { return "dpi@" + o.domain }

// space is a test PKI, a signed whitelist and some operators routing to each other.
type space struct {
	dir  string
	pki  *testpki.PKI
	ops  []*operator
	sign *testpki.Leaf
}

func newSpace(t testing.TB, domains ...string) *space {
	t.Helper()
	dir := t.TempDir()
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	s := &space{dir: dir, pki: p}
	must := func(l *testpki.Leaf, err error) *testpki.Leaf {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	s.sign = must(p.Leaf(testpki.ProfileOrgSign, p.Subject("liste-blanche.test", nil), nil))
	os.WriteFile(filepath.Join(dir, "ca.pem"), append(p.RootPEM(), p.IntermediatePEM()...), 0o644)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.crl"), crl, 0o644)
	var entries []whitelist.Entry
	for _, d := range domains {
		o := &operator{dir: filepath.Join(dir, d), domain: d, lns: map[string]net.Listener{}}
		os.MkdirAll(o.dir, 0o700)
		o.server = must(p.Server("mx."+d, &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
		o.app = must(p.Org("dpi@"+d, nil))
		if _, _, err := o.server.WriteFiles(o.dir, "server"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"relay", "submission", "imap", "imaps"} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			o.lns[n] = l
		}
		entries = append(entries, whitelist.Entry{Domain: d, OperatorDNs: []string{transport.SubjectDN(o.server.Cert)}})
		s.ops = append(s.ops, o)
	}
	doc, err := whitelist.Sign(whitelist.NewList(time.Now().Add(-time.Second), entries), s.sign.Key, s.sign.Chain)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "whitelist.xml"), doc, 0o644)
	return s
}

// config is the node configuration of o, mailbox side on.
func (s *space) config(t testing.TB, o *operator) *node.Config {
	t.Helper()
	cfg, err := node.LoadConfig(strings.NewReader(s.configTOML(o)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// configTOML is the text of config.
func (s *space) configTOML(o *operator) string {
	var routes []string
	for _, x := range s.ops {
		if x != o {
			routes = append(routes, fmt.Sprintf("%q = %q", x.domain, x.addr("relay")))
		}
	}
	store := o.store + "\n[mailbox]"
	if o.store == "" {
		store = "[mailbox]\ndir = \"" + o.dir + "/mailbox\""
	}
	return fmt.Sprintf(`hostname = "mx.%[2]s"
domains = ["%[2]s"]
spool_dir = "%[1]s/spool"
[tls]
cert_file = "%[1]s/server.crt.pem"
key_file = "%[1]s/server.key.pem"
ca_files = ["%[3]s/ca.pem"]
no_igc_sante_root = true
crl_files = ["%[3]s/ca.crl"]
[whitelist]
file = "%[3]s/whitelist.xml"
signer = %[4]q
[[bal]]
address = "dpi@%[2]s"
cert_dn = %[5]q
%[9]s
%[8]s
[delivery]
routes = { %[6]s }
idle_timeout = "1h"
[queue]
retry_first = "200ms"
retry_max = "1s"
%[10]s
[audit]
dir = "%[1]s/audit"
[metrics]
listen = ""
%[7]s`, o.dir, o.domain, s.dir, transport.SubjectDN(s.sign.Cert), transport.SubjectDN(o.app.Cert), strings.Join(routes, ", "), o.extra, o.mbox, store, o.queue)
}

// start runs the node of o until ctx ends; the returned channel gives Serve's result. The
// test's cleanup waits for Serve to return (ctx is cancelled by then), so that nothing the
// node writes as it stops (the queue's index) races with the removal of its folders.
func (s *space) start(t testing.TB, ctx context.Context, o *operator, opts *node.Options) (*node.Node, chan error) {
	t.Helper()
	if opts == nil {
		opts = &node.Options{}
	}
	opts.Listeners = o.lns
	cfg := s.config(t, o)
	n, err := node.New(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(n, cfg)
	}
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		err := n.Serve(ctx)
		close(finished)
		done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("the node did not stop within 30 s of the test's end")
		}
	})
	return n, done
}

func (s *space) clientTLS(o *operator, cert *testpki.Leaf) *tls.Config {
	c := &tls.Config{RootCAs: s.pki.Roots(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLSCertificate()}
	}
	return c
}

// submit sends msg from o's APP BAL (SASL EXTERNAL) with the given envelope.
func (s *space) submit(t *testing.T, o *operator, from, to string, msg string) {
	t.Helper()
	c, err := smtp.DialStartTLS(o.addr("submission"), s.clientTLS(o, o.app))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// relay sends msg to o's relay as the operator peer (its server certificate).
func (s *space) relay(t *testing.T, o, peer *operator, from, to, msg string) {
	t.Helper()
	c, err := smtp.DialStartTLS(o.addr("relay"), s.clientTLS(o, peer.server))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail(from, []string{to}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// inbox reads the INBOX of o's APP BAL over IMAPS with its certificate.
func (s *space) inbox(t *testing.T, o *operator) [][]byte {
	t.Helper()
	c, err := imapclient.DialTLS(o.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(o, o.app)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	if sel.NumMessages > 0 {
		var set imap.SeqSet
		set.AddRange(1, sel.NumMessages)
		msgs, err := c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			for _, b := range m.BodySection {
				out = append(out, b.Bytes)
			}
		}
	}
	c.Logout().Wait()
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two nodes exchange mail both ways (each keeps a pooled session into the other), their APP
// BALs read it over IMAPS with the Return-Path of the envelope sender, and both stop at once
// without waiting for the hour-long idle timeout of their pools.
func TestTwoNodesAndStop(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, doneA := s.start(t, ctx, a, nil)
	_, doneB := s.start(t, ctx, b, nil)
	msg := func(from, to string) string {
		return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: test\r\nMessage-ID: <%s.1@test>\r\n\r\nbonjour\r\n", from, to, from)
	}
	s.submit(t, a, a.appBAL(), b.appBAL(), msg(a.appBAL(), b.appBAL()))
	s.submit(t, b, b.appBAL(), a.appBAL(), msg(b.appBAL(), a.appBAL()))
	for _, o := range []*operator{a, b} {
		var got [][]byte
		waitUntil(t, "delivery to "+o.domain, func() bool { got = s.inbox(t, o); return len(got) == 1 })
		other := a
		if o == a {
			other = b
		}
		if want := "Return-Path: <" + other.appBAL() + ">\r\n"; !bytes.HasPrefix(got[0], []byte(want)) {
			t.Errorf("%s: message does not start with %q:\n%s", o.domain, want, got[0])
		}
	}
	start := time.Now()
	cancel()
	for _, d := range []chan error{doneA, doneB} {
		select {
		case err := <-d:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(25 * time.Second): // shorter than limits.shutdown_grace (30 s by default)
			t.Fatal("a node did not stop: it waits for the pooled session of the other")
		}
	}
	t.Logf("both nodes stopped in %s", time.Since(start))
}

// A stop waits limits.shutdown_grace for a session in the middle of DATA, then cuts it: Serve
// returns, the sender gets no acknowledgement, and nothing half-received is queued.
func TestStopCutsSessionAfterGrace(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a := s.ops[0]
	a.extra = "[limits]\nshutdown_grace = \"300ms\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := s.start(t, ctx, a, nil)
	c, err := smtp.DialStartTLS(a.addr("submission"), s.clientTLS(a, a.app))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	to := "dpi@b.mssante.test"
	if err := c.Mail(a.appBAL(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: cut\r\n\r\nfirst half\r\n", a.appBAL(), to)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the node waited for the unfinished session beyond its 300 ms grace")
	}
	t.Logf("stopped in %s", time.Since(start))
	fmt.Fprintf(w, "second half\r\n")
	if err := w.Close(); err == nil {
		t.Fatal("a message cut by the stop was acknowledged")
	}
	q, err := queue.Open(&queue.Options{Dir: filepath.Join(a.dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if n := q.Stats().Messages; n != 0 {
		t.Fatalf("%d messages queued after a cut DATA", n)
	}
}

// The test responder answers the envelope sender (Return-Path), not the From header.
func TestResponderAnswersEnvelopeSender(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "peer.mssante.test")
	a, peer := s.ops[0], s.ops[1]
	a.extra = "[responder]\naddress = \"reponse.automatique@a.mssante.test\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, done := s.start(t, ctx, a, nil) // the peer does not run: replies stay in the queue
	s.relay(t, a, peer, "retours@peer.mssante.test", "reponse.automatique@a.mssante.test",
		"From: Dr Martin <dr.martin@peer.mssante.test>\r\nTo: <reponse.automatique@a.mssante.test>\r\nSubject: essai\r\nMessage-ID: <e1@peer>\r\n\r\ntest\r\n")
	var reply *struct{ from, to string }
	waitUntil(t, "the automatic reply in the queue", func() bool {
		for _, id := range n.Queue().IDs() {
			env, err := n.Queue().Get(id)
			if err == nil && env.Source == "responder" && len(env.Rcpts) == 1 {
				reply = &struct{ from, to string }{env.From, env.Rcpts[0].Addr}
				return true
			}
		}
		return false
	})
	if reply.to != "retours@peer.mssante.test" || reply.from != "" {
		t.Errorf("reply from <%s> to <%s>, want from <> to the envelope sender retours@peer.mssante.test", reply.from, reply.to)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The purge loop deletes the messages past their BAL's retention and records it in the
// connector's audit log, with identifiers and counts only.
func TestPurgeAudited(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	a.mbox = "default_retention = \"24h\"\npurge_interval = \"1h\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := s.config(t, a)
	n, err := node.New(ctx, cfg, &node.Options{Listeners: a.lns, Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	bal, err := n.Store.GetBAL(ctx, a.appBAL())
	if err != nil || bal.Retention != 24*time.Hour {
		t.Fatalf("BAL from [[bal]]: %+v %v, want the default retention", bal, err)
	}
	secret := "Subject: Diagnostic confidentiel\r\n\r\nINS 1234567890123\r\n"
	if _, err := n.Store.Append(ctx, a.appBAL(), mailbox.Inbox, strings.NewReader(secret), nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	auditFile := filepath.Join(a.dir, "audit", "audit.jsonl")
	var line string
	waitUntil(t, "the purge audit record", func() bool {
		f, err := os.Open(auditFile)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"event":"purged"`) {
				line = sc.Text()
				return true
			}
		}
		return false
	})
	for _, want := range []string{`"bal":"` + a.appBAL() + `"`, `"reason":"messages=1"`, `"source":"retention"`} {
		if !strings.Contains(line, want) {
			t.Errorf("audit record %s lacks %s", line, want)
		}
	}
	for _, leak := range []string{"Diagnostic", "1234567890123"} {
		if strings.Contains(line, leak) {
			t.Errorf("audit record leaks content: %s", line)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := mailbox.OpenSQLite(context.Background(), cfg.Mailbox.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if b, _ := st.GetBAL(context.Background(), a.appBAL()); b == nil || b.Messages != 0 {
		t.Errorf("after purge: %+v", b)
	}
}

// Reload gives the IMAP listeners the renewed certificate too.
func TestReloadIMAPCertificate(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, done := s.start(t, ctx, a, nil)
	serial := func() string {
		conn, err := tls.Dial("tcp", a.addr("imaps"), s.clientTLS(a, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != a.server.Cert.SerialNumber.String() {
		t.Fatalf("IMAPS serves serial %s, want %s", got, a.server.Cert.SerialNumber)
	}
	renewed, err := s.pki.Server("mx."+a.domain, &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := renewed.WriteFiles(a.dir, "server"); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != renewed.Cert.SerialNumber.String() {
		t.Errorf("after Reload IMAPS serves serial %s, want the renewed %s", got, renewed.Cert.SerialNumber)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The mailbox side settings are checked when the configuration loads.
func TestConfigRefusals(t *testing.T) {
	base := "hostname = \"mx.a.test\"\ndomains = [\"a.test\"]\nspool_dir = \"/s\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[whitelist]\nfile = \"w\"\n[audit]\ndir = \"/a\"\n"
	for _, c := range []struct{ name, extra, want string }{
		{"imap without store", "[imap]\nlisten_tls = \":993\"\n", "imap and responder need mailbox.dir"},
		{"responder without store", "[responder]\naddress = \"r@a.test\"\n", "imap and responder need mailbox.dir"},
		{"bad responder", "[mailbox]\ndir = \"/m\"\n[responder]\naddress = \"nobody\"\n", "responder.address"},
		{"zero purge interval", "[mailbox]\ndir = \"/m\"\npurge_interval = \"0s\"\n", "purge_interval must be positive"},
		{"negative quota", "[mailbox]\ndir = \"/m\"\ndefault_quota = -1\n", "must not be negative"},
		{"bad flag sync", "[mailbox]\ndir = \"/m\"\nflag_sync = \"off\"\n", "flag_sync must be full or normal"},
		{"zero expunge log", "[mailbox]\ndir = \"/m\"\nexpunge_log = 0\n", "expunge_log must be positive"},
		{"negative expunge log", "[mailbox]\ndir = \"/m\"\nexpunge_log = -5\n", "expunge_log must be positive"},
		{"negative shutdown grace", "[limits]\nshutdown_grace = \"-1s\"\n", "shutdown_grace must not be negative"},
		{"bad BAL type", "[[bal]]\naddress = \"x@a.test\"\nlogin = \"x\"\ntype = \"XYZ\"\n", "type must be PER, ORG or APP"},
	} {
		_, err := node.LoadConfig(strings.NewReader(base + c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := node.LoadConfig(strings.NewReader(base + "[mailbox]\ndir = \"/m\"\nflag_sync = \"normal\"\n[imap]\nlisten = \":143\"\nlisten_tls = \":993\"\n[responder]\naddress = \"r@a.test\"\n")); err != nil {
		t.Errorf("valid mailbox side: %v", err)
	}
}
