package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestChangesAndCounters drives a folder through appends, flag changes, a copy, a move and an
// expunge, and checks after each step the counters (which the triggers keep), the first
// unseen message, the keyword list, the BAL's message count, and that Changes since the
// previous modseq returns exactly what the step changed.
func TestChangesAndCounters(t *testing.T) { forEachStore(t, testChangesAndCounters) }

func testChangesAndCounters(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "a@h.fr", "Archive"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		var flags []string
		if i <= 2 {
			flags = []string{`\Seen`}
		}
		if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(i)), &AppendOptions{Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, messages, unseen, deleted, firstUnseen uint32, kw string) {
		t.Helper()
		m, err := s.Mailbox(ctx, "a@h.fr", Inbox)
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := s.Messages(ctx, m.ID, 0)
		var size int64
		var scanned []uint32
		for _, x := range ms {
			size += x.Size
			scanned = append(scanned, x.UID)
		}
		if uids, err := s.UIDs(ctx, m.ID); err != nil || !slices.Equal(uids, scanned) {
			t.Fatalf("%s: UIDs = %v, %v; the messages have %v", step, uids, err, scanned)
		}
		if m.Messages != messages || m.Unseen != unseen || m.Deleted != deleted || m.FirstUnseen != firstUnseen ||
			strings.Join(m.Keywords, " ") != kw || m.Size != size || len(ms) != int(messages) {
			t.Fatalf("%s: mailbox %+v, want messages=%d unseen=%d deleted=%d first unseen=%d keywords %q size %d",
				step, m, messages, unseen, deleted, firstUnseen, kw, size)
		}
	}
	check("append", 5, 3, 0, 3, "")
	if uids, err := s.UIDs(ctx, mb.ID); err != nil || fmt.Sprint(uids) != "[1 2 3 4 5]" {
		t.Fatalf("UIDs = %v, %v", uids, err)
	}
	if c, err := s.Changes(ctx, mb.ID, 0); err != nil || len(c.Messages) != 5 || c.ModSeq != mb.ModSeq {
		t.Fatalf("Changes(0) = %+v, %v", c, err)
	}

	last := mb.ModSeq
	since := func(step string, changed, expunged string) {
		t.Helper()
		c, err := s.Changes(ctx, mb.ID, last)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range c.Messages {
			got = append(got, fmt.Sprint(m.UID))
			if m.ModSeq <= last || m.ModSeq > c.ModSeq {
				t.Fatalf("%s: message modseq %d outside (%d, %d]", step, m.ModSeq, last, c.ModSeq)
			}
		}
		slices.Sort(c.Expunged)
		if strings.Join(got, " ") != changed || strings.Trim(fmt.Sprint(c.Expunged), "[]") != expunged || c.ModSeq <= last {
			t.Fatalf("%s: Changes(%d) = %+v, want changed %q expunged %q", step, last, c, changed, expunged)
		}
		last = c.ModSeq
	}
	if _, err := s.StoreFlags(ctx, mb.ID, []uint32{3}, FlagsAdd, []string{`\Seen`, "$Label1"}); err != nil {
		t.Fatal(err)
	}
	check("seen 3", 5, 2, 0, 4, "$Label1")
	since("seen 3", "3", "")
	if _, err := s.StoreFlags(ctx, mb.ID, []uint32{1, 4}, FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	check("delete 1 4", 5, 2, 2, 4, "$Label1")
	since("delete 1 4", "1 4", "")
	if _, err := s.Copy(ctx, mb.ID, []uint32{3}, "Archive"); err != nil {
		t.Fatal(err)
	}
	if arch, _ := s.Mailbox(ctx, "a@h.fr", "Archive"); arch.Messages != 1 || strings.Join(arch.Keywords, " ") != "$Label1" || arch.Unseen != 0 {
		t.Fatalf("Archive after copy = %+v", arch)
	}
	if gone, err := s.Expunge(ctx, mb.ID, nil); err != nil || fmt.Sprint(gone) != "[1 4]" {
		t.Fatalf("Expunge = %v, %v", gone, err)
	}
	check("expunge", 3, 1, 0, 5, "$Label1")
	since("expunge", "", "1 4")
	if _, err := s.Move(ctx, mb.ID, []uint32{5}, "Archive"); err != nil {
		t.Fatal(err)
	}
	check("move", 2, 0, 0, 0, "$Label1")
	since("move", "", "5")
	if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(6)), nil); err != nil {
		t.Fatal(err)
	}
	check("append 6", 3, 1, 0, 6, "$Label1")
	since("append 6", "6", "")
	if ms, err := s.MessagesByUID(ctx, mb.ID, []uint32{6, 1, 3, 6, 1000}); err != nil || len(ms) != 2 || ms[0].UID != 3 || ms[1].UID != 6 {
		t.Fatalf("MessagesByUID = %+v, %v", ms, err)
	}
	if b, err := s.GetBAL(ctx, "a@h.fr"); err != nil || b.Messages != 5 {
		t.Fatalf("GetBAL = %+v, %v (want 5 messages: 3 in INBOX, 2 in Archive)", b, err)
	}
	if _, err := s.Changes(ctx, 999, 0); err != ErrNoMailbox {
		t.Fatalf("Changes of no folder: %v", err)
	}
}

