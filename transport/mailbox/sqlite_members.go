package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNotMember is returned by RemoveMember for a national id that is not a member of the BAL.
var ErrNotMember = errors.New("mailbox: not a member of this BAL")

// Member is a person who opens an ORG BAL with their own Pro Santé Connect token.
type Member struct {
	// NationalID is the person's national id (8 + RPPS, 0 + ADELI).
	NationalID string
	// Added is when they were made a member.
	Added time.Time
}

const membersSchema = `
CREATE TABLE IF NOT EXISTS bal_member (
	bal TEXT NOT NULL REFERENCES bal(address) ON DELETE CASCADE,
	national_id TEXT NOT NULL,
	added INTEGER NOT NULL,
	PRIMARY KEY (bal, national_id)
);
CREATE INDEX IF NOT EXISTS bal_member_id ON bal_member(national_id);`

// migrateMembers creates the members table in a store created before it existed.
func (s *SQLite) migrateMembers(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, membersSchema); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	return nil
}

// ValidNationalID checks the form of a national id: 8 + RPPS (11 digits) or 0 + ADELI
// (9 digits), or another identifier of 2 to 32 letters and digits.
func ValidNationalID(id string) error {
	if len(id) < 2 || len(id) > 32 {
		return fmt.Errorf("%w: national id %q: want 2 to 32 letters and digits", ErrInvalid, id)
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Errorf("%w: national id %q: want letters and digits only", ErrInvalid, id)
		}
	}
	return nil
}

// AddMember makes the person nationalID a member of the ORG BAL bal: they may then open it with
// their own token. Adding a member twice is not an error.
func (s *SQLite) AddMember(ctx context.Context, bal, nationalID string) error {
	if err := ValidNationalID(nationalID); err != nil {
		return err
	}
	addr := normAddr(bal)
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		var typ string
		err := tx.QueryRowContext(ctx, `SELECT type FROM bal WHERE address=?`, addr).Scan(&typ)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoBAL
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if Type(typ) != ORG {
			return nil, fmt.Errorf("%w: %s is a %s BAL; members are for ORG BALs", ErrInvalid, addr, typ)
		}
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO bal_member(bal, national_id, added) VALUES (?,?,?)`,
			addr, nationalID, s.now().Unix())
		if err != nil {
			return nil, fmt.Errorf("mailbox: add member: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil, nil
		}
		return nil, s.audit(tx, "member-add", addr, "member="+nationalID)
	})
}

// RemoveMember ends the membership of nationalID in bal.
func (s *SQLite) RemoveMember(ctx context.Context, bal, nationalID string) error {
	addr := normAddr(bal)
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM bal_member WHERE bal=? AND national_id=?`, addr, nationalID)
		if err != nil {
			return nil, fmt.Errorf("mailbox: remove member: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var c int
			tx.QueryRowContext(ctx, `SELECT count(*) FROM bal WHERE address=?`, addr).Scan(&c)
			if c == 0 {
				return nil, ErrNoBAL
			}
			return nil, ErrNotMember
		}
		return nil, s.audit(tx, "member-remove", addr, "member="+nationalID)
	})
}

// Members lists the members of bal, by national id.
func (s *SQLite) Members(ctx context.Context, bal string) ([]Member, error) {
	addr := normAddr(bal)
	if _, err := s.GetBAL(ctx, addr); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT national_id, added FROM bal_member WHERE bal=? ORDER BY national_id`, addr)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanMember)
}

// BALsHeldBy returns the BALs the person nationalID may open with a token: the PER BALs whose
// owner they are (the owner written as the national id, or as the RPPS or ADELI number
// without its 8 or 0 prefix) and the ORG BALs they are a member of. It implements
// psc.Holdings.
func (s *SQLite) BALsHeldBy(ctx context.Context, nationalID string) ([]string, error) {
	if ValidNationalID(nationalID) != nil {
		return nil, nil
	}
	bare := nationalID
	if nationalID[0] == '8' || nationalID[0] == '0' {
		bare = nationalID[1:]
	}
	rows, err := s.db.QueryContext(ctx, `SELECT address FROM bal WHERE type='PER' AND owner IN (?,?)
		UNION SELECT m.bal FROM bal_member m JOIN bal b ON b.address=m.bal WHERE m.national_id=? AND b.type='ORG'
		ORDER BY 1`, nationalID, bare, nationalID)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
