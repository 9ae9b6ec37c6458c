package bal

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// testPKI holds the certificates of the throw-away peers: a server certificate for
// localhost and the client certificate of the BAL bal-app@test.example.
type testPKI struct {
	pki    *testpki.PKI
	server *testpki.Leaf
	client *testpki.Leaf
	trust  *transport.TrustStore
	dir    string // PEM files for the daemons
}

const testBAL = "bal-app@test.example"

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := p.Org(testBAL, nil)
	if err != nil {
		t.Fatal(err)
	}
	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	trust.AddRoot(p.Root)
	trust.AddIntermediate(p.Intermediate)
	crl, err := p.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := trust.AddCRL(crl); err != nil {
		t.Fatal(err)
	}
	return &testPKI{pki: p, server: srv, client: cli, trust: trust}
}

// files writes the PEM files the daemons read into dir.
func (p *testPKI) files(t testing.TB, dir string) {
	t.Helper()
	if _, _, err := p.server.WriteFiles(dir, "server"); err != nil {
		t.Fatal(err)
	}
	ca := append(append([]byte{}, p.pki.RootPEM()...), p.pki.IntermediatePEM()...)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	p.dir = dir
}

// clientTLS is the BAL's TLS configuration: its certificate, a trust store holding the test
// PKI (not the real IGC-Santé root) with its CRL.
func (p *testPKI) clientTLS() transport.TLSOptions {
	return transport.TLSOptions{
		Certificates: []tls.Certificate{p.client.TLSCertificate()},
		Trust:        p.trust,
		AllowTLS13:   true,
	}
}

// shortTempDir returns a folder with a short path (Unix socket paths are limited to 108
// bytes, too short for t.TempDir under Postfix and Dovecot) that mail processes running
// as uid "mail" can traverse.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// mailPeers is a throw-away Postfix (submission with STARTTLS and a client certificate,
// DSN, local delivery to one Maildir) and a throw-away Dovecot reading that Maildir (IMAP
// STARTTLS and IMAPS, client certificate required, SASL EXTERNAL).
type mailPeers struct {
	dir                  string
	submission           string // STARTTLS
	submissions          string // implicit TLS (SMTPS)
	imap, imaps          string
	postfixCfg           string
	dovecotCfg, dovePID  string
	maildir              string
	postfixLog, doveLog  string
	submissionPlainInput string // plaintext loopback port for smtp-source
}

