package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string, opts *Options) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBALRegistry(t *testing.T) { forEachStore(t, testBALRegistry) }

func testBALRegistry(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	tests := []struct {
		name string
		bal  BAL
		err  error
	}{
		{"per", BAL{Address: "Dr.Martin@hopital.test.mssante.fr", Type: PER, Owner: "810000000001"}, nil},
		{"org", BAL{Address: "cardio@hopital.test.mssante.fr", Type: ORG, Owner: "FINESS 010000001"}, nil},
		{"app", BAL{Address: "dpi@hopital.test.mssante.fr", Type: APP, CertDN: "CN=dpi,O=Hopital", QuotaBytes: 1000}, nil},
		{"duplicate", BAL{Address: "DPI@hopital.test.mssante.fr", Type: ORG}, ErrBALExists},
		{"app without DN", BAL{Address: "x@h.fr", Type: APP}, ErrInvalid},
		{"DN on PER", BAL{Address: "y@h.fr", Type: PER, CertDN: "CN=y"}, ErrInvalid},
		{"DN reused", BAL{Address: "z@h.fr", Type: APP, CertDN: "cn=DPI, o=hopital"}, ErrCertDNInUse},
		{"DN malformed", BAL{Address: "m@h.fr", Type: APP, CertDN: "not a DN"}, ErrInvalid},
		{"bad type", BAL{Address: "w@h.fr", Type: "CAB"}, ErrInvalid},
		{"bad address", BAL{Address: "no-at-sign", Type: PER}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AddBAL(ctx, &tt.bal)
			if !errors.Is(err, tt.err) {
				t.Fatalf("AddBAL = %v, want %v", err, tt.err)
			}
		})
	}
	list, err := s.ListBALs(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("ListBALs = %d, %v", len(list), err)
	}
	if list[2].Address != "dr.martin@hopital.test.mssante.fr" || list[2].Type != PER {
		t.Fatalf("list[2] = %+v", list[2])
	}
	b, err := s.BALByCertDN(ctx, "O=Hopital,CN=dpi")
	if err != nil || b.Address != "dpi@hopital.test.mssante.fr" || b.QuotaBytes != 1000 {
		t.Fatalf("BALByCertDN = %+v, %v", b, err)
	}
	if _, err := s.BALByCertDN(ctx, "CN=other"); !errors.Is(err, ErrNoBAL) {
		t.Fatalf("unknown DN: %v", err)
	}
	if mb, err := s.Mailbox(ctx, b.Address, "inbox"); err != nil || mb.Name != Inbox {
		t.Fatalf("INBOX = %+v, %v", mb, err)
	}
	if err := s.RemoveBAL(ctx, "cardio@hopital.test.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBAL(ctx, "cardio@hopital.test.mssante.fr"); !errors.Is(err, ErrNoBAL) {
		t.Fatalf("removed BAL: %v", err)
	}
	if err := s.RemoveBAL(ctx, "cardio@hopital.test.mssante.fr"); !errors.Is(err, ErrNoBAL) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestPassword(t *testing.T) { forEachStore(t, testPassword) }

func testPassword(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	if err := s.CheckPassword(ctx, "a@h.fr", ""); !errors.Is(err, ErrAuthFailed) {
		t.Fatal("no password set must fail")
	}
	if err := s.SetPassword(ctx, "a@h.fr", "s3cret"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pw string
		ok       bool
	}{{"a@h.fr", "s3cret", true}, {"A@H.FR", "s3cret", true}, {"a@h.fr", "S3cret", false}, {"b@h.fr", "s3cret", false}, {"a@h.fr", "", false}} {
		if err := s.CheckPassword(ctx, c.user, c.pw); (err == nil) != c.ok {
			t.Errorf("CheckPassword(%q,%q) = %v", c.user, c.pw, err)
		}
	}
	if err := s.SetPassword(ctx, "nobody@h.fr", "x"); !errors.Is(err, ErrNoBAL) {
		t.Fatal(err)
	}
}

func msg(i int) string {
	return fmt.Sprintf("From: a@h.fr\r\nTo: b@h.fr\r\nSubject: test %d\r\nMessage-ID: <%d@h.fr>\r\n\r\nbody %d\r\n", i, i, i)
}

