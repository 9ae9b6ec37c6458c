package mailbox

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// createMailboxTx creates a folder; UIDVALIDITY is the time in seconds, always above every
// value given before by any node (a counter row, locked by the update), so that a re-created
// folder never reuses (UIDVALIDITY, UID) pairs.
func (s *Postgres) createMailboxTx(ctx context.Context, tx *pgTx, bal, name string) error {
	var v int64
	err := tx.QueryRow(ctx, `INSERT INTO mailbox_counter (name, value) VALUES ('uidvalidity', $1)
		ON CONFLICT (name) DO UPDATE SET value = greatest(mailbox_counter.value + 1, excluded.value)
		RETURNING value`, s.now().Unix()).Scan(&v)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	// only INBOX starts subscribed; CREATE does not subscribe (RFC 3501 §6.3.3)
	tag, err := tx.Exec(ctx, `INSERT INTO mailbox_folder (bal, name, uidvalidity, subscribed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (bal, name) DO NOTHING`, bal, name, int64(uint32(v)), name == Inbox)
	if err != nil {
		return fmt.Errorf("mailbox: create: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrMailboxExists
	}
	return nil
}

// CreateMailbox implements Store. Missing parent folders are created too.
func (s *Postgres) CreateMailbox(ctx context.Context, bal, name string) error {
	name, err := canonName(name)
	if err != nil {
		return err
	}
	bal = pgAddr(bal)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		// lock the BAL's row: a folder is not created under a BAL being removed
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM mailbox_bal WHERE address = $1 FOR SHARE`, bal).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, ErrNoBAL
			}
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		parts := strings.Split(name, string(Delim))
		for i := 1; i < len(parts); i++ {
			if err := s.createMailboxTx(ctx, tx, bal, strings.Join(parts[:i], string(Delim))); err != nil && !errors.Is(err, ErrMailboxExists) {
				return nil, err
			}
		}
		return nil, s.createMailboxTx(ctx, tx, bal, name)
	})
}

type pgQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Postgres) mailboxID(ctx context.Context, q pgQuerier, bal, name string) (MailboxID, error) {
	name, err := canonName(name)
	if err != nil {
		return 0, err
	}
	var id MailboxID
	err = q.QueryRow(ctx, `SELECT id FROM mailbox_folder WHERE bal = $1 AND name = $2`, pgAddr(bal), name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNoMailbox
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	return id, nil
}

// DeleteMailbox implements Store. INBOX cannot be deleted.
func (s *Postgres) DeleteMailbox(ctx context.Context, bal, name string) error {
	cn, err := canonName(name)
	if err != nil {
		return err
	}
	if cn == Inbox {
		return ErrMailboxReserved
	}
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		var id MailboxID
		var size int64
		err := tx.QueryRow(ctx, `DELETE FROM mailbox_folder WHERE bal = $1 AND name = $2 RETURNING id, n_size`, pgAddr(bal), cn).Scan(&id, &size)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE mailbox_bal SET used = used - $1 WHERE address = $2`, size, pgAddr(bal)); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		return []MailboxID{id}, nil
	})
}

// RenameMailbox implements Store. Children move with their parent; renaming INBOX is refused.
func (s *Postgres) RenameMailbox(ctx context.Context, bal, oldName, newName string) error {
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
	bal = pgAddr(bal)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		if _, err := s.mailboxID(ctx, tx, bal, on); err != nil {
			return nil, err
		}
		if _, err := s.mailboxID(ctx, tx, bal, nn); err == nil {
			return nil, ErrMailboxExists
		}
		_, err := tx.Exec(ctx, `UPDATE mailbox_folder SET name = $3 || substr(name, length($2) + 1)
			WHERE bal = $1 AND (name = $2 OR left(name, length($2) + 1) = $2 || '/')`, bal, on, nn)
		if err != nil {
			var pe interface{ SQLState() string }
			if errors.As(err, &pe) && pe.SQLState() == "23505" {
				return nil, ErrMailboxExists
			}
			return nil, fmt.Errorf("mailbox: rename: %w", err)
		}
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
func (s *Postgres) SetSubscribed(ctx context.Context, bal, name string, subscribed bool) error {
	cn, err := canonName(name)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		tag, err := tx.Exec(ctx, `UPDATE mailbox_folder SET subscribed = $3 WHERE bal = $1 AND name = $2`, pgAddr(bal), cn, subscribed)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, ErrNoMailbox
		}
		return nil, nil
	})
}

// pgMailboxCols reads the counters the trigger keeps, the messages above recent_uid
// (\Recent) and the first unseen message through its partial index.
const pgMailboxCols = `x.id, x.bal, x.name, x.uidvalidity, x.uidnext, x.modseq, x.subscribed, x.recent_uid,
	(SELECT count(*) FROM mailbox_message r WHERE r.mailbox = x.id AND r.uid > x.recent_uid),
	x.n_messages, x.n_unseen, x.n_deleted, x.n_size, x.keywords,
	coalesce((SELECT min(m.uid) FROM mailbox_message m WHERE m.mailbox = x.id AND NOT m.seen), 0)`

// ListMailboxes implements Store.
func (s *Postgres) ListMailboxes(ctx context.Context, bal string) ([]MailboxInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pgMailboxCols+` FROM mailbox_folder x WHERE x.bal = $1 ORDER BY x.name COLLATE "C"`, pgAddr(bal))
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// Mailbox implements Store.
func (s *Postgres) Mailbox(ctx context.Context, bal, name string) (*MailboxInfo, error) {
	cn, err := canonName(name)
	if err != nil {
		return nil, err
	}
	m, err := scanMailbox(s.pool.QueryRow(ctx, `SELECT `+pgMailboxCols+` FROM mailbox_folder x WHERE x.bal = $1 AND x.name = $2`, pgAddr(bal), cn))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoMailbox
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return m, nil
}

// ModSeq implements Store.
func (s *Postgres) ModSeq(ctx context.Context, mbox MailboxID) (uint64, error) {
	var m uint64
	err := s.pool.QueryRow(ctx, `SELECT modseq FROM mailbox_folder WHERE id = $1`, mbox).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNoMailbox
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	return m, nil
}

// ClaimRecent implements Store.
func (s *Postgres) ClaimRecent(ctx context.Context, mbox MailboxID) (from, to uint32, err error) {
	err = s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		err := tx.QueryRow(ctx, `SELECT recent_uid, uidnext - 1 FROM mailbox_folder WHERE id = $1 FOR UPDATE`, mbox).Scan(&from, &to)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if from >= to {
			return nil, errNoChange
		}
		if _, err := tx.Exec(ctx, `UPDATE mailbox_folder SET recent_uid = $2 WHERE id = $1`, mbox, to); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		return nil, nil
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	return from, to, err
}
