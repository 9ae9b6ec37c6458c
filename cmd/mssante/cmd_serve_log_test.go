package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// The operational log of "mssante serve" ([log] format = "json") says what an operator needs
// and nothing of the patients: the start-up record, a refused recipient, a failed login and a
// bounce each reach it with their codes, peer and BAL, while the local part of a patient-like
// address, the subject and the body of a message never do.
func TestServeOperationalLog(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(cfg), "listen_tls = \"\"\n", "listen_tls = \"\"\nallow_plain = true\n", 1)
	conf = strings.Replace(conf, "[submission]\n", "[auth]\nallow_passwords = true\n[submission]\n", 1)
	conf = strings.Replace(conf, "[log]\nlevel = \"warn\"\n", "[log]\nlevel = \"info\"\nformat = \"json\"\n", 1)
	// The peer's domain is routed to our own relay, which refuses its recipients (550 5.7.1,
	// not hosted here): a refusing destination, so a bounce. Our certificate is listed for the
	// peer's domain too, so that delivery reaches that refusal.
	conf += fmt.Sprintf("[delivery]\nroutes = { %q = \"localhost:%d\" }\n", peerDomain, f.relay)
	if err := os.WriteFile(f.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ourDN := transport.SubjectDN(f.server.Cert)
	f.writeWhitelist(t, time.Now(), []whitelist.Entry{
		{Domain: ourDomain, OperatorDNs: []string{ourDN}},
		{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(f.peer.Cert), ourDN}},
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testenv.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: &logs, stderr: &logs}) }()

	records := func() []map[string]any { return testenv.JSONRecords(t, logs.String(), "") }
	find := func(msg string, attrs map[string]any) map[string]any {
		for _, r := range records() {
			if r["msg"] != msg {
				continue
			}
			ok := true
			for k, v := range attrs {
				ok = ok && r[k] == v
			}
			if ok {
				return r
			}
		}
		return nil
	}
	waitUntil(t, "the ready record", 20*time.Second, func() bool { return find("node: ready", nil) != nil })
	ready := find("node: ready", nil)
	ls, _ := ready["listeners"].(map[string]any)
	wl, _ := ready["whitelist"].(map[string]any)
	if ready["level"] != "INFO" || ready["hostname"] != "mx."+ourDomain || ready["version"] == nil ||
		ls["relay"] != fmt.Sprintf("127.0.0.1:%d", f.relay) || ls["submission"] != fmt.Sprintf("127.0.0.1:%d", f.submission) ||
		ls["metrics"] != fmt.Sprintf("127.0.0.1:%d", f.metrics) || wl["entries"] != float64(2) || ready["mailbox_store"] != false {
		t.Errorf("ready record: %v", ready)
	}

	dial := func() *smtp.Client {
		t.Helper()
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.submission), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: f.pki.Roots(), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	bal := "dr@" + ourDomain
	if err := dial().Auth(sasl.NewPlainClient("", bal, "not-the-password")); err == nil {
		t.Fatal("wrong password accepted")
	}

	const ins, subject, body = "279035121518989", "Resultats biopsie Durand", "Carcinome canalaire infiltrant"
	c := dial()
	if err := c.Auth(sasl.NewPlainClient("", "dr", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(bal, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(ins+"@unlisted.test", nil); err == nil {
		t.Fatal("unlisted recipient domain accepted")
	}
	patient := ins + "@" + peerDomain
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <log.1@%s>\r\n\r\n%s\r\n", bal, patient, subject, ourDomain, body)
	if err := c.SendMail(bal, []string{patient}, strings.NewReader(msg)); err != nil {
		t.Fatalf("submission: %v", err)
	}
	waitUntil(t, "the bounce and its DSN", 20*time.Second, func() bool {
		return find("queue: delivery notice sent", map[string]any{"kind": "failed"}) != nil &&
			find("queue: recipient delivered", map[string]any{"rcpt_domain": ourDomain}) != nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, logs.Bytes())
	}

	for _, want := range []struct {
		msg   string
		attrs map[string]any
	}{
		{"connector: authentication failed", map[string]any{"level": "WARN", "listener": "submission", "code": "535 5.7.8",
			"reason": "auth_plain_failed", "login": bal}},
		{"connector: recipient refused", map[string]any{"level": "INFO", "listener": "submission", "code": "550 5.7.1",
			"reason": "recipient_domain", "bal": bal, "rcpt_domain": "unlisted.test"}},
		// Our relay, as the destination, refuses the patient's address: only its domain is logged.
		{"connector: recipient refused", map[string]any{"listener": "relay", "code": "550 5.7.1", "reason": "relay_denied",
			"peer_dn": ourDN, "from_domain": ourDomain, "rcpt_domain": peerDomain}},
		{"queue: recipient failed", map[string]any{"level": "WARN", "rcpt_domain": peerDomain, "code": "550 5.7.1",
			"remote_mta": "localhost", "reason": "refused", "dsn": true}},
		{"queue: queued", map[string]any{"source": "dsn"}},
	} {
		r := find(want.msg, want.attrs)
		if r == nil {
			t.Errorf("no record %q with %v", want.msg, want.attrs)
			continue
		}
		if p, _ := r["peer"].(string); want.msg != "queue: recipient failed" && want.msg != "queue: queued" && !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("%q: peer %q", want.msg, p)
		}
	}
	for _, secret := range []string{ins, "Durand", "biopsie", "Carcinome", "not-the-password"} {
		if strings.Contains(string(logs.Bytes()), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs.Bytes())
	}
}