func TestMessages(t *testing.T) { forEachStore(t, testMessages) }

func testMessages(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG, QuotaBytes: 10000})
	var uids []uint32
	for i := 1; i <= 3; i++ {
		r, err := s.Append(ctx, "a@h.fr", "INBOX", strings.NewReader(msg(i)), &AppendOptions{Flags: []string{`\seen`, "$Label", "$label"}})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, r.UID)
	}
	if uids[0] != 1 || uids[2] != 3 {
		t.Fatalf("uids = %v", uids)
	}
	mb, _ := s.Mailbox(ctx, "a@h.fr", "INBOX")
	if mb.Messages != 3 || mb.UIDNext != 4 || mb.Unseen != 0 {
		t.Fatalf("mailbox = %+v", mb)
	}
	ms, _ := s.Messages(ctx, mb.ID, 0)
	if len(ms) != 3 || strings.Join(ms[0].Flags, ",") != `\Seen,$Label` {
		t.Fatalf("messages = %+v", ms)
	}
	rc, size, err := s.Open(ctx, mb.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != msg(2) || size != int64(len(b)) {
		t.Fatalf("content = %q", b)
	}
	// flags
	before := mb.ModSeq
	out, err := s.StoreFlags(ctx, mb.ID, []uint32{1, 2, 99}, FlagsAdd, []string{`\DELETED`})
	if err != nil || len(out) != 2 || !out[0].HasFlag(`\Deleted`) {
		t.Fatalf("StoreFlags = %+v, %v", out, err)
	}
	changed, _ := s.Messages(ctx, mb.ID, before)
	if len(changed) != 2 {
		t.Fatalf("changed since %d = %+v", before, changed)
	}
	s.StoreFlags(ctx, mb.ID, []uint32{2}, FlagsRemove, []string{`\deleted`})
	// copy, move
	if err := s.CreateMailbox(ctx, "a@h.fr", "Archives/2026"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(ctx, "a@h.fr", "Archives"); err != nil {
		t.Fatal("parent not created:", err)
	}
	cr, err := s.Copy(ctx, mb.ID, []uint32{1, 3}, "Archives/2026")
	if err != nil || len(cr.DestUIDs) != 2 || cr.DestUIDs[0] != 1 {
		t.Fatalf("Copy = %+v, %v", cr, err)
	}
	if _, err := s.Copy(ctx, mb.ID, []uint32{1}, "Nope"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("copy to missing: %v", err)
	}
	exp, err := s.Expunge(ctx, mb.ID, nil)
	if err != nil || len(exp) != 1 || exp[0] != 1 {
		t.Fatalf("Expunge = %v, %v", exp, err)
	}
	arch, _ := s.Mailbox(ctx, "a@h.fr", "Archives/2026")
	rc, _, err = s.Open(ctx, arch.ID, 1)
	if err != nil {
		t.Fatal("copied message lost with its source:", err)
	}
	b, _ = io.ReadAll(rc)
	rc.Close()
	if string(b) != msg(1) {
		t.Fatal("copy content differs")
	}
	mr, err := s.Move(ctx, mb.ID, []uint32{2}, "Archives")
	if err != nil || len(mr.DestUIDs) != 1 {
		t.Fatalf("Move = %+v, %v", mr, err)
	}
	mb, _ = s.Mailbox(ctx, "a@h.fr", "INBOX")
	if mb.Messages != 1 {
		t.Fatalf("INBOX after move = %+v", mb)
	}
	bal, _ := s.GetBAL(ctx, "a@h.fr")
	if bal.UsedBytes != int64(len(msg(2))+len(msg(3))+len(msg(1))+len(msg(3))) || bal.Messages != 4 {
		t.Fatalf("usage = %d bytes %d msgs", bal.UsedBytes, bal.Messages)
	}
	// quota
	if _, err := s.Append(ctx, "a@h.fr", "INBOX", bytes.NewReader(make([]byte, 10000)), nil); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if _, err := s.Append(ctx, "a@h.fr", "INBOX", bytes.NewReader(make([]byte, 100)), &AppendOptions{MaxSize: 50}); !errors.Is(err, ErrTooBig) {
		t.Fatalf("too big: %v", err)
	}
	// rename and delete
	if err := s.RenameMailbox(ctx, "a@h.fr", "Archives", "Old"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(ctx, "a@h.fr", "Old/2026"); err != nil {
		t.Fatal("child not renamed:", err)
	}
	if err := s.DeleteMailbox(ctx, "a@h.fr", "INBOX"); !errors.Is(err, ErrMailboxReserved) {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, "a@h.fr", "Old/2026"); err != nil {
		t.Fatal(err)
	}
	bal, _ = s.GetBAL(ctx, "a@h.fr")
	if bal.Messages != 2 {
		t.Fatalf("after delete: %d messages", bal.Messages)
	}
	// no stray files: blobs on disk = rows (PostgreSQL keeps the bodies in the rows)
	if sq, ok := s.(*SQLite); ok && countBlobs(t, sq.dir) != 2 {
		t.Fatalf("%d message files on disk, want 2", countBlobs(t, sq.dir))
	}
}

func countBlobs(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestDeliveryIdempotent(t *testing.T) { forEachStore(t, testDeliveryIdempotent) }

func testDeliveryIdempotent(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	r1, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), &AppendOptions{DeliveryID: "q-1"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), &AppendOptions{DeliveryID: "q-1"})
	if err != nil || !r2.Duplicate || r2.UID != r1.UID {
		t.Fatalf("second delivery = %+v, %v", r2, err)
	}
	if sq, ok := s.(*SQLite); ok && countBlobs(t, sq.dir) != 1 {
		t.Fatalf("%d files, want 1", countBlobs(t, sq.dir))
	}
}

func TestPurgeAudited(t *testing.T) { forEachStore(t, testPurgeAudited) }

func testPurgeAudited(t *testing.T, open opener) {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, &Options{Now: func() time.Time { return now }})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG, Retention: 30 * 24 * time.Hour})
	s.AddBAL(ctx, &BAL{Address: "keep@h.fr", Type: ORG})
	old := now.Add(-40 * 24 * time.Hour)
	s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), &AppendOptions{Date: old})
	s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(2)), &AppendOptions{Date: now.Add(-time.Hour)})
	s.Append(ctx, "keep@h.fr", Inbox, strings.NewReader(msg(3)), &AppendOptions{Date: old})
	res, err := s.Purge(ctx, now)
	if err != nil || res.Messages != 1 || res.Bytes != int64(len(msg(1))) {
		t.Fatalf("Purge = %+v, %v", res, err)
	}
	a, _ := s.GetBAL(ctx, "a@h.fr")
	k, _ := s.GetBAL(ctx, "keep@h.fr")
	if a.Messages != 1 || k.Messages != 1 {
		t.Fatalf("left: %d, %d", a.Messages, k.Messages)
	}
	log, _ := s.Audit(ctx, now.Add(-time.Minute))
	found := false
	for _, e := range log {
		if e.Event == "retention-purge" && e.BAL == "a@h.fr" && strings.Contains(e.Detail, "messages=1") {
			found = true
		}
		if strings.Contains(e.Detail, "test 1") {
			t.Fatal("content in audit log")
		}
	}
	if !found {
		t.Fatalf("no purge audit entry: %+v", log)
	}
}