// TestMigrateCounters opens a store whose folders and messages were written by a version
// without counters, keyword list or expunge log (the schema of the previous release, rows
// inserted as it did): the counters are computed once, and then kept.
func TestMigrateCounters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(schema); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO bal(address,type,created) VALUES ('a@h.fr','ORG',0)`,
		`INSERT INTO mailbox(id,bal,name,uidvalidity,uidnext,modseq,subscribed) VALUES (1,'a@h.fr','INBOX',1,4,4,1)`,
		`INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq) VALUES (1,1,'x/1',10,0,'\Seen $Done',2)`,
		`INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq) VALUES (1,2,'x/2',20,0,'\Deleted',3)`,
		`INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq) VALUES (1,4,'x/4',30,0,'',4)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openTest(t, dir, nil)
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if mb.Messages != 3 || mb.Unseen != 2 || mb.Deleted != 1 || mb.Size != 60 || mb.FirstUnseen != 2 || fmt.Sprint(mb.Keywords) != "[$Done]" || mb.Recent != 3 {
		t.Fatalf("migrated mailbox = %+v", mb)
	}
	if uids, err := s.UIDs(ctx, mb.ID); err != nil || fmt.Sprint(uids) != "[1 2 4]" {
		t.Fatalf("migrated UIDs = %v, %v", uids, err)
	}
	for _, name := range []string{"uidrun", "expunged", "message_uid", "message_unseen", "message_deleted",
		"message_added", "message_removed", "message_flagged"} {
		var n int
		if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name=?`, name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("after migration, %s: %d, %v", name, n, err)
		}
	}
	if b, err := s.GetBAL(ctx, "a@h.fr"); err != nil || b.Messages != 3 {
		t.Fatalf("GetBAL = %+v, %v", b, err)
	}
	if _, err := s.StoreFlags(ctx, mb.ID, []uint32{4}, FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	if mb, _ = s.Mailbox(ctx, "a@h.fr", Inbox); mb.Unseen != 1 || mb.FirstUnseen != 2 {
		t.Fatalf("after STORE: %+v", mb)
	}
	// a second open migrates nothing more
	s.Close()
	s = openTest(t, dir, nil)
	if mb, _ = s.Mailbox(ctx, "a@h.fr", Inbox); mb.Messages != 3 || mb.Unseen != 1 {
		t.Fatalf("reopened: %+v", mb)
	}
}

// TestWatchOtherProcess: a change made through another Store on the same files (another
// process: the CLI, local delivery) wakes the watchers of this one through its periodic
// look; a change made through this one wakes them at once.
func TestWatchOtherProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, &Options{WatchPoll: 20 * time.Millisecond})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	ch, cancel := s.Watch(mb.ID)
	defer cancel()
	ch2, cancel2 := s.Watch(mb.ID)
	cancel2()
	cancel2() // twice is harmless
	drain := func() {
		for {
			select {
			case <-ch:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	drain()
	other := openTest(t, dir, &Options{WatchPoll: -1})
	if _, err := other.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for another store's append")
	}
	// a store that never looks at the files signals its own changes
	och, ocancel := other.Watch(mb.ID)
	defer ocancel()
	if _, err := other.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(2)), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-och:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for this store's append")
	}
	select {
	case <-ch2:
		t.Fatal("a cancelled watch was signalled")
	default:
	}
}

// TestUIDRuns expunges UIDs at random (first, last, middle of runs, whole runs) between
// appends and checks after each step that the UID list the store keeps as runs is the list of
// its messages (as UIDs and as UIDRuns, whose runs never touch), and that \Recent counts the
// messages above the last claim; an unknown folder has no runs.
func TestUIDRuns(t *testing.T) { forEachStore(t, testUIDRuns) }

func testUIDRuns(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	if runs, err := s.UIDRuns(ctx, mb.ID+1000); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("UIDRuns of no folder = %v, %v", runs, err)
	}
	if runs, err := s.UIDRuns(ctx, mb.ID); err != nil || len(runs) != 0 {
		t.Fatalf("UIDRuns of an empty folder = %v, %v", runs, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var claimed uint32
	for step := 0; step < 40; step++ {
		for range rng.IntN(4) + 1 {
			if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(step)), nil); err != nil {
				t.Fatal(err)
			}
		}
		have, _ := s.UIDs(ctx, mb.ID)
		var drop []uint32
		for _, u := range have {
			if rng.IntN(3) == 0 {
				drop = append(drop, u)
			}
		}
		s.StoreFlags(ctx, mb.ID, drop, FlagsAdd, []string{`\Deleted`})
		if _, err := s.Expunge(ctx, mb.ID, nil); err != nil {
			t.Fatal(err)
		}
		if step%7 == 0 {
			_, claimed, _ = s.ClaimRecent(ctx, mb.ID)
		}
		ms, _ := s.Messages(ctx, mb.ID, 0)
		var want []uint32
		recent := uint32(0)
		for _, m := range ms {
			want = append(want, m.UID)
			if m.UID > claimed {
				recent++
			}
		}
		got, err := s.UIDs(ctx, mb.ID)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("step %d: UIDs = %v, %v; want %v", step, got, err, want)
		}
		runs, err := s.UIDRuns(ctx, mb.ID)
		if err != nil || !slices.Equal(expandRuns(runs), want) {
			t.Fatalf("step %d: UIDRuns = %v, %v; want %v", step, runs, err, want)
		}
		for i := 1; i < len(runs); i++ {
			if runs[i].First <= runs[i-1].Last+1 {
				t.Fatalf("step %d: UIDRuns %v: runs %d and %d touch", step, runs, i-1, i)
			}
		}
		if m, _ := s.Mailbox(ctx, "a@h.fr", Inbox); m.Recent != recent || m.Messages != uint32(len(want)) {
			t.Fatalf("step %d: Recent %d Messages %d, want %d %d", step, m.Recent, m.Messages, recent, len(want))
		}
	}
}

// TestWatchOwnChanges: a store signals at once the changes made through it (append, flags,
// expunge, folder deletion), whatever its FlagSync, and a cancelled watch hears nothing.
func TestWatchOwnChanges(t *testing.T) { forEachStore(t, testWatchOwnChanges) }

func testWatchOwnChanges(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, &Options{FlagSync: FlagSyncNormal, WatchPoll: -1})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	if err := s.CreateMailbox(ctx, "a@h.fr", "Drafts"); err != nil {
		t.Fatal(err)
	}
	mb, _ := s.Mailbox(ctx, "a@h.fr", "Drafts")
	ch, cancel := s.Watch(mb.ID)
	defer cancel()
	gone, cancelGone := s.Watch(mb.ID)
	cancelGone()
	cancelGone() // twice is harmless
	signalled := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no signal", what)
		}
	}
	if _, err := s.Append(ctx, "a@h.fr", "Drafts", strings.NewReader(msg(1)), nil); err != nil {
		t.Fatal(err)
	}
	signalled("append")
	if out, err := s.StoreFlags(ctx, mb.ID, []uint32{1}, FlagsAdd, []string{`\Deleted`}); err != nil || len(out) != 1 || !out[0].HasFlag(`\Deleted`) {
		t.Fatalf("StoreFlags with FlagSyncNormal = %+v, %v", out, err)
	}
	signalled("flags")
	if gone, err := s.Expunge(ctx, mb.ID, nil); err != nil || len(gone) != 1 {
		t.Fatalf("Expunge = %v, %v", gone, err)
	}
	signalled("expunge")
	if err := s.DeleteMailbox(ctx, "a@h.fr", "Drafts"); err != nil {
		t.Fatal(err)
	}
	signalled("deletion")
	select {
	case <-gone:
		t.Fatal("a cancelled watch was signalled")
	default:
	}
}

// TestMovesBothWays: two writers move messages between two folders in opposite directions at
// once (on PostgreSQL, through two stores: two nodes whose transactions may deadlock and are
// retried). No move fails, no message is lost or doubled, and the counters and the BAL's
// usage match the messages.
func TestMovesBothWays(t *testing.T) { forEachStore(t, testMovesBothWays) }

func testMovesBothWays(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	s2 := s
	if p, ok := s.(*Postgres); ok {
		s2 = openPostgresTest(t, p.pool.Config().ConnString(), nil)
	}
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	s.CreateMailbox(ctx, "a@h.fr", "B")
	const n = 40
	for i := range n {
		box := Inbox
		if i%2 == 1 {
			box = "B"
		}
		if _, err := s.Append(ctx, "a@h.fr", box, strings.NewReader(msg(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	b, _ := s.Mailbox(ctx, "a@h.fr", "B")
	errs := make(chan error, 2)
	mover := func(st Store, from MailboxID, to string) {
		for range 30 {
			uids, err := st.UIDs(ctx, from)
			if err == nil && len(uids) > 0 {
				_, err = st.Move(ctx, from, uids[:min(2, len(uids))], to)
			}
			if err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}
	go mover(s, a.ID, "B")
	go mover(s2, b.ID, Inbox)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	var size int64
	for _, id := range []MailboxID{a.ID, b.ID} {
		uids, _ := s.UIDs(ctx, id)
		heads, err := s.HeadersByUID(ctx, id, uids)
		if err != nil || len(heads) != len(uids) {
			t.Fatalf("headers: %d for %d UIDs, %v", len(heads), len(uids), err)
		}
		for _, h := range heads {
			seen[string(h)]++
			size += int64(len(h))
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages after the moves, want %d", len(seen), n)
	}
	for h, c := range seen {
		if c != 1 {
			t.Fatalf("message %q present %d times", h, c)
		}
	}
	a, _ = s.Mailbox(ctx, "a@h.fr", Inbox)
	b, _ = s.Mailbox(ctx, "a@h.fr", "B")
	bal, _ := s.GetBAL(ctx, "a@h.fr")
	if a.Messages+b.Messages != n || bal.Messages != n || bal.UsedBytes != a.Size+b.Size {
		t.Fatalf("after the moves: INBOX %d, B %d, BAL %d messages, used %d for %d", a.Messages, b.Messages, bal.Messages, bal.UsedBytes, a.Size+b.Size)
	}
}
