package mailbox

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/whitelist"
)

func normAddr(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// AddBAL implements Store.
func (s *SQLite) AddBAL(ctx context.Context, b *BAL) error {
	if err := b.Validate(); err != nil {
		return err
	}
	addr := normAddr(b.Address)
	t, _ := ParseType(string(b.Type))
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		var n int
		tx.QueryRowContext(ctx, `SELECT count(*) FROM bal WHERE address=?`, addr).Scan(&n)
		if n > 0 {
			return nil, fmt.Errorf("%w: %s", ErrBALExists, addr)
		}
		var key string
		if b.CertDN != "" {
			key, _ = whitelist.CanonicalDN(b.CertDN) // checked by Validate
			tx.QueryRowContext(ctx, `SELECT count(*) FROM bal WHERE cert_dn_key=?`, key).Scan(&n)
			if n > 0 {
				return nil, ErrCertDNInUse
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO bal(address,type,owner,description,cert_dn,cert_dn_key,quota,retention_s,created) VALUES (?,?,?,?,?,?,?,?,?)`,
			addr, string(t), b.Owner, b.Description, b.CertDN, key, b.QuotaBytes, int64(b.Retention/time.Second), s.now().Unix())
		if err != nil {
			return nil, fmt.Errorf("mailbox: add BAL: %w", err)
		}
		if err := s.createMailboxTx(ctx, tx, addr, Inbox); err != nil {
			return nil, err
		}
		return nil, s.audit(tx, "bal-add", addr, "type="+string(t))
	})
}

// balCols sums the message counters of the BAL's folders: a look-up costs the number of
// folders, not of messages.
const balCols = `b.address,b.type,b.owner,b.description,b.cert_dn,b.quota,b.retention_s,b.created,b.used,
	(SELECT coalesce(sum(x.n_messages),0) FROM mailbox x WHERE x.bal=b.address),
	coalesce((SELECT l.suspended FROM bal_listing l WHERE l.address=b.address),0)`

func scanBAL(row interface{ Scan(...any) error }) (*BAL, error) {
	var b BAL
	var typ string
	var ret, created int64
	if err := row.Scan(&b.Address, &typ, &b.Owner, &b.Description, &b.CertDN, &b.QuotaBytes, &ret, &created, &b.UsedBytes, &b.Messages, &b.Suspended); err != nil {
		return nil, err
	}
	b.Type = Type(typ)
	b.Retention = time.Duration(ret) * time.Second
	b.Created = time.Unix(created, 0).UTC()
	return &b, nil
}

// GetBAL implements Store.
func (s *SQLite) GetBAL(ctx context.Context, address string) (*BAL, error) {
	b, err := scanBAL(s.queryRow(ctx, `SELECT `+balCols+` FROM bal b WHERE b.address=?`, normAddr(address)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoBAL
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return b, nil
}

// BALByCertDN implements Store.
func (s *SQLite) BALByCertDN(ctx context.Context, dn string) (*BAL, error) {
	key, err := whitelist.CanonicalDN(dn)
	if dn == "" || err != nil {
		return nil, ErrNoBAL
	}
	b, err := scanBAL(s.db.QueryRowContext(ctx, `SELECT `+balCols+` FROM bal b WHERE b.cert_dn_key=? AND b.type='APP'`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoBAL
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return b, nil
}

// ListBALs implements Store.
func (s *SQLite) ListBALs(ctx context.Context) ([]*BAL, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+balCols+` FROM bal b ORDER BY b.address`)
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
	return out, rows.Err()
}

// RemoveBAL implements Store.
func (s *SQLite) RemoveBAL(ctx context.Context, address string) error {
	addr := normAddr(address)
	var blobs []string
	var ids []MailboxID
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		var n int
		tx.QueryRowContext(ctx, `SELECT count(*) FROM bal WHERE address=?`, addr).Scan(&n)
		if n == 0 {
			return nil, ErrNoBAL
		}
		rows, err := tx.QueryContext(ctx, `SELECT m.blob, m.mailbox FROM message m JOIN mailbox x ON m.mailbox=x.id WHERE x.bal=?`, addr)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		seen := map[MailboxID]bool{}
		for rows.Next() {
			var b string
			var id MailboxID
			rows.Scan(&b, &id)
			blobs = append(blobs, b)
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		rows.Close()
		if _, err := tx.ExecContext(ctx, `DELETE FROM message WHERE mailbox IN (SELECT id FROM mailbox WHERE bal=?)`, addr); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox WHERE bal=?`, addr); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM bal WHERE address=?`, addr); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		return ids, s.audit(tx, "bal-remove", addr, fmt.Sprintf("messages=%d", len(blobs)))
	})
	if err == nil {
		s.removeBlobs(blobs)
	}
	return err
}

const pbkdf2Iter = 100_000

// SetPassword implements Store. The password is kept as a salted PBKDF2-SHA256 hash.
func (s *SQLite) SetPassword(ctx context.Context, address, password string) error {
	h, err := hashPassword(password)
	if err != nil {
		return err
	}
	addr := normAddr(address)
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		res, err := tx.ExecContext(ctx, `UPDATE bal SET pwhash=? WHERE address=?`, h, addr)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, ErrNoBAL
		}
		return nil, s.audit(tx, "bal-password", addr, map[bool]string{true: "cleared", false: "set"}[password == ""])
	})
}

// CheckPassword implements Store.
//
// Every check costs one key derivation, whether the address has a BAL with a password or not:
// an address without a hash (no BAL, no password, an unreadable hash) is checked against
// dummyHash, and the result thrown away. Otherwise a wrong password for an existing BAL took
// about 100 times as long as one for an unknown address, and the answer time, over IMAP and
// submission alike, told which addresses have a BAL. The keys compare in constant time.
func (s *SQLite) CheckPassword(ctx context.Context, address, password string) error {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT pwhash FROM bal WHERE address=?`, normAddr(address)).Scan(&h)
	return checkPasswordHash(h, err == nil, password)
}

// dummySalt and dummyKey are the hash unknown addresses are checked against (see
// CheckPassword): same salt and key sizes and iteration count as SetPassword's, so that the
// derivation costs the same (PBKDF2, RFC 8018 §5.2). No password is accepted against it.
var (
	dummySalt [16]byte
	dummyKey  [32]byte
)

// parsePasswordHash splits a hash of SetPassword ("pbkdf2-sha256$iter$salt$key").
func parsePasswordHash(h string) (iter int, salt, key []byte, ok bool) {
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return 0, nil, nil, false
	}
	iter, err := strconv.Atoi(parts[1])
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err != nil || err1 != nil || err2 != nil || iter <= 0 || len(key) == 0 {
		return 0, nil, nil, false
	}
	return iter, salt, key, true
}