func TestReopenAndGarbage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := OpenSQLite(ctx, dir, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), nil)
	s.Close()
	// a file written but never committed, as a crash leaves it
	os.MkdirAll(filepath.Join(dir, "blobs", "ab"), 0o700)
	os.WriteFile(filepath.Join(dir, "blobs", "ab", "orphan"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "msg-1"), []byte("x"), 0o600)
	s = openTest(t, dir, nil)
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil || mb.Messages != 1 || mb.UIDNext != 2 {
		t.Fatalf("after reopen: %+v, %v", mb, err)
	}
	if n := countBlobs(t, dir); n != 1 {
		t.Fatalf("%d files after garbage collection, want 1", n)
	}
}

// A store opened while another has it open (an "mssante bal" command beside a running node)
// leaves the files the other may be writing: only a lone opener collects garbage.
func TestGarbageLeftWhileSharedAndCollectedAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	node := openTest(t, dir, nil)
	// a delivery of the node in flight: its file written, its row not committed yet
	os.MkdirAll(filepath.Join(dir, "blobs", "ab"), 0o700)
	os.WriteFile(filepath.Join(dir, "blobs", "ab", "inflight"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "msg-1"), []byte("x"), 0o600)
	admin, err := OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin.Close()
	if n := countBlobs(t, dir); n != 1 {
		t.Fatalf("%d message files after a second opener, want the node's 1 in flight", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "msg-1")); err != nil {
		t.Fatalf("the node's temporary file: %v", err)
	}
	node.Close()
	alone, err := OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	if n := countBlobs(t, dir); n != 0 {
		t.Fatalf("%d message files left by a lone opener, want 0", n)
	}
}

