package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// canonName validates a folder name and spells INBOX in upper case.
func canonName(name string) (string, error) {
	name = strings.TrimSuffix(name, string(Delim))
	if name == "" || len(name) > 255 || !utf8.ValidString(name) || strings.ContainsAny(name, "\r\n\x00*%") || strings.Contains(name, "//") || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return "", fmt.Errorf("%w: mailbox name", ErrInvalid)
	}
	if strings.EqualFold(name, Inbox) {
		return Inbox, nil
	}
	if len(name) > len(Inbox) && strings.EqualFold(name[:len(Inbox)+1], Inbox+"/") {
		name = Inbox + name[len(Inbox):]
	}
	return name, nil
}

func (s *SQLite) createMailboxTx(ctx context.Context, tx *sql.Tx, bal, name string) error {
	var n int
	tx.QueryRowContext(ctx, `SELECT count(*) FROM mailbox WHERE bal=? AND name=?`, bal, name).Scan(&n)
	if n > 0 {
		return ErrMailboxExists
	}
	// UIDVALIDITY: seconds since the epoch, and always above every value given before (kept
	// in a counter), so a re-created folder never reuses (UIDVALIDITY, UID) pairs.
	var last sql.NullInt64
	tx.QueryRowContext(ctx, `SELECT value FROM counter WHERE name='uidvalidity'`).Scan(&last)
	v := s.now().Unix()
	if last.Valid && last.Int64 >= v {
		v = last.Int64 + 1
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO counter(name,value) VALUES ('uidvalidity',?) ON CONFLICT(name) DO UPDATE SET value=excluded.value`, v); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	// only INBOX starts subscribed; CREATE does not subscribe (RFC 3501 §6.3.3)
	_, err := tx.ExecContext(ctx, `INSERT INTO mailbox(bal,name,uidvalidity,subscribed) VALUES (?,?,?,?)`, bal, name, uint32(v), name == Inbox)
	if err != nil {
		return fmt.Errorf("mailbox: create: %w", err)
	}
	return nil
}

func (s *SQLite) balExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, bal string) bool {
	var n int
	q.QueryRowContext(ctx, `SELECT count(*) FROM bal WHERE address=?`, bal).Scan(&n)
	return n > 0
}

// CreateMailbox implements Store. Missing parent folders are created too.
func (s *SQLite) CreateMailbox(ctx context.Context, bal, name string) error {
	name, err := canonName(name)
	if err != nil {
		return err
	}
	bal = normAddr(bal)
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		if !s.balExists(ctx, tx, bal) {
			return nil, ErrNoBAL
		}
		parts := strings.Split(name, string(Delim))
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], string(Delim))
			if err := s.createMailboxTx(ctx, tx, bal, parent); err != nil && !errors.Is(err, ErrMailboxExists) {
				return nil, err
			}
		}
		return nil, s.createMailboxTx(ctx, tx, bal, name)
	})
}

func (s *SQLite) mailboxID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, bal, name string) (MailboxID, error) {
	name, err := canonName(name)
	if err != nil {
		return 0, err
	}
	var id MailboxID
	err = q.QueryRowContext(ctx, `SELECT id FROM mailbox WHERE bal=? AND name=?`, normAddr(bal), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoMailbox
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	return id, nil
}

// DeleteMailbox implements Store. INBOX cannot be deleted.
func (s *SQLite) DeleteMailbox(ctx context.Context, bal, name string) error {
	cn, err := canonName(name)
	if err != nil {
		return err
	}
	if cn == Inbox {
		return ErrMailboxReserved
	}
	var blobs []string
	err = s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		id, err := s.mailboxID(ctx, tx, bal, cn)
		if err != nil {
			return nil, err
		}
		var size int64
		rows, err := tx.QueryContext(ctx, `SELECT blob, size FROM message WHERE mailbox=?`, id)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		for rows.Next() {
			var b string
			var n int64
			rows.Scan(&b, &n)
			blobs = append(blobs, b)
			size += n
		}
		rows.Close()
		tx.ExecContext(ctx, `DELETE FROM message WHERE mailbox=?`, id)
		tx.ExecContext(ctx, `DELETE FROM mailbox WHERE id=?`, id)
		if _, err := tx.ExecContext(ctx, `UPDATE bal SET used=used-? WHERE address=?`, size, normAddr(bal)); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		return []MailboxID{id}, nil
	})
	if err == nil {
		s.removeBlobs(blobs)
	}
	return err
}

// RenameMailbox implements Store. Children move with their parent; renaming INBOX is refused.
func (s *SQLite) RenameMailbox(ctx context.Context, bal, oldName, newName string) error {
	on, err := canonName(oldName)
	if err != nil {
		return err
	}
	nn, err := canonName(newName)
	if err != nil {
		return err
	}
	if on == Inbox || nn == Inbox {
		return ErrMailboxReserved
	}
	bal = normAddr(bal)
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		if _, err := s.mailboxID(ctx, tx, bal, on); err != nil {
			return nil, err
		}
		if _, err := s.mailboxID(ctx, tx, bal, nn); err == nil {
			return nil, ErrMailboxExists
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, name FROM mailbox WHERE bal=? AND (name=? OR substr(name,1,?)=?)`, bal, on, len(on)+1, on+"/")
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		type ren struct {
			id   MailboxID
			name string
		}
		var rs []ren
		for rows.Next() {
			var r ren
			rows.Scan(&r.id, &r.name)
			rs = append(rs, r)
		}
		rows.Close()
		for _, r := range rs {
			if _, err := tx.ExecContext(ctx, `UPDATE mailbox SET name=? WHERE id=?`, nn+r.name[len(on):], r.id); err != nil {
				return nil, fmt.Errorf("mailbox: rename: %w", err)
			}
		}
		// create missing parents of the new name
		parts := strings.Split(nn, string(Delim))
		for i := 1; i < len(parts); i++ {
			if err := s.createMailboxTx(ctx, tx, bal, strings.Join(parts[:i], string(Delim))); err != nil && !errors.Is(err, ErrMailboxExists) {
				return nil, err
			}
		}
		return nil, nil
	})
}

