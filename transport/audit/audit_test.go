package audit

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
	a, err := Open(&Options{Dir: dir, MaxBytes: 400, Retention: 30 * 24 * time.Hour, Now: clock, RedactKey: []byte("k")})
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

// Two nodes behind one load balancer write their own logs: every record names the node that
// wrote it, the host name unless Options.Node says otherwise, whatever the caller set.
func TestAuditNode(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name: %v", err)
	}
	for _, c := range []struct{ opt, want string }{{"node-b", "node-b"}, {"", host}} {
		dir := t.TempDir()
		a, err := Open(&Options{Dir: dir, Node: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		a.Log(&Record{Event: EventQueued, MsgID: "id"})
		a.Log(&Record{Event: EventAuthFailed, Node: "forged", Source: "imap"})
		a.Close()
		b, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d records: %s", len(lines), b)
		}
		for _, l := range lines {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			if r["node"] != c.want {
				t.Fatalf("node %v, want %q: %s", r["node"], c.want, l)
			}
		}
	}
}