// TestCrashDuringDelivery kills (SIGKILL) a process that is delivering messages, then checks
// that every message is in the mailbox once or not at all, and intact.
func TestCrashDuringDelivery(t *testing.T) {
	if os.Getenv("MAILBOX_CRASH_DIR") != "" {
		crashChild(os.Getenv("MAILBOX_CRASH_DIR"))
		return
	}
	dir := t.TempDir()
	ctx := context.Background()
	s, _ := OpenSQLite(ctx, dir, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: APP, CertDN: "CN=a"})
	s.Close()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringDelivery$")
		cmd.Env = append(os.Environ(), "MAILBOX_CRASH_DIR="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// the child says when its first delivery of this round is committed; the kill then
		// lands at some point of the following ones
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+round*20) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}
	s = openTest(t, dir, nil)
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	ms, _ := s.Messages(ctx, mb.ID, 0)
	if len(ms) == 0 {
		t.Fatal("no message delivered before the kills")
	}
	seen := map[string]bool{}
	for _, m := range ms {
		rc, _, err := s.Open(ctx, mb.ID, m.UID)
		if err != nil {
			t.Fatalf("uid %d: %v", m.UID, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		id := string(bytes.SplitN(b, []byte("\n"), 2)[0])
		if seen[id] {
			t.Fatalf("message %s delivered twice", id)
		}
		seen[id] = true
		if int64(len(b)) != m.Size || !bytes.HasSuffix(b, []byte("END\r\n")) {
			t.Fatalf("uid %d truncated", m.UID)
		}
	}
	if n := countBlobs(t, dir); n != len(ms) {
		t.Fatalf("%d files for %d messages", n, len(ms))
	}
	t.Logf("%d messages delivered across 3 kills, each once", len(ms))
}

// crashChild delivers the same numbered messages forever (a queue retrying after a crash).
func crashChild(dir string) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, dir, nil)
	if err != nil {
		os.Exit(3)
	}
	body := strings.Repeat("x", 20000)
	for i := 0; ; i++ {
		id := fmt.Sprintf("q-%d", i%200)
		m := "X-Id: " + id + "\r\n\r\n" + body + "END\r\n"
		_, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(m), &AppendOptions{DeliveryID: id})
		if i == 0 && err == nil {
			os.Stdout.WriteString("delivered\n")
		}
	}
}

