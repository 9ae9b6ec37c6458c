package mailbox

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestExpungeLog: with a log of 4 modseqs, an expunge removes the entries older than its
// modseq minus 4; Changes since a modseq the log still covers lists the expunges exactly,
// since an older one says ExpungedUnknown (and still lists the changed messages).
func TestExpungeLog(t *testing.T) { forEachStore(t, testExpungeLog) }

func testExpungeLog(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, &Options{ExpungeLog: 4, WatchPoll: -1})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	for i := range 4 {
		if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	m0 := mb.ModSeq
	expunge := func(uid uint32) {
		t.Helper()
		if _, err := s.StoreFlags(ctx, mb.ID, []uint32{uid}, FlagsAdd, []string{`\Deleted`}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Expunge(ctx, mb.ID, []uint32{uid}); err != nil || !slices.Equal(got, []uint32{uid}) {
			t.Fatalf("Expunge(%d) = %v, %v", uid, got, err)
		}
	}
	expunge(1) // m0+2
	if c, err := s.Changes(ctx, mb.ID, m0); err != nil || c.ExpungedUnknown || !slices.Equal(c.Expunged, []uint32{1}) {
		t.Fatalf("Changes(m0) = %+v, %v", c, err)
	}
	for i := range 5 { // m0+3 … m0+7
		op := FlagsAdd
		if i%2 == 1 {
			op = FlagsRemove
		}
		if _, err := s.StoreFlags(ctx, mb.ID, []uint32{2}, op, []string{`\Flagged`}); err != nil {
			t.Fatal(err)
		}
	}
	expunge(3) // m0+9: the entries up to m0+5 go
	for _, c := range []struct {
		since   uint64
		unknown bool
		want    []uint32
	}{
		{m0, true, nil},
		{m0 + 4, true, nil},
		{m0 + 5, false, []uint32{3}},
		{m0 + 8, false, []uint32{3}},
		{m0 + 9, false, nil},
	} {
		ch, err := s.Changes(ctx, mb.ID, c.since)
		if err != nil || ch.ExpungedUnknown != c.unknown || !slices.Equal(ch.Expunged, c.want) {
			t.Errorf("Changes(m0+%d) = %+v, %v; want unknown %v, expunged %v", c.since-m0, ch, err, c.unknown, c.want)
		}
		if c.since == m0 && (len(ch.Messages) != 1 || ch.Messages[0].UID != 2) {
			t.Errorf("Changes(m0) messages = %+v, want UID 2's change", ch.Messages)
		}
	}
	var n int
	var err error
	switch s := s.(type) {
	case *SQLite:
		err = s.db.QueryRowContext(ctx, `SELECT count(*) FROM expunged WHERE mailbox=?`, mb.ID).Scan(&n)
	case *Postgres:
		err = s.pool.QueryRow(ctx, `SELECT count(*) FROM mailbox_expunged WHERE mailbox = $1`, mb.ID).Scan(&n)
	}
	if err != nil || n != 1 {
		t.Fatalf("%d entries in the log, want 1 (UID 3's): %v", n, err)
	}
}
