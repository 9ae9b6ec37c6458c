package mailbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The counts of each folder and the UIDs it expunged are kept by triggers, in the
// transaction of the change, so that reading a folder's state costs what it returns and not
// the size of the folder: SELECT, STATUS and the BAL look-up read counters, an IMAP session
// reads the rows whose modseq is above the last it saw (RFC 7162 §3.1 calls the folder's
// counter HIGHESTMODSEQ), expunges included.
//
// uidrun holds the UIDs of each folder as runs of consecutive UIDs, so that a session's
// sequence numbers (SELECT) cost the number of gaps left by expunges, not of messages. The
// triggers keep them exact: a new UID extends the run ending just below it or starts one; an
// expunged UID shortens or splits its run.
const changesSchema = `
CREATE TABLE IF NOT EXISTS uidrun (
	mailbox INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
	first INTEGER NOT NULL,
	last INTEGER NOT NULL,
	PRIMARY KEY (mailbox, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expunged (
	mailbox INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
	modseq INTEGER NOT NULL,
	uid INTEGER NOT NULL,
	PRIMARY KEY (mailbox, modseq, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_uid ON message(mailbox, uid);
CREATE INDEX IF NOT EXISTS message_unseen ON message(mailbox, uid) WHERE NOT instr(' '||lower(flags)||' ', ' \seen ');
CREATE INDEX IF NOT EXISTS message_deleted ON message(mailbox, uid) WHERE instr(' '||lower(flags)||' ', ' \deleted ');
CREATE TRIGGER IF NOT EXISTS message_added AFTER INSERT ON message BEGIN
	UPDATE mailbox SET n_messages=n_messages+1, n_size=n_size+new.size,
		n_unseen=n_unseen+(NOT instr(' '||lower(new.flags)||' ', ' \seen ')),
		n_deleted=n_deleted+(instr(' '||lower(new.flags)||' ', ' \deleted ')>0)
	WHERE id=new.mailbox;
	INSERT INTO uidrun(mailbox, first, last) SELECT new.mailbox, new.uid, new.uid
		WHERE NOT EXISTS (SELECT 1 FROM uidrun WHERE mailbox=new.mailbox AND last=new.uid-1
			AND first=(SELECT max(first) FROM uidrun WHERE mailbox=new.mailbox AND first<new.uid));
	UPDATE uidrun SET last=new.uid WHERE mailbox=new.mailbox AND last=new.uid-1
		AND first=(SELECT max(first) FROM uidrun WHERE mailbox=new.mailbox AND first<new.uid);
END;
CREATE TRIGGER IF NOT EXISTS message_removed AFTER DELETE ON message BEGIN
	UPDATE mailbox SET n_messages=n_messages-1, n_size=n_size-old.size,
		n_unseen=n_unseen-(NOT instr(' '||lower(old.flags)||' ', ' \seen ')),
		n_deleted=n_deleted-(instr(' '||lower(old.flags)||' ', ' \deleted ')>0)
	WHERE id=old.mailbox;
	INSERT OR IGNORE INTO expunged(mailbox, modseq, uid) SELECT id, modseq, old.uid FROM mailbox WHERE id=old.mailbox;
	INSERT INTO uidrun(mailbox, first, last) SELECT mailbox, old.uid+1, last FROM uidrun WHERE mailbox=old.mailbox AND last>old.uid
		AND first=(SELECT max(first) FROM uidrun WHERE mailbox=old.mailbox AND first<=old.uid);
	UPDATE uidrun SET last=old.uid-1 WHERE mailbox=old.mailbox AND first<old.uid
		AND first=(SELECT max(first) FROM uidrun WHERE mailbox=old.mailbox AND first<=old.uid) AND last>=old.uid;
	DELETE FROM uidrun WHERE mailbox=old.mailbox AND first=old.uid;
END;
CREATE TRIGGER IF NOT EXISTS message_flagged AFTER UPDATE OF flags ON message BEGIN
	UPDATE mailbox SET
		n_unseen=n_unseen+(NOT instr(' '||lower(new.flags)||' ', ' \seen '))-(NOT instr(' '||lower(old.flags)||' ', ' \seen ')),
		n_deleted=n_deleted+(instr(' '||lower(new.flags)||' ', ' \deleted ')>0)-(instr(' '||lower(old.flags)||' ', ' \deleted ')>0)
	WHERE id=new.mailbox;
END;
`

