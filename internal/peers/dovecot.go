package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// DovecotOptions configures [StartDovecot]: an IMAP server (STARTTLS and implicit TLS) that
// requires a client certificate issued by PKI and takes the user name from its CN.
type DovecotOptions struct {
	// PKI and Cert: the server certificate and the CA client certificates must chain to.
	// No CRL is asked for (ssl_require_crl = no).
	PKI  *testpki.PKI
	Cert *testpki.Leaf

	// External lists the users (certificate CNs) who log in with SASL EXTERNAL; Users maps
	// users to the password they may also log in with (PLAIN, certificate still required).
	External []string
	Users    map[string]string

	// Home is every user's home: the mail is in Home/Maildir, so filepath.Join(pf.Dir,
	// "vmail") serves the Maildir "Maildir" of Postfix pf. Default: a folder of the instance.
	Home string
}

// Dovecot is a running throw-away Dovecot.
type Dovecot struct {
	// IMAP (STARTTLS) and IMAPS (implicit TLS) addresses.
	IMAP, IMAPS string
	// Dir holds the configuration, pki, run and state folders and the log.
	Dir string

	bin string
}

// StartDovecot starts a throw-away Dovecot as o says, waits until it
// listens, and stops it in t.Cleanup (logging the end of its log when the test failed).
func StartDovecot(t testing.TB, o *DovecotOptions) *Dovecot {
	t.Helper()
	bin := testenv.Require(t, "dovecot")
	requireRoot(t, "Dovecot")
	if o == nil || o.PKI == nil || o.Cert == nil {
		t.Fatal("peers: DovecotOptions needs PKI and Cert")
	}
	w := TempDir(t, "dv")
	d := &Dovecot{Dir: w, bin: bin, IMAP: addrOf(testenv.FreePort(t)), IMAPS: addrOf(testenv.FreePort(t))}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(w, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := o.Home
	if home == "" {
		home = filepath.Join(w, "home")
		os.MkdirAll(home, 0o755)
		Chown(t, "mail:mail", home)
	}
	crt, key, ca := writePKI(t, filepath.Join(w, "pki"), o.PKI, o.Cert)
	var ext, users strings.Builder
	for _, u := range o.External {
		ext.WriteString(u + ":::::::nopassword\n")
	}
	names := make([]string, 0, len(o.Users))
	for u := range o.Users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", u, o.Users[u])
	}
	WriteFile(t, filepath.Join(w, "users-external"), ext.String())
	WriteFile(t, filepath.Join(w, "users"), users.String())
	_, imapPort, _ := strings.Cut(d.IMAP, ":")
	_, imapsPort, _ := strings.Cut(d.IMAPS, ":")
	// Mail processes cannot run as root: the static userdb uses uid mail. EXTERNAL verifies
	// an empty password, so its passdb carries nopassword and serves that mechanism only.
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dovecot-peers-%[5]s
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
ssl = required
ssl_cert = <%[2]s
ssl_key = <%[3]s
ssl_ca = <%[4]s
ssl_require_crl = no
ssl_verify_client_cert = yes
ssl_min_protocol = TLSv1.2
auth_ssl_require_client_cert = yes
auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
auth_mechanisms = external plain
passdb {
  driver = passwd-file
  args = %[1]s/users-external
  mechanisms = external
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/users
  mechanisms = plain
}
userdb {
  driver = static
  args = uid=mail gid=mail home=%[7]s
}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]s
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[6]s
    ssl = yes
  }
}
`, w, crt, key, ca, imapPort, imapsPort, home)
	WriteFile(t, d.config(), conf)
	d.Start(t)
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("dovecot log:\n%s", tail(d.Log(), 40))
		}
	})
	return d
}

func (d *Dovecot) config() string { return filepath.Join(d.Dir, "dovecot.conf") }

// Start starts Dovecot again after Stop (same ports, same mail) and waits until it listens.
func (d *Dovecot) Start(t testing.TB) {
	t.Helper()
	Run(t, d.bin, "-c", d.config())
	WaitListen(t, d.IMAP, d.IMAPS)
}

// Stop kills the master and its children (the imap processes of connected clients outlive
// a master stopped alone) and waits until they are gone. It is called in t.Cleanup and may
// be called before.
func (d *Dovecot) Stop() {
	pid := readPID(filepath.Join(d.Dir, "run/master.pid"))
	if !alive(pid) {
		return
	}
	children, _ := exec.Command("pgrep", "-P", pid).Output()
	pids := append([]string{pid}, strings.Fields(string(children))...)
	exec.Command("kill", pids...).Run()
	waitGone(pids)
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string { return readLog(filepath.Join(d.Dir, "dovecot.log")) }
