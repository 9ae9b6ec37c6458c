package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/mailbox"
)

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	if d.Queue.GiveUp != 120*time.Hour || d.Queue.DelayNotice != 4*time.Hour || d.Limits.MaxMessageBytes != 25<<20 ||
		d.Relay.Listen != ":25" || d.Relay.RedeliveryWindow != 120*time.Hour || d.Relay.RedeliveryMax != 100000 || d.Submission.Listen != ":587" || d.Submission.ListenTLS != ":465" || d.TLS.Revocation != "required" {
		t.Fatalf("defaults: %+v", d)
	}
	if d.IMAP.HandshakeTimeout != 10*time.Second || d.IMAP.LoginTimeout != time.Minute || d.IMAP.IdleTimeout != 30*time.Minute ||
		d.IMAP.MaxConnections != 1000 || d.IMAP.MaxConnectionsPerAddress != 100 ||
		d.Limits.CommandTimeout != time.Minute || d.Limits.DataTimeout != 0 || d.Limits.SessionTimeout != time.Hour ||
		d.Limits.HandshakeTimeout != 10*time.Second {
		t.Fatalf("connection bounds: %+v %+v", d.IMAP, d.Limits)
	}
	if a := d.API; a.Enabled || a.Listen != ":8443" || a.MaxBodyBytes != 32<<20 || a.ReadHeaderTimeout != 10*time.Second ||
		a.WebhookMaxAge != 120*time.Hour || a.WebhookAllowInsecure {
		t.Fatalf("api defaults: %+v", a)
	}
	good := `hostname = "mx.a.test"
domains = ["a.test"]
[tls]
cert_file = "c"
key_file = "k"
[whitelist]
file = "w.xml"
[[bal]]
address = "bal@a.test"
cert_dn = "CN=bal@a.test"
`
	c, err := LoadConfig(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "/var/spool/mssante" || len(c.BALs) != 1 {
		t.Fatalf("loaded %+v", c)
	}
	for _, tc := range []struct{ edit, want string }{
		{"hostname = \"\"\n", "hostname is required"},
		{"[whitelist]\nurl = \"https://x\"\n", "exactly one of whitelist.file and whitelist.url"},
		{"[scanner]\non_error = \"pass\"\n", "scanner.on_error"},
		{"[scanner]\nclamd = \"/run/clamd\"\n", "scanner.clamd must start"},
		{"[tls]\nrevocation = \"none\"\n", "tls.revocation"},
		{"[[bal]]\naddress = \"nobody\"\n", "bal[1]"},
		{"[queue]\ngive_up = \"forever\"\n", "give_up"},
		{"[limits]\ncommand_timeout = \"-1s\"\n", "limits.command_timeout must not be negative"},
		{"[imap]\nidle_timeout = \"-1s\"\n", "imap.idle_timeout must not be negative"},
		{"[relay]\nredelivery_window = \"-1h\"\n", "relay.redelivery_window"},
		{"[relay]\nredelivery_max = 0\n", "relay.redelivery_max"},
		{"typo_setting = 1\n", "unknown settings: typo_setting"},
		{"[auth]\nlockout_failures = 0\n", "auth: every setting must be positive"},
		{"[auth]\ndelay = \"1m\"\n", "max_delay at least delay"},
		{"[annuaire]\ndir = \"/var/lib/mssante/annuaire\"\n", "annuaire needs mailbox.dir"},
		{"[annuaire]\nrefresh_interval = \"0s\"\ndir = \"a\"\n", "annuaire.refresh_interval must be positive"},
		{"[api]\nenabled = true\nlisten = \"8443\"\n", "api.listen \"8443\" is not host:port"},
		{"[api]\nenabled = true\nread_timeout = \"0s\"\n", "api.timeouts"},
		{"[api]\nenabled = true\nmax_body_bytes = 0\n", "api.max_body_bytes must be positive"},
		{"[api]\nenabled = true\n[[api.webhook]]\nbal = \"dpi@a.test\"\nurl = \"http://dpi.a.test/\"\nsecret_file = \"s\"\n", "api.webhook[0]: url must be https"},
		{"[api]\nenabled = true\n[[api.webhook]]\nbal = \"dpi\"\nurl = \"https://dpi.a.test/\"\n", "api.webhook[0]: bal \"dpi\" is not an address"},
		{"[api]\nenabled = true\n[[api.webhook]]\nbal = \"dpi@a.test\"\nurl = \"https://dpi.a.test/\"\n", "api.webhook[0]: secret_file is required"},
		{"[api]\nenabled = true\nreceipts_only = [\"dpi\"]\n", "api.receipts_only[0]: \"dpi\" is not an address"},
	} {
		// Later keys in a table override: append the edit as a new document part where TOML
		// allows it, else replace.
		doc := good
		if strings.HasPrefix(tc.edit, "hostname") {
			doc = strings.Replace(good, "hostname = \"mx.a.test\"\n", tc.edit, 1)
		} else if strings.HasPrefix(tc.edit, "[whitelist]") {
			doc = strings.Replace(good, "[whitelist]\nfile = \"w.xml\"\n", "[whitelist]\nfile = \"w.xml\"\nurl = \"https://x\"\n", 1)
		} else if strings.HasPrefix(tc.edit, "[tls]") {
			doc = strings.Replace(good, "key_file = \"k\"\n", "key_file = \"k\"\nrevocation = \"none\"\n", 1)
		} else if strings.HasPrefix(tc.edit, "typo") {
			doc = tc.edit + good
		} else {
			doc = good + tc.edit
		}
		_, err := LoadConfig(strings.NewReader(doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.edit, err, tc.want)
		}
	}
}