// migrateChanges gives the folders their counters and keyword list, computed once from the
// messages of a store created before they existed, in the same transaction as the columns,
// then creates the expunge log, the indexes and the triggers that keep them.
func (s *SQLite) migrateChanges(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('mailbox') WHERE name='n_messages'`).Scan(&n); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	if n == 0 {
		for _, c := range []string{"n_messages INTEGER NOT NULL DEFAULT 0", "n_unseen INTEGER NOT NULL DEFAULT 0",
			"n_deleted INTEGER NOT NULL DEFAULT 0", "n_size INTEGER NOT NULL DEFAULT 0", "keywords TEXT NOT NULL DEFAULT ''"} {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE mailbox ADD COLUMN `+c); err != nil {
				return fmt.Errorf("mailbox: migrate: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE mailbox SET
			n_messages=(SELECT count(*) FROM message m WHERE m.mailbox=mailbox.id),
			n_unseen=(SELECT count(*) FROM message m WHERE m.mailbox=mailbox.id AND NOT instr(' '||lower(m.flags)||' ', ' \seen ')),
			n_deleted=(SELECT count(*) FROM message m WHERE m.mailbox=mailbox.id AND instr(' '||lower(m.flags)||' ', ' \deleted ')),
			n_size=(SELECT coalesce(sum(size),0) FROM message m WHERE m.mailbox=mailbox.id)`); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
		if err := backfillKeywords(ctx, tx); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, changesSchema); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	if n == 0 { // runs of consecutive UIDs: a UID minus its rank is constant along a run
		if _, err := tx.ExecContext(ctx, `INSERT INTO uidrun(mailbox, first, last)
			SELECT mailbox, min(uid), max(uid) FROM (SELECT mailbox, uid, uid - row_number() OVER (PARTITION BY mailbox ORDER BY uid) AS g FROM message)
			GROUP BY mailbox, g`); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	return nil
}

func backfillKeywords(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT mailbox, flags FROM message WHERE (' '||flags) GLOB '* [^\]*'`)
	if err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	kw := map[MailboxID][]string{}
	for rows.Next() {
		var id MailboxID
		var flags string
		if err := rows.Scan(&id, &flags); err != nil {
			rows.Close()
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
		kw[id], _ = unionKeywords(kw[id], splitFlags(flags))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	for id, k := range kw {
		if _, err := tx.ExecContext(ctx, `UPDATE mailbox SET keywords=? WHERE id=?`, joinFlags(k), id); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
	}
	return nil
}

// unionKeywords adds to known the keywords (flags without a backslash) of flags it lacks,
// comparing case-insensitively; it reports whether it added any.
func unionKeywords(known, flags []string) ([]string, bool) {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		found := false
		for _, k := range known {
			if strings.EqualFold(k, f) {
				found = true
				break
			}
		}
		if !found {
			known = append(known, f)
			added = true
		}
	}
	return known, added
}

// hasKeyword reports whether flags holds a keyword.
func hasKeyword(flags []string) bool {
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			return true
		}
	}
	return false
}

// addKeywords records in the folder's keyword list (the FLAGS of SELECT) those of flags it
// lacks: the list only grows, like the keywords a client was once told of.
func (s *SQLite) addKeywords(ctx context.Context, tx *sql.Tx, id MailboxID, flags []string) error {
	if !hasKeyword(flags) {
		return nil
	}
	var cur string
	if err := s.txQueryRow(ctx, tx, qKeywords, id).Scan(&cur); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	next, added := unionKeywords(splitFlags(cur), flags)
	if !added {
		return nil
	}
	if _, err := s.txExec(ctx, tx, qSetKeywords, joinFlags(next), id); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	return nil
}

// Changes is what changed in a folder after a modification sequence.
type Changes struct {
	// ModSeq is the folder's modification sequence the changes bring the caller up to.
	ModSeq uint64
	// Messages are the index entries of the messages added or whose flags changed, in UID
	// order.
	Messages []Message
	// Expunged are the UIDs removed, in no particular order.
	Expunged []uint32
	// ExpungedUnknown means the expunges since the modseq asked for are no longer all
	// logged (Options.ExpungeLog): Expunged is empty, and the caller learns which of the
	// UIDs it knows are gone by reading the folder's UIDs.
	ExpungedUnknown bool
}