// TestMigrateOldSchema opens a store written by the first version of the schema (no
// cert_dn_key, recent_uid or header columns) and uses it.
func TestMigrateOldSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE bal (address TEXT PRIMARY KEY, type TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
			cert_dn TEXT NOT NULL DEFAULT '', quota INTEGER NOT NULL DEFAULT 0, retention_s INTEGER NOT NULL DEFAULT 0,
			pwhash TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)`,
		`CREATE UNIQUE INDEX bal_cert_dn ON bal(cert_dn) WHERE cert_dn <> ''`,
		`CREATE TABLE mailbox (id INTEGER PRIMARY KEY, bal TEXT NOT NULL REFERENCES bal(address) ON DELETE CASCADE, name TEXT NOT NULL,
			uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1, modseq INTEGER NOT NULL DEFAULT 1, subscribed INTEGER NOT NULL DEFAULT 0, UNIQUE (bal, name))`,
		`CREATE TABLE message (mailbox INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE, uid INTEGER NOT NULL, blob TEXT NOT NULL,
			size INTEGER NOT NULL, internal INTEGER NOT NULL, flags TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL, delivery TEXT, PRIMARY KEY (mailbox, uid)) WITHOUT ROWID`,
		`INSERT INTO bal(address,type,cert_dn,created) VALUES ('dpi@h.fr','APP','CN=dpi,O=H',0)`,
		`INSERT INTO mailbox(bal,name,uidvalidity,subscribed) VALUES ('dpi@h.fr','INBOX',1,1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openTest(t, dir, nil)
	if b, err := s.BALByCertDN(ctx, "o=h, cn=DPI"); err != nil || b.Address != "dpi@h.fr" {
		t.Fatalf("BALByCertDN after migration = %+v, %v", b, err)
	}
	r, err := s.Append(ctx, "dpi@h.fr", Inbox, strings.NewReader(msg(1)), nil)
	if err != nil || r.UID != 1 {
		t.Fatalf("Append = %+v, %v", r, err)
	}
	if h, err := s.Headers(ctx, r.Mailbox, 0); err != nil || len(h[1]) == 0 {
		t.Fatalf("Headers = %v, %v", h, err)
	}
	if _, _, err := s.ClaimRecent(ctx, r.Mailbox); err != nil {
		t.Fatal(err)
	}
}

func TestPurgeEvery(t *testing.T) { forEachStore(t, testPurgeEvery) }

func testPurgeEvery(t *testing.T, open opener) {
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s := open(t, &Options{Now: func() time.Time { return now }})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG, Retention: 24 * time.Hour})
	s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), &AppendOptions{Date: now.Add(-48 * time.Hour)})
	done := make(chan struct{})
	go func() { PurgeEvery(ctx, s, time.Hour, func() time.Time { return now }, nil); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := s.GetBAL(context.Background(), "a@h.fr"); b.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first purge round did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestUnstorableText: addresses, folder names, flags and DNs that are not UTF-8 text or hold a
// NUL byte (which PostgreSQL cannot store) get the answers of any unknown name on both
// stores, never a database error: no BAL, no folder, a failed login, a dropped flag.
func TestUnstorableText(t *testing.T) { forEachStore(t, testUnstorableText) }

func testUnstorableText(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"\xff@h.fr", "a\x00@h.fr"} {
		if err := s.AddBAL(ctx, &BAL{Address: bad, Type: ORG}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddBAL(%q) = %v", bad, err)
		}
		if _, err := s.GetBAL(ctx, bad); !errors.Is(err, ErrNoBAL) {
			t.Errorf("GetBAL(%q) = %v", bad, err)
		}
		if err := s.CheckPassword(ctx, bad, "x"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("CheckPassword(%q) = %v", bad, err)
		}
		if _, err := s.Mailbox(ctx, bad, Inbox); !errors.Is(err, ErrNoMailbox) {
			t.Errorf("Mailbox(%q) = %v", bad, err)
		}
		if _, err := s.Append(ctx, bad, Inbox, strings.NewReader(msg(1)), nil); !errors.Is(err, ErrNoMailbox) {
			t.Errorf("Append to %q = %v", bad, err)
		}
	}
	if err := s.AddBAL(ctx, &BAL{Address: "o@h.fr", Type: ORG, Owner: "\xfe"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddBAL with a non-UTF-8 owner = %v", err)
	}
	for _, bad := range []string{"Dossier\xff", "Dos\x00sier"} {
		if err := s.CreateMailbox(ctx, "a@h.fr", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateMailbox(%q) = %v", bad, err)
		}
		if _, err := s.Mailbox(ctx, "a@h.fr", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Mailbox(%q) = %v", bad, err)
		}
	}
	if _, err := s.BALByCertDN(ctx, "CN=\xff"); !errors.Is(err, ErrNoBAL) {
		t.Errorf("BALByCertDN = %v", err)
	}
	r, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), &AppendOptions{Flags: []string{"$ok", "$\xff", `\Seen`}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StoreFlags(ctx, r.Mailbox, []uint32{r.UID}, FlagsAdd, []string{"$bad\xfe"})
	if err != nil || len(out) != 1 || strings.Join(out[0].Flags, " ") != `$ok \Seen` {
		t.Fatalf("flags = %+v, %v", out, err)
	}
}
