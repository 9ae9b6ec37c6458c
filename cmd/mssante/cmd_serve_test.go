package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// serveFixture is what a serve test needs on disk: our certificate, the test CA and its CRL,
// a signed whitelist and a configuration file, plus the certificate of a peer operator.
type serveFixture struct {
	dir, config, maildir, spool string
	pki                         *testpki.PKI
	signer                      *testpki.Leaf
	server, peer                *testpki.Leaf
	relay, submission, metrics  int
}

const (
	ourDomain  = "x.mssante.test"
	peerDomain = "a.mssante.test"
)

func newServeFixture(t *testing.T, dir string) *serveFixture {
	t.Helper()
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	f := &serveFixture{dir: dir, pki: p, maildir: filepath.Join(dir, "maildir"), spool: filepath.Join(dir, "spool"),
		relay: testenv.FreePort(t), submission: testenv.FreePort(t), metrics: testenv.FreePort(t)}
	mustLeaf := func(l *testpki.Leaf, err error) *testpki.Leaf {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	f.server = mustLeaf(p.Server("mx."+ourDomain, &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
	f.peer = mustLeaf(p.Server("mx."+peerDomain, nil))
	f.signer = mustLeaf(p.Leaf(testpki.ProfileOrgSign, p.Subject("liste-blanche.test", nil), nil))
	crt, key, err := f.server.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), append(p.RootPEM(), p.IntermediatePEM()...), 0o644)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.crl"), crl, 0o644)
	f.writeWhitelist(t, time.Now(), []whitelist.Entry{
		{Domain: ourDomain, OperatorDNs: []string{transport.SubjectDN(f.server.Cert)}},
		{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(f.peer.Cert)}},
	})
	f.config = filepath.Join(dir, "serve.toml")
	cfg := fmt.Sprintf(`hostname = "mx.%[2]s"
domains = ["%[2]s"]
spool_dir = "%[1]s/spool"
[tls]
cert_file = "%[3]s"
key_file = "%[4]s"
ca_files = ["%[1]s/ca.pem"]
no_igc_sante_root = true
crl_files = ["%[1]s/ca.crl"]
[whitelist]
file = "%[1]s/whitelist.xml"
signer = "%[5]s"
[relay]
listen = "127.0.0.1:%[6]d"
[submission]
listen = "127.0.0.1:%[7]d"
listen_tls = ""
[[bal]]
address = "dr@%[2]s"
login = "dr"
password = "secret"
[local]
maildir = "%[1]s/maildir"
[queue]
retry_first = "100ms"
retry_max = "500ms"
[audit]
dir = "%[1]s/audit"
[metrics]
listen = "127.0.0.1:%[8]d"
[log]
level = "warn"
`, dir, ourDomain, crt, key, transport.SubjectDN(f.signer.Cert), f.relay, f.submission, f.metrics)
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *serveFixture) writeWhitelist(t *testing.T, gen time.Time, entries []whitelist.Entry) {
	t.Helper()
	b, err := whitelist.Sign(whitelist.NewList(gen, entries), f.signer.Key, f.signer.Chain)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(f.dir, "whitelist.xml.tmp")
	os.WriteFile(tmp, b, 0o644)
	if err := os.Rename(tmp, filepath.Join(f.dir, "whitelist.xml")); err != nil {
		t.Fatal(err)
	}
}

// relayClient connects to the relay listener as the peer operator.
// serveUntilCleanup runs "mssante serve" on the fixture's configuration until the test
// ends, then stops it and checks that it exits 0 within 40 s.
func (f *serveFixture) serveUntilCleanup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var errb testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exit %d: %s", code, errb.String())
			}
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop")
		}
	})
}

func (f *serveFixture) relayClient() (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.relay), 2*time.Second)
	if err != nil {
		return nil, err
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: f.pki.Roots(), ServerName: "localhost",
		Certificates: []tls.Certificate{f.peer.TLSCertificate()}})
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	return c, nil
}

