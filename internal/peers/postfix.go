package peers

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// PostfixOptions configures [StartPostfix]. The zero value is a Postfix for test.example
// with one plaintext listener and every address of the domain delivered to one Maildir.
type PostfixOptions struct {
	// Domain is the virtual mailbox domain; the host name is "mx." + Domain. Default
	// test.example.
	Domain string

	// Listeners wanted. Plain is loopback injection without TLS (relaying allowed from
	// 127.0.0.0/8); StartTLS and ImplicitTLS require a client certificate issued by PKI and
	// let any such client relay (permit_tls_all_clientcerts). With none set, Plain is on.
	Plain, StartTLS, ImplicitTLS bool

	// PKI and Cert: the server certificate of the TLS listeners and the CA (root and
	// intermediate of PKI) client certificates must chain to, both ways.
	PKI  *testpki.PKI
	Cert *testpki.Leaf

	// ClientCert, when set, is presented on outbound SMTP, which then requires TLS
	// (smtp_tls_security_level = encrypt) and verifies the peer against PKI.
	ClientCert *testpki.Leaf

	// Mailboxes maps addresses of Domain to their Maildir under the mailbox base ("bal/");
	// nil delivers every address of Domain to "Maildir/".
	Mailboxes map[string]string

	// Transports maps domains to a Postfix transport ("discard:", or [Relay] of an address);
	// DefaultTransport and Relayhost are the main.cf settings of these names ("" keeps
	// Postfix's default).
	Transports                  map[string]string
	DefaultTransport, Relayhost string

	// RetryDelay sets queue_run_delay and minimal_backoff_time (maximal_backoff_time is
	// twice as long); DelayWarning sets delay_warning_time ("delayed" DSNs). 0 keeps
	// Postfix's default.
	RetryDelay, DelayWarning time.Duration

	// Extra main.cf lines, appended last (so they override the settings above).
	Extra []string
}

// Postfix is a running throw-away Postfix.
type Postfix struct {
	// Addresses ("127.0.0.1:port") of the listeners asked for, "" for the others.
	Plain, StartTLS, ImplicitTLS string
	// Dir holds everything: etc (config_directory), spool, data, vmail (mailbox base),
	// pki and maillog.
	Dir string

	bin     string
	stopped bool
}

// Relay returns the Postfix transport relaying over SMTP to addr ("127.0.0.1:2525").
func Relay(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("smtp:[%s]:%s", host, port)
}

