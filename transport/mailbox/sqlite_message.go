package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// bumpModSeq increments and returns the modseq of a folder, in the write transaction of the
// change it numbers; watchers learn it once the transaction commits.
func (s *SQLite) bumpModSeq(ctx context.Context, tx *sql.Tx, id MailboxID) (uint64, error) {
	var m uint64
	err := s.txQueryRow(ctx, tx, qBumpModSeq, id).Scan(&m)
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	if s.bumped != nil {
		s.bumped[id] = m
	}
	return m, nil
}

// checkQuota returns ErrOverQuota when adding size bytes would exceed the BAL's quota.
func (s *SQLite) checkQuota(ctx context.Context, tx *sql.Tx, bal string, size int64) error {
	var quota, used int64
	if err := s.txQueryRow(ctx, tx, qQuota, bal).Scan(&quota, &used); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	if quota > 0 && used+size > quota {
		return ErrOverQuota
	}
	_, err := s.txExec(ctx, tx, qUseQuota, size, bal)
	return err
}

// Append implements Store.
func (s *SQLite) Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *AppendOptions) (*AppendResult, error) {
	var o AppendOptions
	if opts != nil {
		o = *opts
	}
	max := o.MaxSize
	if max <= 0 {
		max = s.opts.MaxMessageSize
	}
	if max <= 0 {
		max = defaultMaxMessageSize
	}
	bal = normAddr(bal)
	// Cheap checks before writing the file.
	if _, err := s.mailboxID(ctx, s.db, bal, mailbox); err != nil {
		return nil, err
	}
	var hc headerCapture
	blob, size, err := s.writeBlob(r, max, &hc)
	if err != nil {
		return nil, err
	}
	date := o.Date
	if date.IsZero() {
		date = s.now()
	}
	flags := joinFlags(normFlags(o.Flags))
	var res AppendResult
	err = s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		id, err := s.mailboxID(ctx, tx, bal, mailbox)
		if err != nil {
			return nil, err
		}
		res.Mailbox = id
		if o.DeliveryID != "" {
			var uid uint32
			err := s.txQueryRow(ctx, tx, qDeliveryUID, id, o.DeliveryID).Scan(&uid)
			if err == nil {
				res.UID, res.Duplicate = uid, true
				tx.QueryRowContext(ctx, `SELECT uidvalidity FROM mailbox WHERE id=?`, id).Scan(&res.UIDValidity)
				return nil, nil
			}
		}
		if err := s.checkQuota(ctx, tx, bal, size); err != nil {
			return nil, err
		}
		var uid uint32
		if err := s.txQueryRow(ctx, tx, qNextUID, id).Scan(&uid, &res.UIDValidity); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		ms, err := s.bumpModSeq(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		var delivery any
		if o.DeliveryID != "" {
			delivery = o.DeliveryID
		}
		if _, err := s.txExec(ctx, tx, qInsertMessage,
			id, uid, blob, size, date.UnixMilli(), flags, ms, delivery, hc.header()); err != nil {
			return nil, fmt.Errorf("mailbox: append: %w", err)
		}
		if err := s.addKeywords(ctx, tx, id, splitFlags(flags)); err != nil {
			return nil, err
		}
		res.UID, res.Size = uid, size
		return []MailboxID{id}, nil
	})
	if err != nil || res.Duplicate {
		s.removeBlobs([]string{blob})
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// Messages implements Store.
func (s *SQLite) Messages(ctx context.Context, mbox MailboxID, sinceModSeq uint64) ([]Message, error) {
	return scanMessages(s.query(ctx, messagesSince(sinceModSeq), mbox, sinceModSeq))
}

// Headers implements Store.
func (s *SQLite) Headers(ctx context.Context, mbox MailboxID, afterUID uint32) (map[uint32][]byte, error) {
	out := make(map[uint32][]byte)
	if err := s.scanHeaders(ctx, out, nil, `SELECT uid, header FROM message WHERE mailbox=? AND uid>? AND header IS NOT NULL`, mbox, afterUID); err != nil {
		return nil, err
	}
	return out, nil
}

// Read implements Store.
func (s *SQLite) Read(ctx context.Context, mbox MailboxID, uids []uint32, fn func(uid uint32, r io.ReaderAt, size int64) error) error {
	if len(uids) == 0 {
		return nil
	}
	lo, hi := uids[0], uids[0]
	for _, u := range uids {
		lo, hi = min(lo, u), max(hi, u)
	}
	type ref struct {
		blob string
		size int64
	}
	refs := make(map[uint32]ref, len(uids))
	rows, err := s.query(ctx, `SELECT uid, blob, size FROM message WHERE mailbox=? AND uid BETWEEN ? AND ?`, mbox, lo, hi)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for rows.Next() {
		var u uint32
		var r ref
		if err := rows.Scan(&u, &r.blob, &r.size); err != nil {
			rows.Close()
			return fmt.Errorf("mailbox: %w", err)
		}
		refs[u] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for _, u := range uids {
		r, ok := refs[u]
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(s.blobPath(r.blob))
		if errors.Is(err, fs.ErrNotExist) {
			continue // expunged since the lookup
		}
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		err = fn(u, f, r.size)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Open implements Store.
func (s *SQLite) Open(ctx context.Context, mbox MailboxID, uid uint32) (io.ReadSeekCloser, int64, error) {
	var blob string
	var size int64
	err := s.queryRow(ctx, `SELECT blob, size FROM message WHERE mailbox=? AND uid=?`, mbox, uid).Scan(&blob, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, ErrNoMessage
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox: %w", err)
	}
	f, err := os.Open(s.blobPath(blob))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNoMessage // expunged between the lookup and the open
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox: %w", err)
	}
	return f, size, nil
}

// StoreFlags implements Store.
func (s *SQLite) StoreFlags(ctx context.Context, mbox MailboxID, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	flags = normFlags(flags)
	var out []Message
	err := s.writeFlags(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		ms, err := s.bumpModSeq(ctx, tx, mbox)
		if err != nil {
			return nil, err
		}
		sel, err := s.txStmt(ctx, tx, qFlagsOf)
		if err != nil {
			return nil, err
		}
		defer sel.Close()
		upd, err := s.txStmt(ctx, tx, qSetFlags)
		if err != nil {
			return nil, err
		}
		defer upd.Close()
		changed := false
		for _, uid := range uids {
			var m Message
			var internal int64
			var cur string
			if err := sel.QueryRowContext(ctx, mbox, uid).Scan(&m.Size, &internal, &cur); err != nil {
				continue // expunged meanwhile
			}
			m.UID, m.InternalDate = uid, time.UnixMilli(internal)
			next := applyFlags(splitFlags(cur), op, flags)
			nj := joinFlags(next)
			m.Flags = next
			if nj != cur {
				if _, err := upd.ExecContext(ctx, nj, ms, mbox, uid); err != nil {
					return nil, fmt.Errorf("mailbox: %w", err)
				}
				m.ModSeq = ms
				changed = true
				if err := s.addKeywords(ctx, tx, mbox, next); err != nil {
					return nil, err
				}
			}
			out = append(out, m)
		}
		if !changed {
			return nil, errNoChange
		}
		return []MailboxID{mbox}, nil
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	return out, err
}

// errNoChange rolls back a transaction that changed nothing (keeps modseq still).
var errNoChange = errors.New("mailbox: no change")

// copyTx copies uids from mbox into dest, hard-linking message files; it returns the new
// blob names so a failed commit can remove them.
func (s *SQLite) copyTx(ctx context.Context, tx *sql.Tx, mbox MailboxID, uids []uint32, dest string, res *CopyResult, newBlobs *[]string) (MailboxID, error) {
	var bal string
	if err := tx.QueryRowContext(ctx, `SELECT bal FROM mailbox WHERE id=?`, mbox).Scan(&bal); err != nil {
		return 0, ErrNoMailbox
	}
	did, err := s.mailboxID(ctx, tx, bal, dest)
	if err != nil {
		return 0, err
	}
	ms, err := s.bumpModSeq(ctx, tx, did)
	if err != nil {
		return 0, err
	}
	sel, err := tx.PrepareContext(ctx, `SELECT blob, size, internal, flags, header FROM message WHERE mailbox=? AND uid=?`)
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	defer sel.Close()
	var total int64
	for _, uid := range uids {
		var blob, flags string
		var size, internal int64
		var header []byte
		if err := sel.QueryRowContext(ctx, mbox, uid).Scan(&blob, &size, &internal, &flags, &header); err != nil {
			continue
		}
		nb := newBlobName()
		if err := os.MkdirAll(filepath.Dir(s.blobPath(nb)), 0o700); err != nil {
			return 0, fmt.Errorf("mailbox: %w", err)
		}
		if err := os.Link(s.blobPath(blob), s.blobPath(nb)); err != nil {
			return 0, fmt.Errorf("mailbox: copy: %w", err)
		}
		*newBlobs = append(*newBlobs, nb)
		var nuid uint32
		if err := s.txQueryRow(ctx, tx, qNextUID, did).Scan(&nuid, &res.UIDValidity); err != nil {
			return 0, fmt.Errorf("mailbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq,header) VALUES (?,?,?,?,?,?,?,?)`,
			did, nuid, nb, size, internal, flags, ms, header); err != nil {
			return 0, fmt.Errorf("mailbox: copy: %w", err)
		}
		if err := s.addKeywords(ctx, tx, did, splitFlags(flags)); err != nil {
			return 0, err
		}
		res.SourceUIDs = append(res.SourceUIDs, uid)
		res.DestUIDs = append(res.DestUIDs, nuid)
		total += size
	}
	if err := s.checkQuota(ctx, tx, bal, total); err != nil {
		return 0, err
	}
	// the links must be durable before the rows that reference them
	dirs := map[string]bool{}
	for _, nb := range *newBlobs {
		dirs[filepath.Dir(s.blobPath(nb))] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return 0, err
		}
	}
	return did, nil
}

// Copy implements Store.
func (s *SQLite) Copy(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	var blobs []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		did, err := s.copyTx(ctx, tx, mbox, uids, dest, &res, &blobs)
		return []MailboxID{did}, err
	})
	if err != nil {
		s.removeBlobs(blobs)
		return nil, err
	}
	return &res, nil
}

// Move implements Store.
func (s *SQLite) Move(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	var blobs, old []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		did, err := s.copyTx(ctx, tx, mbox, uids, dest, &res, &blobs)
		if err != nil {
			return nil, err
		}
		old, err = s.deleteTx(ctx, tx, mbox, res.SourceUIDs)
		return []MailboxID{did, mbox}, err
	})
	if err != nil {
		s.removeBlobs(blobs)
		return nil, err
	}
	s.removeBlobs(old)
	return &res, nil
}

