package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// BenchmarkAppend measures a durable local delivery of a 20 KB message (two fsyncs and a
// WAL commit); bench/imap/run.sh compares the whole IMAP path with Dovecot.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	msg := bytes.Repeat([]byte("0123456789abcdef\r\n"), 20<<10/18)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := s.Append(ctx, "a@h.fr", Inbox, bytes.NewReader(msg), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessages measures reading the index of a 10,000-message folder, which SEARCH
// does once per session (then it reads the changes).
func BenchmarkMessages(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	// insert index rows directly: the benchmark is about reading them
	tx, _ := s.db.Begin()
	for i := 1; i <= 10000; i++ {
		tx.Exec(`INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq) VALUES (?,?,?,?,?,?,?)`, mb.ID, i, "x", 20480, 0, `\Seen $Label`, 1)
	}
	tx.Commit()
	for b.Loop() {
		ms, err := s.Messages(ctx, mb.ID, 0)
		if err != nil || len(ms) != 10000 {
			b.Fatal(err, len(ms))
		}
	}
}

// fillRows inserts n index rows into a folder directly, with every 100th UID missing (the
// gaps expunges leave): the benchmarks below are about reading, not delivering. The triggers
// keep the counters and UID runs as for a delivery.
func fillRows(b *testing.B, s *SQLite, id MailboxID, n int) {
	tx, _ := s.db.Begin()
	for i, done := 1, 0; done < n; i++ {
		if i%100 == 50 {
			continue
		}
		done++
		if _, err := tx.Exec(`INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq) VALUES (?,?,?,?,?,?,?)`, id, i, "x", 20480, 0, `\Seen`, 1); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLookup measures, at 1,000 and 100,000 messages, the BAL look-up of every LOGIN and
// RCPT (GetBAL) and what SELECT reads (the folder's counters and its UIDs as runs): the
// look-up should stay flat as the folder grows, SELECT grow with the gaps of its UIDs (one
// every 100 UIDs here), no longer with its messages.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1000, 100000} {
		s, err := OpenSQLite(ctx, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
		mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
		fillRows(b, s, mb.ID, n)
		b.Run(fmt.Sprintf("GetBAL/%d", n), func(b *testing.B) {
			for b.Loop() {
				if bal, err := s.GetBAL(ctx, "a@h.fr"); err != nil || bal.Messages != int64(n) {
					b.Fatal(bal, err)
				}
			}
		})
		b.Run(fmt.Sprintf("Select/%d", n), func(b *testing.B) {
			for b.Loop() {
				m, err := s.Mailbox(ctx, "a@h.fr", Inbox)
				if err != nil {
					b.Fatal(err)
				}
				runs, err := s.UIDRuns(ctx, m.ID)
				if err != nil || len(expandRuns(runs[:1])) != 49 {
					b.Fatal(runs[:1], err)
				}
			}
		})
		s.Close()
	}
}

// BenchmarkStoreFlags measures what an IMAP STORE on one message costs the store at 1,000 and
// 100,000 messages, with each FlagSync: the flag change, then the session's read of the rows
// changed since its modseq. With FlagSyncFull most of it is the fsync of the log.
func BenchmarkStoreFlags(b *testing.B) {
	ctx := context.Background()
	for _, fs := range []struct {
		name string
		sync FlagSync
	}{{"full", FlagSyncFull}, {"normal", FlagSyncNormal}} {
		for _, n := range []int{1000, 100000} {
			s, err := OpenSQLite(ctx, b.TempDir(), &Options{FlagSync: fs.sync})
			if err != nil {
				b.Fatal(err)
			}
			s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
			mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
			fillRows(b, s, mb.ID, n)
			b.Run(fmt.Sprintf("%s/%d", fs.name, n), func(b *testing.B) {
				since := uint64(1) // the modseq of the rows fillRows inserted
				for i := 0; b.Loop(); i++ {
					op := FlagsAdd
					if i%2 == 1 {
						op = FlagsRemove
					}
					ms, err := s.StoreFlags(ctx, mb.ID, []uint32{uint32(n / 2)}, op, []string{`\Flagged`})
					if err != nil || len(ms) != 1 {
						b.Fatal(ms, err)
					}
					changed, err := s.Messages(ctx, mb.ID, since)
					if err != nil || len(changed) != 1 {
						b.Fatal(len(changed), err)
					}
					since = changed[0].ModSeq
				}
			})
			s.Close()
		}
	}
}