func addrOf(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

// seconds formats d for main.cf (whole seconds, at least 1).
func seconds(d time.Duration) string { return fmt.Sprintf("%ds", max(1, int(d/time.Second))) }

// inline formats a map as a Postfix inline: table, in key order.
func inline(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("inline:{")
	for _, k := range keys {
		fmt.Fprintf(&b, " {%s=%s},", k, m[k])
	}
	return strings.TrimSuffix(b.String(), ",") + " }"
}

// postfixServices is master.cf without any listener: the packaged services up to the pipe
// ones, chroot off, with postlog (logging to maillog_file without syslogd).
const postfixServices = `pickup    unix  n       -       n       60      1       pickup
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
`

// StartPostfix starts a throw-away Postfix as o says, waits until its
// listeners accept connections, and stops it in t.Cleanup (logging the end of its maillog
// when the test failed).
func StartPostfix(t testing.TB, o *PostfixOptions) *Postfix {
	t.Helper()
	if o == nil {
		o = &PostfixOptions{}
	}
	bin := testenv.Require(t, "postfix")
	requireRoot(t, "Postfix")
	mail, err := user.Lookup("mail")
	if err != nil {
		t.Fatal(err)
	}
	domain := o.Domain
	if domain == "" {
		domain = "test.example"
	}
	w := TempDir(t, "pf")
	pf := &Postfix{Dir: w, bin: bin}
	for _, d := range []string{"etc", "spool", "data", "vmail"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// postfix owns data_directory (else "master.lock: Permission denied"); virtual delivers as mail.
	Chown(t, "postfix:postfix", filepath.Join(w, "data"))
	os.Chmod(filepath.Join(w, "data"), 0o700)
	Chown(t, "mail:mail", filepath.Join(w, "vmail"))

	mailboxes := "static:Maildir/"
	if o.Mailboxes != nil {
		mailboxes = inline(o.Mailboxes)
	}
	cf := []string{
		"compatibility_level = 3.6",
		"config_directory = " + w + "/etc",
		"queue_directory = " + w + "/spool",
		"data_directory = " + w + "/data",
		// No syslogd here: log to a file through postlogd; the prefix allows the folder.
		"maillog_file = " + w + "/maillog",
		"maillog_file_prefixes = " + w,
		"syslog_name = postfix-peers",
		"myhostname = mx." + domain,
		"mydomain = " + domain,
		"myorigin = $mydomain",
		"mydestination =",
		"alias_maps =",
		"alias_database =",
		"local_recipient_maps =",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"virtual_mailbox_domains = " + domain,
		"virtual_mailbox_base = " + w + "/vmail",
		"virtual_mailbox_maps = " + mailboxes,
		"virtual_uid_maps = static:" + mail.Uid,
		"virtual_gid_maps = static:" + mail.Gid,
		// Without it: "bad uid 8 in virtual_uid_maps".
		"virtual_minimum_uid = " + mail.Uid,
	}
	if len(o.Transports) > 0 {
		cf = append(cf, "transport_maps = "+inline(o.Transports))
	}
	if o.DefaultTransport != "" {
		cf = append(cf, "default_transport = "+o.DefaultTransport)
	}
	if o.Relayhost != "" {
		cf = append(cf, "relayhost = "+o.Relayhost)
	}
	if o.StartTLS || o.ImplicitTLS || o.ClientCert != nil {
		if o.PKI == nil || o.Cert == nil {
			t.Fatal("peers: PostfixOptions with TLS needs PKI and Cert")
		}
		crt, key, ca := writePKI(t, filepath.Join(w, "pki"), o.PKI, o.Cert)
		cf = append(cf,
			"smtpd_tls_cert_file = "+crt,
			"smtpd_tls_key_file = "+key,
			"smtpd_tls_CAfile = "+ca,
			"smtpd_tls_security_level = encrypt",
			"smtpd_tls_req_ccert = yes",
			"smtpd_tls_loglevel = 1",
			"smtpd_tls_received_header = yes",
			"smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination")
		if o.ClientCert != nil {
			ccrt, ckey, err := o.ClientCert.WriteFiles(filepath.Join(w, "pki"), "client")
			if err != nil {
				t.Fatal(err)
			}
			cf = append(cf,
				"smtp_tls_security_level = encrypt",
				"smtp_tls_cert_file = "+ccrt,
				"smtp_tls_key_file = "+ckey,
				"smtp_tls_CAfile = "+ca,
				"smtp_tls_loglevel = 1")
		}
	}
	if o.ClientCert == nil {
		cf = append(cf, "smtp_tls_security_level = none")
	}
	if o.RetryDelay > 0 {
		cf = append(cf,
			"queue_run_delay = "+seconds(o.RetryDelay),
			"minimal_backoff_time = "+seconds(o.RetryDelay),
			"maximal_backoff_time = "+seconds(2*o.RetryDelay))
	}
	if o.DelayWarning > 0 {
		cf = append(cf, "delay_warning_time = "+seconds(o.DelayWarning))
	}
	cf = append(cf, o.Extra...)

	var master strings.Builder
	if o.StartTLS {
		pf.StartTLS = addrOf(testenv.FreePort(t))
		fmt.Fprintf(&master, "%s inet n - n - - smtpd\n", pf.StartTLS)
	}
	if o.ImplicitTLS {
		pf.ImplicitTLS = addrOf(testenv.FreePort(t))
		fmt.Fprintf(&master, "%s inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n", pf.ImplicitTLS)
	}
	if o.Plain || (!o.StartTLS && !o.ImplicitTLS) {
		pf.Plain = addrOf(testenv.FreePort(t))
		fmt.Fprintf(&master, "%s inet n - n - - smtpd\n"+
			"  -o smtpd_tls_security_level=none\n  -o smtpd_tls_req_ccert=no\n"+
			"  -o { smtpd_relay_restrictions = permit_mynetworks, reject }\n", pf.Plain)
	}
	master.WriteString(postfixServices)
	WriteFile(t, filepath.Join(w, "etc/main.cf"), strings.Join(cf, "\n")+"\n")
	WriteFile(t, filepath.Join(w, "etc/master.cf"), master.String())

	Run(t, bin, "-c", pf.ConfigDir(), "start")
	t.Cleanup(func() {
		pf.Stop()
		if t.Failed() {
			t.Logf("postfix maillog:\n%s", tail(pf.Log(), 40))
		}
	})
	var addrs []string
	for _, a := range []string{pf.Plain, pf.StartTLS, pf.ImplicitTLS} {
		if a != "" {
			addrs = append(addrs, a)
		}
	}
	WaitListen(t, addrs...)
	return pf
}

// ConfigDir is the config_directory (postfix -c, sendmail -C).
func (pf *Postfix) ConfigDir() string { return filepath.Join(pf.Dir, "etc") }

// Log returns the maillog so far.
func (pf *Postfix) Log() string { return readLog(filepath.Join(pf.Dir, "maillog")) }

// MaildirPath returns the folder of the Maildir box ("Maildir" unless Mailboxes said
// otherwise) under the mailbox base.
func (pf *Postfix) MaildirPath(box string) string { return filepath.Join(pf.Dir, "vmail", box) }

// Maildir returns the messages delivered to the Maildir box (new and cur).
func (pf *Postfix) Maildir(box string) []string { return readMaildir(pf.MaildirPath(box)) }

// Sendmail submits msg with Postfix's sendmail -C and the arguments args (for example "-f",
// sender, "-N", "failure,delay", recipient), or ends the test.
func (pf *Postfix) Sendmail(t testing.TB, msg []byte, args ...string) {
	t.Helper()
	cmd := exec.Command(testenv.Require(t, "sendmail"), append([]string{"-C", pf.ConfigDir()}, args...)...)
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("peers: sendmail %v: %v %s", args, err, out)
	}
}

// Stop stops Postfix and waits for its master to exit; it is called in t.Cleanup and may be
// called before.
func (pf *Postfix) Stop() {
	if pf.stopped {
		return
	}
	pf.stopped = true
	pid := readPID(filepath.Join(pf.Dir, "spool/pid/master.pid"))
	exec.Command(pf.bin, "-c", pf.ConfigDir(), "stop").Run()
	waitGone([]string{pid})
}