// startMailPeers starts Postfix and Dovecot (peers-recipes.md §2 and §3) and stops them in
// t.Cleanup. Mail for @test.example lands in one Maildir that Dovecot serves to
// bal-app@test.example; mail for any other domain bounces at once (a failure DSN).
func startMailPeers(t testing.TB, p *testPKI) *mailPeers {
	t.Helper()
	postfix := testenv.Require(t, "postfix")
	testenv.Require(t, "dovecot")
	testenv.Require(t, "postmap")
	w := shortTempDir(t, "bal")
	m := &mailPeers{dir: w}
	for _, d := range []string{"pki", "pf/etc", "pf/spool", "pf/data", "vmail", "dv/run", "dv/state"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.files(t, filepath.Join(w, "pki"))
	chown(t, "postfix:postfix", filepath.Join(w, "pf/data"))
	os.Chmod(filepath.Join(w, "pf/data"), 0o700)
	chown(t, "mail:mail", filepath.Join(w, "vmail"))

	subPort, plainPort, smtpsPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	m.submission = fmt.Sprintf("127.0.0.1:%d", subPort)
	m.submissions = fmt.Sprintf("127.0.0.1:%d", smtpsPort)
	m.submissionPlainInput = fmt.Sprintf("127.0.0.1:%d", plainPort)
	m.postfixCfg = filepath.Join(w, "pf/etc")
	m.postfixLog = filepath.Join(w, "pf/maillog")
	m.maildir = filepath.Join(w, "vmail/Maildir")
	mainCf := fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/pf/etc
queue_directory = %[1]s/pf/spool
data_directory = %[1]s/pf/data
maillog_file = %[1]s/pf/maillog
maillog_file_prefixes = %[1]s
syslog_name = postfix-bal-test
myhostname = mx.test.example
mydomain = test.example
myorigin = $mydomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = test.example
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:8
virtual_gid_maps = static:8
virtual_minimum_uid = 8
default_transport = error:no such domain on this test server
# bench.example: accepted and thrown away (bench/bal)
transport_maps = inline:{ bench.example=discard: }
smtp_tls_security_level = none
smtpd_tls_cert_file = %[1]s/pki/server.crt.pem
smtpd_tls_key_file = %[1]s/pki/server.key.pem
smtpd_tls_CAfile = %[1]s/pki/ca.pem
smtpd_tls_security_level = encrypt
smtpd_tls_req_ccert = yes
smtpd_tls_received_header = yes
smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination
message_size_limit = 52428800
virtual_mailbox_limit = 0
smtpd_reject_unlisted_recipient = no
bounce_queue_lifetime = 0
`, w)
	masterCf := fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
127.0.0.1:%d inet n - n - - smtpd
  -o smtpd_tls_security_level=none
  -o smtpd_tls_req_ccert=no
  -o { smtpd_relay_restrictions = permit_mynetworks, reject }
127.0.0.1:%d inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, subPort, plainPort, smtpsPort)
	writeFile(t, filepath.Join(w, "pf/etc/main.cf"), mainCf)
	writeFile(t, filepath.Join(w, "pf/etc/master.cf"), masterCf)
	runCmd(t, postfix, "-c", m.postfixCfg, "start")
	t.Cleanup(func() {
		exec.Command(postfix, "-c", m.postfixCfg, "stop").Run()
		if t.Failed() {
			if b, err := os.ReadFile(m.postfixLog); err == nil {
				t.Logf("postfix log:\n%s", tail(b, 40))
			}
		}
	})

	imapPort, imapsPort := testenv.FreePort(t), testenv.FreePort(t)
	m.imap = fmt.Sprintf("127.0.0.1:%d", imapPort)
	m.imaps = fmt.Sprintf("127.0.0.1:%d", imapsPort)
	m.dovecotCfg = filepath.Join(w, "dv/dovecot.conf")
	m.doveLog = filepath.Join(w, "dv/dovecot.log")
	m.dovePID = filepath.Join(w, "dv/run/master.pid")
	writeFile(t, filepath.Join(w, "dv/users-external"), testBAL+":::::::nopassword\n")
	writeFile(t, filepath.Join(w, "dv/users"), testBAL+":{PLAIN}secret::::::\n")
	conf := fmt.Sprintf(`base_dir = %[1]s/dv/run
state_dir = %[1]s/dv/state
instance_name = dovecot-bal-%[2]d
log_path = %[1]s/dv/dovecot.log
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
ssl = required
ssl_cert = <%[1]s/pki/server.crt.pem
ssl_key = <%[1]s/pki/server.key.pem
ssl_ca = <%[1]s/pki/ca.pem
ssl_require_crl = no
ssl_verify_client_cert = yes
ssl_min_protocol = TLSv1.2
auth_ssl_require_client_cert = yes
auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
auth_mechanisms = external plain
passdb {
  driver = passwd-file
  args = %[1]s/dv/users-external
  mechanisms = external
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/dv/users
  mechanisms = plain
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[1]s/vmail
}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[4]d
    ssl = yes
  }
}
`, w, imapsPort, imapPort, imapsPort)
	writeFile(t, m.dovecotCfg, conf)
	m.startDovecot(t)
	t.Cleanup(func() {
		m.stopDovecot()
		if t.Failed() {
			if b, err := os.ReadFile(m.doveLog); err == nil {
				t.Logf("dovecot log:\n%s", tail(b, 40))
			}
		}
	})
	waitListen(t, m.submission, m.submissions, m.imap, m.imaps)
	return m
}

func (m *mailPeers) startDovecot(t testing.TB) {
	t.Helper()
	runCmd(t, testenv.Require(t, "dovecot"), "-c", m.dovecotCfg)
	waitListen(t, m.imap, m.imaps)
}

// stopDovecot kills the master and its children (the imap processes of connected clients
// outlive a master stopped alone) and waits until they are gone.
func (m *mailPeers) stopDovecot() {
	b, err := os.ReadFile(m.dovePID)
	if err != nil {
		return
	}
	pid := strings.TrimSpace(string(b))
	children, _ := exec.Command("pgrep", "-P", pid).Output()
	pids := append([]string{pid}, strings.Fields(string(children))...)
	exec.Command("kill", pids...).Run()
	for i := 0; i < 100; i++ {
		if exec.Command("kill", append([]string{"-0"}, pids...)...).Run() != nil {
			// kill -0 fails as soon as one is gone; check each.
			alive := false
			for _, p := range pids {
				alive = alive || exec.Command("kill", "-0", p).Run() == nil
			}
			if !alive {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func chown(t testing.TB, owner, path string) {
	t.Helper()
	runCmd(t, "chown", owner, path)
}

// runCmd runs a command that may leave a daemon behind: its output goes to a file, not a
// pipe, since the daemon would keep a pipe open and Wait would never return.
func runCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	// postfix prints its errors only to a terminal; "script" gives it one.
	cmd := exec.Command(name, args...)
	if filepath.Base(name) == "postfix" {
		cmd = exec.Command("script", "-qec", strings.Join(append([]string{name}, args...), " "), "/dev/null")
	}
	out, err := os.CreateTemp("", "balcmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitListen(t testing.TB, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := dialTCP(a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not start listening: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

func tail(b []byte, n int) []byte {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