// LoadConfigFile reads a file as LoadConfig reads its content, and says when there is none.
func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serve.toml")
	if err := os.WriteFile(path, []byte(`hostname = "mx.x.mssante.fr"
domains = ["x.mssante.fr"]
spool_dir = "/var/spool/mssante"
[tls]
cert_file = "server.crt.pem"
key_file = "server.key.pem"
[whitelist]
file = "listeblanche.xml"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(path)
	if err != nil || c.Hostname != "mx.x.mssante.fr" || c.Queue.RetryFirst != DefaultConfig().Queue.RetryFirst {
		t.Fatalf("LoadConfigFile: %+v, %v", c, err)
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "none.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	os.WriteFile(path, []byte("nosuchkey = 1\n"), 0o600)
	if _, err := LoadConfigFile(path); err == nil || !strings.Contains(err.Error(), "unknown settings: nosuchkey") {
		t.Errorf("unknown key: %v", err)
	}
}

// [mailbox] expunge_log reaches the store a node opens: with 2, a session asking for the
// changes since a modseq more than 2 changes before the last expunge is told to re-read the
// folder's UIDs; the default keeps 100,000.
func TestConfigExpungeLog(t *testing.T) {
	if got := DefaultConfig().Mailbox.ExpungeLog; got != 100000 {
		t.Fatalf("default expunge_log %d", got)
	}
	ctx := t.Context()
	doc := "hostname = \"mx.a.test\"\ndomains = [\"a.test\"]\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[whitelist]\nfile = \"w\"\n" +
		"[mailbox]\ndir = \"" + t.TempDir() + "\"\nexpunge_log = 2\n"
	cfg, err := LoadConfig(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddBAL(ctx, &mailbox.BAL{Address: "a@a.test", Type: mailbox.ORG}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := st.Append(ctx, "a@a.test", mailbox.Inbox, strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil); err != nil {
			t.Fatal(err)
		}
	}
	mb, err := st.Mailbox(ctx, "a@a.test", mailbox.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	m0 := mb.ModSeq
	for _, f := range []struct {
		uid uint32
		op  mailbox.FlagOp
		fl  string
	}{{2, mailbox.FlagsAdd, `\Flagged`}, {2, mailbox.FlagsRemove, `\Flagged`}, {1, mailbox.FlagsAdd, `\Deleted`}} { // m0+1 … m0+3
		if _, err := st.StoreFlags(ctx, mb.ID, []uint32{f.uid}, f.op, []string{f.fl}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := st.Expunge(ctx, mb.ID, []uint32{1}); err != nil || !slices.Equal(got, []uint32{1}) { // m0+4: keeps the log above m0+2
		t.Fatalf("Expunge = %v, %v", got, err)
	}
	for _, c := range []struct {
		since   uint64
		unknown bool
	}{{m0, true}, {m0 + 2, false}} {
		ch, err := st.Changes(ctx, mb.ID, c.since)
		if err != nil {
			t.Fatal(err)
		}
		if ch.ExpungedUnknown != c.unknown || (!c.unknown && !slices.Equal(ch.Expunged, []uint32{1})) {
			t.Errorf("Changes(m0+%d) = %+v, want ExpungedUnknown %v", c.since-m0, ch, c.unknown)
		}
	}
}