// sendOne sends one message with header X-Seq: seq; nil means the server answered 250.
func sendOne(c *smtp.Client, seq int) error {
	if err := c.Mail("sender@"+peerDomain, nil); err != nil {
		return err
	}
	if err := c.Rcpt("dr@"+ourDomain, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: <sender@%s>\r\nTo: <dr@%s>\r\nSubject: load\r\nX-Seq: %d\r\n\r\n%s\r\n", peerDomain, ourDomain, seq, strings.Repeat("0123456789", 100))
	return w.Close()
}

// delivered returns how many times each X-Seq is in the Maildir.
func (f *serveFixture) delivered(t *testing.T) map[int]int {
	t.Helper()
	out := map[int]int{}
	dir := filepath.Join(f.maildir, "dr@"+ourDomain, "new")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var seq int
		if i := bytes.Index(b, []byte("\r\nX-Seq: ")); i >= 0 {
			fmt.Sscanf(string(b[i+9:]), "%d", &seq)
			out[seq]++
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeUsageAndConfig(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	if code := run(context.Background(), []string{"serve"}, e); code != 2 {
		t.Fatalf("no --config: exit %d", code)
	}
	if code := run(context.Background(), []string{"serve", "--print-config"}, e); code != 0 || !strings.Contains(out.String(), "[delivery]") {
		t.Fatalf("--print-config: %d %s", code, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("hostname = \"x\"\nunknown_key = 1\n"), 0o600)
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--config", bad}, e); code != 1 || !strings.Contains(errb.String(), "unknown settings: unknown_key") {
		t.Fatalf("bad config: %d %s", code, errb.String())
	}
	f := newServeFixture(t, t.TempDir())
	out.Reset()
	if code := run(context.Background(), []string{"serve", "--config", f.config, "--check"}, e); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("--check: %d %s %s", code, out.String(), errb.String())
	}
}

// mssante serve end to end in-process: relay in, local delivery, metrics, SIGHUP reload of
// the whitelist, graceful stop.
// A second "mssante serve" on the same spool is refused before it opens anything, naming the
// process that holds it; --check is still allowed beside a running node.
func TestServeSpoolLocked(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var errb testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	waitUntil(t, "relay listening", 20*time.Second, func() bool {
		c, err := f.relayClient()
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	code, _, stderr := runCmd(t, "serve", "--config", f.config)
	want := fmt.Sprintf("the spool %s is in use (another \"mssante serve\", process %d)", f.spool, os.Getpid())
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("second serve: exit %d, stderr %q, want %q", code, stderr, want)
	}
	// Its ports are the running node's: said, not counted as a problem.
	code, out, stderr := runCmd(t, "serve", "--config", f.config, "--check")
	inUse := fmt.Sprintf("info  relay: 127.0.0.1:%d in use by the running node (PID %d)", f.relay, os.Getpid())
	if code != 0 || !strings.Contains(out, "configuration OK") || !strings.Contains(out, inUse) {
		t.Errorf("--check beside a running node: exit %d, want 0 and %q:\n%s%s", code, inUse, out, stderr)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	// Stopped, the spool is free again.
	unlock, err := statelock.Lock(f.spool, serveLockName)
	if err != nil {
		t.Fatalf("after stop: %v", err)
	}
	unlock()
}

func TestServeReloadAndMetrics(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var errb testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	var c *smtp.Client
	waitUntil(t, "relay listening", 20*time.Second, func() bool {
		var err error
		c, err = f.relayClient()
		return err == nil
	})
	if err := sendOne(c, 1); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Quit()
	waitUntil(t, "local delivery", 20*time.Second, func() bool { return f.delivered(t)[1] == 1 })

	// The queue records the outcome just after the mailbox holds the message.
	var m []byte
	waitUntil(t, "delivery counted", 20*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", f.metrics))
		if err != nil {
			t.Fatal(err)
		}
		m, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(m), "mssante_queue_messages 0")
	})
	for _, want := range []string{`mssante_messages_accepted_total{listener="relay"} 1`, `mssante_recipients_total{outcome="delivered"} 1`,
		"mssante_queue_messages 0", `mssante_certificate_expiry_seconds{name="server"} 9`, "mssante_accept_latency_seconds_bucket", "mssante_whitelist_age_seconds"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}

	// The peer leaves the whitelist and our certificate is renewed: after SIGHUP its mail is
	// refused and new connections see the new certificate.
	f.writeWhitelist(t, time.Now().Add(time.Second), []whitelist.Entry{{Domain: ourDomain, OperatorDNs: []string{transport.SubjectDN(f.server.Cert)}}})
	renewed, err := f.pki.Server("mx."+ourDomain, &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := renewed.WriteFiles(f.dir, "server"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "renewed certificate served", 20*time.Second, func() bool {
		c, err := f.relayClient()
		if err != nil {
			return false
		}
		defer c.Close()
		if err := c.Noop(); err != nil { // runs the handshake
			return false
		}
		st, ok := c.TLSConnectionState()
		return ok && len(st.PeerCertificates) > 0 && st.PeerCertificates[0].SerialNumber.Cmp(renewed.Cert.SerialNumber) == 0
	})
	waitUntil(t, "reload", 20*time.Second, func() bool {
		c, err := f.relayClient()
		if err != nil {
			return false
		}
		defer c.Close()
		var se *smtp.SMTPError
		return errors.As(sendOne(c, 2), &se) && se.Code == 550 && se.EnhancedCode == smtp.EnhancedCode{5, 7, 1}
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errb.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
}
