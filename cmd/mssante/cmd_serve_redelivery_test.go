package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
)

// Crash test of the sending side: the operator a.mssante.test relays to x.mssante.test and is
// killed with SIGKILL the moment x has queued one of its messages, so before it could record
// x's 250 (or even read it). On restart it hands that message over again, as SMTP makes it
// (RFC 5321 §6.1); x answers 250 and keeps one copy. Each run submits a batch to a, kills it,
// restarts it and waits until x has every message; no message may be there twice.
func TestServeCrashRedelivery(t *testing.T) {
	runs, batch := 20, 5
	if testing.Short() {
		runs = 5
	}
	f := newServeFixture(t, t.TempDir())
	logf, err := os.Create(filepath.Join(f.dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	helper := func(config string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
		cmd.Env = append(os.Environ(), "MSSANTE_SERVE_HELPER="+config)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// The sending operator: the peer certificate of the fixture, submission with a password,
	// a static route to the fixture's relay.
	adir := filepath.Join(f.dir, "a")
	if err := os.MkdirAll(adir, 0o700); err != nil {
		t.Fatal(err)
	}
	crt, key, err := f.peer.WriteFiles(adir, "server")
	if err != nil {
		t.Fatal(err)
	}
	asub := testenv.FreePort(t)
	aconfig := filepath.Join(adir, "serve.toml")
	cfg := fmt.Sprintf(`hostname = "mx.%[2]s"
domains = ["%[2]s"]
spool_dir = "%[1]s/spool"
[tls]
cert_file = "%[3]s"
key_file = "%[4]s"
ca_files = ["%[5]s/ca.pem"]
no_igc_sante_root = true
crl_files = ["%[5]s/ca.crl"]
[whitelist]
file = "%[5]s/whitelist.xml"
signer = "%[6]s"
[relay]
listen = ""
[auth]
allow_passwords = true
[submission]
listen = "127.0.0.1:%[7]d"
listen_tls = ""
allow_plain = true
[[bal]]
address = "sender@%[2]s"
login = "sender"
password = "secret"
[local]
maildir = "%[1]s/maildir"
[delivery]
routes = { %[8]q = "localhost:%[9]d" }
[queue]
retry_first = "100ms"
retry_max = "500ms"
[audit]
dir = "%[1]s/audit"
[metrics]
listen = ""
[log]
level = "warn"
`, adir, peerDomain, crt, key, f.dir, transport.SubjectDN(f.signer.Cert), asub, ourDomain, f.relay)
	if err := os.WriteFile(aconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	x := helper(f.config)
	defer func() {
		x.Process.Signal(syscall.SIGTERM)
		x.Wait()
	}()
	a := helper(aconfig)
	defer func() {
		a.Process.Kill()
		a.Wait()
	}()
	queued := func() int { // messages x has queued from the relay
		b, _ := os.ReadFile(filepath.Join(f.dir, "audit", "audit.jsonl"))
		return strings.Count(string(b), `"event":"queued"`)
	}
	redelivered := func() int {
		b, _ := os.ReadFile(filepath.Join(f.dir, "audit", "audit.jsonl"))
		return strings.Count(string(b), `"event":"redelivered"`)
	}
	start := time.Now()
	seq, kills := 0, 0
	for run := 0; run < runs; run++ {
		c := submitClient(t, f, asub)
		before := queued()
		var sent []int
		for range batch {
			seq++
			if err := sendSubmitted(c, seq); err != nil {
				t.Fatalf("run %d: submit %d: %v", run, seq, err)
			}
			sent = append(sent, seq)
		}
		c.Close()
		// Kill a as soon as x has queued one of the batch: between x's 250 and a's record.
		deadline := time.Now().Add(20 * time.Second)
		for queued() == before {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: x queued nothing", run)
			}
			time.Sleep(200 * time.Microsecond)
		}
		a.Process.Kill()
		a.Wait()
		kills++
		a = helper(aconfig)
		waitUntil(t, fmt.Sprintf("run %d delivered", run), 30*time.Second, func() bool {
			d := f.delivered(t)
			for _, n := range sent {
				if d[n] == 0 {
					return false
				}
			}
			return true
		})
	}
	// Let a finish what is left, then count.
	waitUntil(t, "a's queue empty", 30*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(adir, "spool", "data"))
		return len(ents) == 0
	})
	d := f.delivered(t)
	dups := 0
	for n := 1; n <= seq; n++ {
		if d[n] > 1 {
			dups++
		}
	}
	t.Logf("sender crash test: %d runs of %d messages, %d kills, %d redeliveries recognised, %d messages stored twice, %v",
		runs, batch, kills, redelivered(), dups, time.Since(start).Round(time.Millisecond))
	if dups != 0 {
		t.Fatalf("%d messages stored twice", dups)
	}
	if redelivered() == 0 {
		t.Fatal("no kill caused a redelivery: nothing was tested")
	}
}

// submitClient logs in to a's submission listener as its BAL.
func submitClient(t *testing.T, f *serveFixture, port int) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	waitUntil(t, "submission listener", 20*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		c, err = smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: f.pki.Roots(), ServerName: "mx." + peerDomain})
		if err != nil {
			conn.Close()
			return false
		}
		return true
	})
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	if err := c.Auth(sasl.NewPlainClient("", "sender", "secret")); err != nil {
		t.Fatal(err)
	}
	return c
}

// sendSubmitted submits message seq (X-Seq header, a Message-ID as every client sets) to dr.
func sendSubmitted(c *smtp.Client, seq int) error {
	from, to := "sender@"+peerDomain, "dr@"+ourDomain
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: load\r\nMessage-ID: <%d.crash@%s>\r\nX-Seq: %d\r\n\r\n%s\r\n",
		from, to, seq, peerDomain, seq, strings.Repeat("0123456789", 100))
	return w.Close()
}