// SetSubscribed implements Store.
func (s *SQLite) SetSubscribed(ctx context.Context, bal, name string, subscribed bool) error {
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		id, err := s.mailboxID(ctx, tx, bal, name)
		if err != nil {
			return nil, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE mailbox SET subscribed=? WHERE id=?`, subscribed, id)
		return nil, err
	})
}

// mailboxCols reads the counters the triggers keep (sqlite_changes.go), the UID runs above
// recent_uid (\Recent) and the first unseen message through its partial index.
const mailboxCols = `x.id, x.bal, x.name, x.uidvalidity, x.uidnext, x.modseq, x.subscribed, x.recent_uid,
	(SELECT coalesce(sum(r.last - max(r.first, x.recent_uid+1) + 1), 0) FROM uidrun r WHERE r.mailbox=x.id AND r.last > x.recent_uid),
	x.n_messages, x.n_unseen, x.n_deleted, x.n_size, x.keywords,
	coalesce((SELECT min(m.uid) FROM message AS m INDEXED BY message_unseen WHERE m.mailbox=x.id AND NOT instr(' '||lower(m.flags)||' ', ' \seen ')), 0)`

func scanMailbox(row interface{ Scan(...any) error }) (*MailboxInfo, error) {
	var m MailboxInfo
	var kw string
	if err := row.Scan(&m.ID, &m.BAL, &m.Name, &m.UIDValidity, &m.UIDNext, &m.ModSeq, &m.Subscribed, &m.RecentUID, &m.Recent, &m.Messages, &m.Unseen, &m.Deleted, &m.Size, &kw, &m.FirstUnseen); err != nil {
		return nil, err
	}
	m.Keywords = splitFlags(kw)
	return &m, nil
}

// ListMailboxes implements Store.
func (s *SQLite) ListMailboxes(ctx context.Context, bal string) ([]MailboxInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailbox x WHERE x.bal=? ORDER BY x.name`, normAddr(bal))
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []MailboxInfo
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

// Mailbox implements Store.
func (s *SQLite) Mailbox(ctx context.Context, bal, name string) (*MailboxInfo, error) {
	cn, err := canonName(name)
	if err != nil {
		return nil, err
	}
	m, err := scanMailbox(s.queryRow(ctx, `SELECT `+mailboxCols+` FROM mailbox x WHERE x.bal=? AND x.name=?`, normAddr(bal), cn))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoMailbox
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return m, nil
}

// ModSeq implements Store.
func (s *SQLite) ModSeq(ctx context.Context, mbox MailboxID) (uint64, error) {
	var m uint64
	err := s.queryRow(ctx, qModSeq, mbox).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoMailbox
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	return m, nil
}

// ClaimRecent implements Store.
func (s *SQLite) ClaimRecent(ctx context.Context, mbox MailboxID) (from, to uint32, err error) {
	// Most SELECTs find nothing new to claim: that is a read, not a write transaction.
	err = s.queryRow(ctx, qRecent, mbox).Scan(&from, &to)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNoMailbox
	}
	if err != nil {
		return 0, 0, fmt.Errorf("mailbox: %w", err)
	}
	if from >= to {
		return from, to, nil
	}
	err = s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		err := tx.QueryRowContext(ctx, qRecent, mbox).Scan(&from, &to)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if from >= to {
			return nil, errNoChange
		}
		_, err = tx.ExecContext(ctx, `UPDATE mailbox SET recent_uid=? WHERE id=?`, to, mbox)
		return nil, err
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	return from, to, err
}
