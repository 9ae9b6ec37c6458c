package mailbox

import (
	"bytes"
	"context"
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

// BenchmarkMessages measures reading the index of a 10,000-message folder, which SELECT,
// FETCH, SEARCH and the unilateral updates do.
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