// Changes implements Store.
func (s *SQLite) Changes(ctx context.Context, mbox MailboxID, sinceModSeq uint64) (*Changes, error) {
	var st [3]*sql.Stmt // prepared before the transaction holds a connection of the pool
	for i, q := range []string{qModSeq, messagesSince(sinceModSeq), qExpunged} {
		var err error
		if st[i], err = s.readStmt(ctx, q); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil) // one snapshot for the three reads
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer tx.Rollback()
	var c Changes
	err = tx.StmtContext(ctx, st[0]).QueryRowContext(ctx, mbox).Scan(&c.ModSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoMailbox
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	if c.ModSeq <= sinceModSeq {
		return &c, nil
	}
	if c.Messages, err = scanMessages(tx.StmtContext(ctx, st[1]).QueryContext(ctx, mbox, sinceModSeq)); err != nil {
		return nil, err
	}
	if sinceModSeq == 0 {
		return &c, nil // nothing expunged before the start
	}
	if keep := s.expungeLog(); c.ModSeq > keep && sinceModSeq < c.ModSeq-keep {
		// pruned up to at most the modseq of the last expunge minus keep (deleteTx)
		c.ExpungedUnknown = true
		return &c, nil
	}
	rows, err := tx.StmtContext(ctx, st[2]).QueryContext(ctx, mbox, sinceModSeq)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		c.Expunged = append(c.Expunged, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return &c, nil
}

// UIDs implements Store.
func (s *SQLite) UIDs(ctx context.Context, mbox MailboxID) ([]uint32, error) {
	runs, err := s.UIDRuns(ctx, mbox)
	if err != nil {
		return nil, err
	}
	return expandRuns(runs), nil
}

// UIDRuns implements Store: the triggers keep the runs (uidrun), so this reads one row per
// run.
func (s *SQLite) UIDRuns(ctx context.Context, mbox MailboxID) ([]UIDRun, error) {
	var id MailboxID
	if err := s.queryRow(ctx, `SELECT id FROM mailbox WHERE id=?`, mbox).Scan(&id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	rows, err := s.query(ctx, `SELECT first, last FROM uidrun WHERE mailbox=? ORDER BY first`, mbox)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []UIDRun
	for rows.Next() {
		var r UIDRun
		if err := rows.Scan(&r.First, &r.Last); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if r.First != 0 && r.First <= r.Last {
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// expandRuns lists the UIDs of runs.
func expandRuns(runs []UIDRun) []uint32 {
	n := 0
	for _, r := range runs {
		n += int(r.Last-r.First) + 1
	}
	out := make([]uint32, 0, n)
	for _, r := range runs {
		for u := r.First; ; u++ {
			out = append(out, u)
			if u == r.Last {
				break
			}
		}
	}
	return out
}

// lookupGap is the largest run of absent UIDs MessagesByUID reads through rather than
// starting another range query.
const lookupGap = 64

// spans sorts and deduplicates uids and groups them into ranges read with one query each:
// UIDs closer than lookupGap share a range.
func spans(uids []uint32) (want map[uint32]bool, out [][2]uint32) {
	want = make(map[uint32]bool, len(uids))
	sorted := make([]uint32, 0, len(uids))
	for _, u := range uids {
		if !want[u] {
			want[u] = true
			sorted = append(sorted, u)
		}
	}
	slices.Sort(sorted)
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1]-sorted[j] <= lookupGap {
			j++
		}
		out = append(out, [2]uint32{sorted[i], sorted[j]})
		i = j + 1
	}
	return want, out
}

// MessagesByUID implements Store.
func (s *SQLite) MessagesByUID(ctx context.Context, mbox MailboxID, uids []uint32) ([]Message, error) {
	want, ranges := spans(uids)
	var out []Message
	for _, r := range ranges {
		ms, err := scanMessages(s.query(ctx, `SELECT uid, size, internal, flags, modseq FROM message WHERE mailbox=? AND uid BETWEEN ? AND ? ORDER BY uid`, mbox, r[0], r[1]))
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if want[m.UID] {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// HeadersByUID implements Store.
func (s *SQLite) HeadersByUID(ctx context.Context, mbox MailboxID, uids []uint32) (map[uint32][]byte, error) {
	want, ranges := spans(uids)
	out := make(map[uint32][]byte, len(want))
	for _, r := range ranges {
		if err := s.scanHeaders(ctx, out, want, `SELECT uid, header FROM message WHERE mailbox=? AND uid BETWEEN ? AND ? AND header IS NOT NULL`, mbox, r[0], r[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanHeaders adds to out the (uid, header) rows of query that want holds (all when nil).
func (s *SQLite) scanHeaders(ctx context.Context, out map[uint32][]byte, want map[uint32]bool, query string, args ...any) error {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid uint32
		var h []byte
		if err := rows.Scan(&uid, &h); err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		if want == nil || want[uid] {
			out[uid] = h
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	return nil
}

// messagesSince is the query of the entries changed after a modseq (two parameters: the
// folder and the modseq): through the modseq index for a few changes, in primary key order
// for a whole folder (no sort).
func messagesSince(modSeq uint64) string {
	if modSeq == 0 {
		return `SELECT uid, size, internal, flags, modseq FROM message WHERE mailbox=? AND +modseq>? ORDER BY uid`
	}
	return `SELECT uid, size, internal, flags, modseq FROM message INDEXED BY message_modseq WHERE mailbox=? AND modseq>? ORDER BY uid`
}

func scanMessages(rows *sql.Rows, err error) ([]Message, error) {
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanMessage)
}

// pollWatched looks every WatchPoll for changes other processes made to the watched folders,
// one query for all of them, and wakes the watchers of those whose modseq rose.
func (s *SQLite) pollWatched() {
	defer close(s.done)
	every := s.opts.WatchPoll
	if every == 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		known := s.hub.known()
		if len(known) == 0 {
			continue
		}
		ids := make([]MailboxID, 0, len(known))
		for id := range known {
			ids = append(ids, id)
		}
		list, _ := json.Marshal(ids)
		ctx, cancel := context.WithTimeout(context.Background(), every)
		rows, err := s.db.QueryContext(ctx, `SELECT id, modseq FROM mailbox WHERE id IN (SELECT value FROM json_each(?))`, string(list))
		if err != nil {
			cancel()
			continue // closed meanwhile, or busy: try again at the next tick
		}
		for rows.Next() {
			var id MailboxID
			var m uint64
			if rows.Scan(&id, &m) == nil && m > known[id] {
				s.hub.changed(id, m)
			}
		}
		rows.Close()
		cancel()
	}
}
