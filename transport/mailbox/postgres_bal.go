package mailbox

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/whitelist"
)

// AddBAL implements Store.
func (s *Postgres) AddBAL(ctx context.Context, b *BAL) error {
	if err := b.Validate(); err != nil {
		return err
	}
	addr := pgAddr(b.Address)
	t, _ := ParseType(string(b.Type))
	var key string
	if b.CertDN != "" {
		key, _ = whitelist.CanonicalDN(b.CertDN) // checked by Validate
	}
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		// the primary key and the unique DN index decide between nodes adding at once
		tag, err := tx.Exec(ctx, `INSERT INTO mailbox_bal (address, type, owner, description, cert_dn, cert_dn_key, quota, retention_s, created)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
			WHERE NOT EXISTS (SELECT 1 FROM mailbox_bal WHERE address = $1)
			ON CONFLICT DO NOTHING`,
			addr, string(t), b.Owner, b.Description, b.CertDN, key, b.QuotaBytes, int64(b.Retention/time.Second), s.now().Unix())
		if err != nil {
			return nil, fmt.Errorf("mailbox: add BAL: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailbox_bal WHERE address = $1)`, addr).Scan(&exists)
			if exists {
				return nil, fmt.Errorf("%w: %s", ErrBALExists, addr)
			}
			return nil, ErrCertDNInUse
		}
		if err := s.createMailboxTx(ctx, tx, addr, Inbox); err != nil {
			return nil, err
		}
		return nil, s.audit(ctx, tx, "bal-add", addr, "type="+string(t))
	})
}

// pgBALCols sums the message counters of the BAL's folders.
const pgBALCols = `b.address, b.type, b.owner, b.description, b.cert_dn, b.quota, b.retention_s, b.created, b.used,
	(SELECT coalesce(sum(x.n_messages), 0) FROM mailbox_folder x WHERE x.bal = b.address),
	coalesce((SELECT l.suspended FROM mailbox_bal_listing l WHERE l.address = b.address), false)`

