package connector

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// postfix is a throw-away Postfix instance (postfix -c DIR), as in spec/peers-recipes.md §3:
// an inbound mutual-TLS listener on TLSPort (client certificate required), a plaintext
// loopback listener on PlainPort for injecting mail, a virtual Maildir for its domain, and
// every other domain relayed over mutual TLS to the routes given.
type postfix struct {
	t         *testing.T
	dir       string
	bin       string
	TLSPort   int
	PlainPort int
	Domain    string
	Cert      *testpki.Leaf
}

// writeLeafFiles writes l's chain and key as PEM files, and the CA file of p.
func writeLeafFiles(t *testing.T, dir, base string, l *testpki.Leaf, p *testpki.PKI) (crt, key, ca string) {
	t.Helper()
	crt, key, err := l.WriteFiles(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, append(p.RootPEM(), p.IntermediatePEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return crt, key, ca
}

// startPostfix starts Postfix for domain, relaying the domains of routes ("domain" →
// "127.0.0.1:port") with its certificate as client certificate.
func startPostfix(t *testing.T, domain string, routes map[string]string) *postfix {
	t.Helper()
	bin := testenv.Require(t, "postfix")
	testenv.Require(t, "postconf")
	if os.Geteuid() != 0 {
		if testenv.PeersRequired() {
			t.Fatal("the Postfix peer test runs postfix -c as root")
		}
		t.Skip("the Postfix peer test runs postfix -c as root")
	}
	mailUser, err := user.Lookup("mail")
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI(t)
	pf := &postfix{t: t, bin: bin, Domain: domain, TLSPort: testenv.FreePort(t), PlainPort: testenv.FreePort(t)}
	// Postfix refuses a queue directory under a world-writable parent it does not own.
	dir, err := os.MkdirTemp("/var/tmp", "mssante-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	pf.dir = dir
	for _, d := range []string{"etc", "spool", "data", "vmail", "pki"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	exec.Command("chown", "postfix:postfix", filepath.Join(dir, "data")).Run()
	os.Chmod(filepath.Join(dir, "data"), 0o700)
	exec.Command("chown", "mail:mail", filepath.Join(dir, "vmail")).Run()
	pf.Cert = must(t)(p.Server("mx."+domain, &testpki.LeafOptions{DNSNames: []string{"localhost"}}))
	crt, key, ca := writeLeafFiles(t, filepath.Join(dir, "pki"), "server", pf.Cert, p)
	var transport []string
	for d, addr := range routes {
		transport = append(transport, fmt.Sprintf("%s=smtp:[%s]:%s", d, strings.Split(addr, ":")[0], strings.Split(addr, ":")[1]))
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
config_directory = %[1]s/etc
queue_directory = %[1]s/spool
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
syslog_name = postfix-mssante-test
myhostname = mx.%[2]s
mydomain = %[2]s
myorigin = $mydomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = %[2]s
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:%[6]s
virtual_gid_maps = static:%[7]s
virtual_minimum_uid = 1
transport_maps = inline:{ %[8]s }
smtp_tls_security_level = encrypt
smtp_tls_cert_file = %[3]s
smtp_tls_key_file = %[4]s
smtp_tls_CAfile = %[5]s
smtp_tls_loglevel = 1
smtpd_tls_cert_file = %[3]s
smtpd_tls_key_file = %[4]s
smtpd_tls_CAfile = %[5]s
smtpd_tls_security_level = encrypt
smtpd_tls_req_ccert = yes
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination
smtpd_forbid_bare_newline = yes
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
`, dir, domain, crt, key, ca, mailUser.Uid, mailUser.Gid, strings.Join(transport, ", "))
	if len(transport) == 0 {
		mainCF = strings.Replace(mainCF, "transport_maps = inline:{  }\n", "", 1)
	}
	masterCF := fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
127.0.0.1:%d inet n - n - - smtpd
  -o smtpd_tls_security_level=none
  -o smtpd_tls_req_ccert=no
  -o { smtpd_relay_restrictions = permit_mynetworks, reject }
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
`, pf.TLSPort, pf.PlainPort)
	os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(mainCF), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(masterCF), 0o644)
	// postfix prints its errors only to a TTY; script(1) gives it one when a start fails.
	if out, err := exec.Command(bin, "-c", filepath.Join(dir, "etc"), "start").CombinedOutput(); err != nil {
		diag, _ := exec.Command("script", "-qc", bin+" -c "+filepath.Join(dir, "etc")+" check", "/dev/null").CombinedOutput()
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v %s\n%s\n%s", err, out, diag, log)
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", filepath.Join(dir, "etc"), "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix maillog:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	waitFor(t, "postfix listening", func() bool { return dialOK(fmt.Sprintf("127.0.0.1:%d", pf.PlainPort)) })
	return pf
}

func dialOK(addr string) bool {
	c, err := netDial(addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// maildir returns the messages Postfix delivered to its virtual Maildir.
func (pf *postfix) maildir() []string {
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(pf.dir, "vmail", "Maildir", sub))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(pf.dir, "vmail", "Maildir", sub, e.Name()))
			out = append(out, string(b))
		}
	}
	return out
}

func (pf *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(pf.dir, "maillog"))
	return string(b)
}

// swaks runs swaks with args and returns its transcript.
func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Require(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Interop with a real Postfix in both directions: Postfix relays to our relay listener with its
// client certificate, we deliver to Postfix with ours; swaks is an external client of ours.
func TestPostfixInterop(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	pf := startPostfix(t, "postfix.mssante.test", map[string]string{"a.mssante.test": a.relayAddr})
	l := trustWith(t, a, pf.Domain, transport.SubjectDN(pf.Cert.Cert))
	_ = l
	a.delivery.opts.Routes = map[string]string{pf.Domain: fmt.Sprintf("127.0.0.1:%d", pf.TLSPort)}

	// 1. Postfix → us: inject in Postfix (plaintext loopback), Postfix relays to our relay.
	out, err := swaks(t, "--server", "127.0.0.1", "--port", fmt.Sprint(pf.PlainPort),
		"--from", "sender@"+pf.Domain, "--to", "dr@a.mssante.test", "--header", "Subject: from-postfix")
	if err != nil {
		t.Fatalf("swaks to postfix: %v\n%s", err, out)
	}
	waitFor(t, "Postfix relayed to us", func() bool { return a.count("dr@a.mssante.test") == 1 }, pf.log)
	got := a.read(t, "dr@a.mssante.test")[0]
	if !strings.Contains(got, "Subject: from-postfix") || !strings.Contains(got, "by mx.a.mssante.test with ESMTPS") {
		t.Fatalf("message from Postfix:\n%s", got)
	}

	// 2. us → Postfix: our BAL submits, our delivery presents our certificate to Postfix.
	if got := submit(t, a, []string{"someone@" + pf.Domain}, msg(a.bal, "someone@"+pf.Domain, "to-postfix"), nil); got != "ok" {
		t.Fatalf("submit: %s", got)
	}
	waitFor(t, "delivered into Postfix", func() bool { return len(pf.maildir()) == 1 }, pf.log)
	if m := pf.maildir()[0]; !strings.Contains(m, "Subject: to-postfix") || !strings.Contains(m, `(Client CN "mx.a.mssante.test"`) {
		t.Fatalf("message in Postfix:\n%s", m)
	}

	// 3. Postfix presenting a certificate whose DN is not listed for its domain: refused by us
	// with 550 5.7.1, which Postfix turns into a bounce.
	trustWith(t, a, pf.Domain, "CN=mx.elsewhere.test,O=X,C=FR")
	out, err = swaks(t, "--server", "127.0.0.1", "--port", fmt.Sprint(pf.PlainPort),
		"--from", "sender@"+pf.Domain, "--to", "dr@a.mssante.test", "--header", "Subject: unlisted")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, "Postfix bounced on our 550 5.7.1", func() bool {
		return strings.Contains(pf.log(), "550 5.7.1 Client certificate not authorised for the sender domain")
	}, pf.log)
	if a.count("dr@a.mssante.test") != 1 {
		t.Fatal("unlisted operator's message delivered")
	}
}

// swaks as an external client of our relay listener, with and without a client certificate.
func TestSwaksClient(t *testing.T) {
	testenv.Require(t, "swaks")
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true})
	trust(a, b)
	dir := t.TempDir()
	crt, key, ca := writeLeafFiles(t, dir, "client", a.server, p)
	host, port, _ := strings.Cut(b.relayAddr, ":")
	base := []string{"--server", host, "--port", port, "--from", "x@a.mssante.test", "--to", "dr@b.mssante.test", "--tls", "--tls-verify", "--tls-ca-path", ca, "--tls-sni", "localhost"}
	out, err := swaks(t, append(base, "--tls-cert", crt, "--tls-key", key)...)
	if err != nil || !strings.Contains(out, "<~  250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks with certificate: %v\n%s", err, out)
	}
	out, _ = swaks(t, base...)
	if !strings.Contains(out, "<~* 530 5.7.0 Client certificate required") {
		t.Fatalf("swaks without certificate:\n%s", out)
	}
	out, _ = swaks(t, "--server", host, "--port", port, "--from", "x@a.mssante.test", "--to", "dr@b.mssante.test")
	if !strings.Contains(out, "<** 530 5.7.0 Must issue a STARTTLS command first") {
		t.Fatalf("swaks without TLS:\n%s", out)
	}
	// Submission with AUTH PLAIN over STARTTLS (swaks cannot do EXTERNAL), then a spoofed sender.
	host, port, _ = strings.Cut(a.subAddr, ":")
	sub := []string{"--server", host, "--port", port, "--to", "dr@b.mssante.test", "--tls", "--tls-verify", "--tls-ca-path", ca,
		"--tls-sni", "localhost", "--auth", "PLAIN", "--auth-user", "bal", "--auth-password", "secret", "--h-From", "<" + a.bal + ">"}
	out, err = swaks(t, append(sub, "--from", a.bal)...)
	if err != nil || !strings.Contains(out, "<~  235 2.0.0 Authentication succeeded") || !strings.Contains(out, "<~  250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks submission:\n%s", out)
	}
	out, _ = swaks(t, append(sub, "--from", "dr@a.mssante.test")...)
	if !strings.Contains(out, "<~* 553 5.7.1 Sender address not owned by the authenticated BAL") {
		t.Fatalf("swaks spoofed sender:\n%s", out)
	}
}
