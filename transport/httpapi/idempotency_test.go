package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
)

func openTestStore(t *testing.T, dir string, now func() time.Time, log *bytes.Buffer) *idemStore {
	t.Helper()
	s, err := openIdemStore(dir, now, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.j.Close() })
	return s
}

// Records written durably, and those written after them, are found again after a reopen; the
// last record of a key wins; a key of another BAL is another key.
func TestIdemStoreReopen(t *testing.T) {
	dir, now := t.TempDir(), time.Now().UTC()
	clock := func() time.Time { return now }
	var log bytes.Buffer
	s := openTestStore(t, dir, clock, &log)
	if err := s.put("a@x.fr", "k1", &idemRecord{Fingerprint: "f1", MessageID: "m1@x", Created: now}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.put("a@x.fr", "k1", &idemRecord{Fingerprint: "f1", MessageID: "m1@x", Created: now, Status: 202, Body: json.RawMessage(`{}`), Type: "application/json"}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.put("a@x.fr", "k2", &idemRecord{Fingerprint: "f2", Created: now}, true); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir, clock, &log)
	r, err := s2.get("a@x.fr", "k1")
	if err != nil || r == nil || r.Status != 202 || r.MessageID != "m1@x" {
		t.Fatalf("%+v %v", r, err)
	}
	if r, _ := s2.get("b@x.fr", "k1"); r != nil {
		t.Fatal("a key of another BAL found")
	}
	if r, _ := s2.get("a@x.fr", "k2"); r == nil || r.Fingerprint != "f2" {
		t.Fatalf("%+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(dir, idemJournal))
	if bytes.Contains(b, []byte("k1")) || bytes.Contains(b, []byte("a@x.fr")) {
		t.Fatal("the key or the BAL written as given")
	}
}

// Keys older than the retention are forgotten, and the journal stays bounded: many records
// rewrite it to the live ones.
func TestIdemStoreBounded(t *testing.T) {
	dir, now := t.TempDir(), time.Now().UTC()
	clock := func() time.Time { return now }
	var log bytes.Buffer
	s := openTestStore(t, dir, clock, &log)
	body := json.RawMessage(fmt.Sprintf(`{"pad":%q}`, bytes.Repeat([]byte("x"), 1000)))
	const n = 20000 // about 20 MB of records, five times idemCompactSize
	for i := range n {
		// Every key is answered once, and the clock moves by a minute each 100 keys: the first
		// keys expire while the last are written.
		if i%100 == 0 {
			now = now.Add(time.Hour * 7 * 24 / (n / 100) * 2)
		}
		if err := s.put("a@x.fr", fmt.Sprint("k", i), &idemRecord{Fingerprint: "f", Created: now, Status: 202, Body: body}, false); err != nil {
			t.Fatal(err)
		}
	}
	size := s.j.Size()
	t.Logf("%d records written, %d live, journal %d bytes", n, len(s.recs), size)
	if len(s.recs) >= n*3/4 || size > 2*s.live+idemCompactSize+int64(2*len(body)) {
		t.Fatalf("%d live records, journal of %d bytes for %d live: not bounded", len(s.recs), size, s.live)
	}
	if r, _ := s.get("a@x.fr", "k0"); r != nil {
		t.Fatal("an expired key is still found")
	}
	if r, _ := s.get("a@x.fr", fmt.Sprint("k", n-1)); r == nil {
		t.Fatal("the last key is lost")
	}
	s2 := openTestStore(t, dir, clock, &log)
	if len(s2.recs) != len(s.recs) {
		t.Fatalf("%d records after reopen, want %d", len(s2.recs), len(s.recs))
	}
}

// The records of the earlier layout (one file per key) are moved into the journal; an
// unreadable one is set aside and logged.
func TestIdemStoreImport(t *testing.T) {
	dir, now := t.TempDir(), time.Now().UTC()
	b, _ := json.Marshal(&idemRecord{Fingerprint: "f", MessageID: "m@x", Created: now.Add(-time.Hour)})
	os.WriteFile(filepath.Join(dir, idemID("a@x.fr", "old")+".json"), b, 0o600)
	old, _ := json.Marshal(&idemRecord{Fingerprint: "f", Created: now.Add(-8 * 24 * time.Hour)})
	os.WriteFile(filepath.Join(dir, idemID("a@x.fr", "expired")+".json"), old, 0o600)
	os.WriteFile(filepath.Join(dir, idemID("a@x.fr", "bad")+".json"), []byte("{"), 0o600)
	var log bytes.Buffer
	s := openTestStore(t, dir, func() time.Time { return now }, &log)
	if r, _ := s.get("a@x.fr", "old"); r == nil || r.MessageID != "m@x" {
		t.Fatalf("%+v", r)
	}
	if r, _ := s.get("a@x.fr", "expired"); r != nil {
		t.Fatal("an expired record imported")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(m) != 0 {
		t.Fatalf("files left: %v", m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.bad")); len(m) != 1 || !bytes.Contains(log.Bytes(), []byte("set aside")) {
		t.Fatalf("the unreadable record: %v, log %s", m, log.String())
	}
}

// A damaged journal is set aside and logged; the records before the damage are kept and the
// store goes on.
func TestIdemStoreDamaged(t *testing.T) {
	dir, now := t.TempDir(), time.Now().UTC()
	clock := func() time.Time { return now }
	var log bytes.Buffer
	s := openTestStore(t, dir, clock, &log)
	s.put("a@x.fr", "k1", &idemRecord{Fingerprint: "f1", Created: now}, true)
	off := s.j.Size()
	s.put("a@x.fr", "k2", &idemRecord{Fingerprint: "f2", Created: now}, true)
	s.put("a@x.fr", "k3", &idemRecord{Fingerprint: "f3", Created: now}, true)
	f, _ := os.OpenFile(filepath.Join(dir, idemJournal), os.O_WRONLY, 0)
	f.WriteAt([]byte("X"), off+20)
	f.Close()
	s2 := openTestStore(t, dir, clock, &log)
	if r, _ := s2.get("a@x.fr", "k1"); r == nil {
		t.Fatal("the record before the damage is lost")
	}
	if !bytes.Contains(log.Bytes(), []byte("damaged idempotency journal")) {
		t.Fatalf("log %s", log.String())
	}
	if err := s2.put("a@x.fr", "k4", &idemRecord{Fingerprint: "f4", Created: now}, true); err != nil {
		t.Fatal(err)
	}
	// Not a journal at all: refused, the Handler does not start on it.
	os.WriteFile(filepath.Join(dir, idemJournal), []byte("something else"), 0o600)
	if _, err := openIdemStore(dir, clock, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a file of another kind accepted")
	}
}

// FuzzIdemRecord: any record payload reads back as a valid record or an error, never a panic.
func FuzzIdemRecord(f *testing.F) {
	good, _ := json.Marshal(&idemEntry{K: idemID("a@x.fr", "k"), idemRecord: idemRecord{Fingerprint: "f", MessageID: "m@x",
		Created: time.Unix(1800000000, 0).UTC(), Status: 202, Body: json.RawMessage(`{"message_id":"m@x"}`), Type: "application/json"}})
	f.Add(good)
	f.Add([]byte(`{"k":"00","fingerprint":"f"}`))
	f.Add([]byte(`{"k":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := decodeIdem(p)
		if err != nil {
			return
		}
		if len(e.K) != 64 || e.Fingerprint == "" {
			t.Fatalf("invalid record accepted: %+v", e)
		}
		// What reads back frames and reads back again the same.
		b, _ := json.Marshal(e)
		fr, err := journal.Frame(b)
		if err != nil {
			return
		}
		if _, err := journal.Read(bytes.NewReader(fr), func(p []byte) error { _, err := decodeIdem(p); return err }); err != nil {
			t.Fatal(err)
		}
	})
}
