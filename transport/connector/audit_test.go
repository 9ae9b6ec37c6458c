package connector

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAuditRotationRetentionAndPseudonyms(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	// A rotated file older than the retention, left by an earlier run.
	old := filepath.Join(dir, "audit-20250101T000000.000000000.jsonl")
	os.WriteFile(old, []byte("{}\n"), 0o600)
	a, err := OpenAudit(&AuditOptions{Dir: dir, MaxBytes: 400, Retention: 30 * 24 * time.Hour, Now: clock, RedactKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatal("file past retention kept")
	}
	ins := "146026322000196@patient.mssante.fr"
	for i := 0; i < 5; i++ {
		a.Log(&Record{Event: EventQueued, MsgID: "id", From: "bal@a.mssante.fr", Rcpts: []string{ins, "dr@b.mssante.fr"}, Code: "250 2.0.0"})
	}
	advance(24 * time.Hour) // a new day rotates too
	a.Log(&Record{Event: EventDelivered, MsgID: "id", Rcpts: []string{ins}})
	a.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.jsonl"))
	if len(files) < 3 {
		t.Fatalf("no rotation: %v", files)
	}
	var recs []Record
	for _, f := range files {
		fh, _ := os.Open(f)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			recs = append(recs, r)
		}
		fh.Close()
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "146026322000196") {
			t.Fatalf("INS in the audit log: %s", b)
		}
		if st, _ := os.Stat(f); st.Size() > 400 {
			t.Fatalf("%s exceeds MaxBytes: %d", f, st.Size())
		}
	}
	if len(recs) != 6 {
		t.Fatalf("%d records", len(recs))
	}
	p := a.Pseudonym(ins)
	if !strings.HasSuffix(p, "@patient.mssante.fr") || p == ins || recs[0].Rcpts[0] != p || recs[5].Rcpts[0] != p {
		t.Fatalf("pseudonym %q, records %v", p, recs[0].Rcpts)
	}
	if recs[0].Rcpts[1] != "dr@b.mssante.fr" || recs[0].From != "bal@a.mssante.fr" {
		t.Fatalf("BAL addresses changed: %+v", recs[0])
	}
}

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	if d.Queue.GiveUp != 120*time.Hour || d.Queue.DelayNotice != 4*time.Hour || d.Limits.MaxMessageBytes != 25<<20 ||
		d.Relay.Listen != ":25" || d.Submission.Listen != ":587" || d.Submission.ListenTLS != ":465" || d.TLS.Revocation != "required" {
		t.Fatalf("defaults: %+v", d)
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
		{"typo_setting = 1\n", "unknown settings: typo_setting"},
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