func (s *Postgres) oneBAL(ctx context.Context, where string, arg any) (*BAL, error) {
	b, err := scanBAL(s.pool.QueryRow(ctx, `SELECT `+pgBALCols+` FROM mailbox_bal b WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoBAL
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return b, nil
}

// GetBAL implements Store.
func (s *Postgres) GetBAL(ctx context.Context, address string) (*BAL, error) {
	return s.oneBAL(ctx, `b.address = $1`, pgAddr(address))
}

// BALByCertDN implements Store.
func (s *Postgres) BALByCertDN(ctx context.Context, dn string) (*BAL, error) {
	key, err := whitelist.CanonicalDN(dn)
	if dn == "" || err != nil || pgAddr(key) == "" {
		return nil, ErrNoBAL
	}
	return s.oneBAL(ctx, `b.cert_dn_key = $1 AND b.type = 'APP'`, key)
}

// ListBALs implements Store.
func (s *Postgres) ListBALs(ctx context.Context) ([]*BAL, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pgBALCols+` FROM mailbox_bal b ORDER BY b.address`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []*BAL
	for rows.Next() {
		b, err := scanBAL(rows)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// RemoveBAL implements Store.
func (s *Postgres) RemoveBAL(ctx context.Context, address string) error {
	addr := pgAddr(address)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		var n int64
		var ids []MailboxID
		err := tx.QueryRow(ctx, `SELECT coalesce(sum(n_messages), 0), coalesce(array_agg(id), '{}') FROM mailbox_folder WHERE bal = $1`, addr).Scan(&n, &ids)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		// the folders, messages and expunge logs go with the BAL (ON DELETE CASCADE)
		tag, err := tx.Exec(ctx, `DELETE FROM mailbox_bal WHERE address = $1`, addr)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, ErrNoBAL
		}
		return ids, s.audit(ctx, tx, "bal-remove", addr, fmt.Sprintf("messages=%d", n))
	})
}

// SetPassword implements Store. The password is kept as a salted PBKDF2-SHA256 hash.
func (s *Postgres) SetPassword(ctx context.Context, address, password string) error {
	h, err := hashPassword(password)
	if err != nil {
		return err
	}
	addr := pgAddr(address)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		tag, err := tx.Exec(ctx, `UPDATE mailbox_bal SET pwhash = $1 WHERE address = $2`, h, addr)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, ErrNoBAL
		}
		return nil, s.audit(ctx, tx, "bal-password", addr, map[bool]string{true: "cleared", false: "set"}[password == ""])
	})
}

// CheckPassword implements Store, at the same cost whether the address has a BAL or not
// (see SQLite.CheckPassword).
func (s *Postgres) CheckPassword(ctx context.Context, address, password string) error {
	var h string
	err := s.pool.QueryRow(ctx, `SELECT pwhash FROM mailbox_bal WHERE address = $1`, pgAddr(address)).Scan(&h)
	return checkPasswordHash(h, err == nil, password)
}

func (s *Postgres) audit(ctx context.Context, tx *pgTx, event, bal, detail string) error {
	_, err := tx.Exec(ctx, `INSERT INTO mailbox_audit (ts, event, bal, detail) VALUES ($1, $2, $3, $4)`, s.now().UnixMilli(), event, bal, detail)
	if err != nil {
		return fmt.Errorf("mailbox: audit: %w", err)
	}
	s.logger().Info("mailbox: "+event, "bal", bal, "detail", detail)
	return nil
}

// Audit implements Store.
func (s *Postgres) Audit(ctx context.Context, since time.Time) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT ts, event, bal, detail FROM mailbox_audit WHERE ts >= $1 ORDER BY id`, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var ts int64
		if err := rows.Scan(&ts, &e.Event, &e.BAL, &e.Detail); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		e.Time = time.UnixMilli(ts).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// purgeLock is the advisory lock key of the retention purge: every node runs PurgeEvery, one
// at a time purges (the others find the lock taken and purge nothing this round).
const purgeLock = int64(0x6d737361_6e746570) // "mssantep"

// Purge implements Store. When another node is purging, it returns an empty result. With a
// blob store it then removes the bodies no message names (sweepBlobs).
func (s *Postgres) Purge(ctx context.Context, now time.Time) (*PurgeResult, error) {
	var res PurgeResult
	err := s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		res = PurgeResult{}
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, purgeLock).Scan(&mine); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if !mine {
			return nil, nil
		}
		rows, err := tx.Query(ctx, `SELECT b.address, x.id, array_agg(m.uid ORDER BY m.uid)
			FROM mailbox_message m JOIN mailbox_folder x ON m.mailbox = x.id JOIN mailbox_bal b ON x.bal = b.address
			WHERE b.retention_s > 0 AND m.internal < $1 - b.retention_s * 1000
			GROUP BY b.address, x.id ORDER BY x.id`, now.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		type box struct {
			bal  string
			id   MailboxID
			uids []int64
		}
		var boxes []box
		for rows.Next() {
			var b box
			if err := rows.Scan(&b.bal, &b.id, &b.uids); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mailbox: %w", err)
			}
			boxes = append(boxes, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		perBAL := map[string][2]int64{}
		var touched []MailboxID
		for _, b := range boxes {
			n, size, err := s.deleteTx(ctx, tx, b.id, b.uids)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				continue
			}
			touched = append(touched, b.id)
			p := perBAL[b.bal]
			perBAL[b.bal] = [2]int64{p[0] + n, p[1] + size}
		}
		bals := make([]string, 0, len(perBAL))
		for b := range perBAL {
			bals = append(bals, b)
		}
		sort.Strings(bals)
		for _, b := range bals {
			p := perBAL[b]
			res.Messages += int(p[0])
			res.Bytes += p[1]
			if err := s.audit(ctx, tx, "retention-purge", b, fmt.Sprintf("messages=%d bytes=%d", p[0], p[1])); err != nil {
				return nil, err
			}
		}
		return touched, nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := s.sweepBlobs(ctx, now); err != nil {
		return nil, err
	}
	return &res, nil
}