// deleteTx removes the listed messages, releases their quota and returns their blob names.
func (s *SQLite) deleteTx(ctx context.Context, tx *sql.Tx, mbox MailboxID, uids []uint32) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	ms, err := s.bumpModSeq(ctx, tx, mbox)
	if err != nil {
		return nil, err
	}
	if keep := s.expungeLog(); ms > keep {
		// Older entries only serve sessions that far behind, which Changes sends to re-read
		// the UIDs instead: the log stays the size of the last keep modseqs' expunges.
		if _, err := s.txExec(ctx, tx, qPruneExpunged, mbox, ms-keep); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM message WHERE mailbox=? AND uid=? RETURNING blob, size`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer del.Close()
	var blobs []string
	var total int64
	for _, uid := range uids {
		var b string
		var n int64
		if err := del.QueryRowContext(ctx, mbox, uid).Scan(&b, &n); err != nil {
			continue
		}
		blobs = append(blobs, b)
		total += n
	}
	if _, err := tx.ExecContext(ctx, `UPDATE bal SET used=used-? WHERE address=(SELECT bal FROM mailbox WHERE id=?)`, total, mbox); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return blobs, nil
}

// Expunge implements Store.
func (s *SQLite) Expunge(ctx context.Context, mbox MailboxID, uids []uint32) ([]uint32, error) {
	var want map[uint32]bool
	if uids != nil {
		want = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
	}
	var removed []uint32
	var blobs []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		rows, err := tx.QueryContext(ctx, `SELECT uid FROM message INDEXED BY message_deleted WHERE mailbox=? AND instr(' '||lower(flags)||' ', ' \deleted ') ORDER BY uid`, mbox)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		for rows.Next() {
			var u uint32
			rows.Scan(&u)
			if want == nil || want[u] {
				removed = append(removed, u)
			}
		}
		rows.Close()
		if len(removed) == 0 {
			return nil, errNoChange
		}
		blobs, err = s.deleteTx(ctx, tx, mbox, removed)
		return []MailboxID{mbox}, err
	})
	if errors.Is(err, errNoChange) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.removeBlobs(blobs)
	return removed, nil
}
