package mailbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// AddMember makes nationalID a member of the ORG BAL bal (see SQLite.AddMember).
func (s *Postgres) AddMember(ctx context.Context, bal, nationalID string) error {
	if err := ValidNationalID(nationalID); err != nil {
		return err
	}
	addr := pgAddr(bal)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		var typ string
		err := tx.QueryRow(ctx, `SELECT type FROM mailbox_bal WHERE address = $1 FOR SHARE`, addr).Scan(&typ)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoBAL
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if Type(typ) != ORG {
			return nil, fmt.Errorf("%w: %s is a %s BAL; members are for ORG BALs", ErrInvalid, addr, typ)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO mailbox_bal_member (bal, national_id, added) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			addr, nationalID, s.now().Unix())
		if err != nil {
			return nil, fmt.Errorf("mailbox: add member: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, nil
		}
		return nil, s.audit(ctx, tx, "member-add", addr, "member="+nationalID)
	})
}

// RemoveMember ends the membership of nationalID in bal.
func (s *Postgres) RemoveMember(ctx context.Context, bal, nationalID string) error {
	addr := pgAddr(bal)
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM mailbox_bal_member WHERE bal = $1 AND national_id = $2`, addr, nationalID)
		if err != nil {
			return nil, fmt.Errorf("mailbox: remove member: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailbox_bal WHERE address = $1)`, addr).Scan(&exists)
			if !exists {
				return nil, ErrNoBAL
			}
			return nil, ErrNotMember
		}
		return nil, s.audit(ctx, tx, "member-remove", addr, "member="+nationalID)
	})
}

// Members lists the members of bal, by national id.
func (s *Postgres) Members(ctx context.Context, bal string) ([]Member, error) {
	addr := pgAddr(bal)
	if _, err := s.GetBAL(ctx, addr); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT national_id, added FROM mailbox_bal_member WHERE bal = $1 ORDER BY national_id`, addr)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanMember)
}

// BALsHeldBy returns the BALs the person nationalID may open with a token (see
// SQLite.BALsHeldBy). It implements psc.Holdings.
func (s *Postgres) BALsHeldBy(ctx context.Context, nationalID string) ([]string, error) {
	if ValidNationalID(nationalID) != nil {
		return nil, nil
	}
	bare := nationalID
	if nationalID[0] == '8' || nationalID[0] == '0' {
		bare = nationalID[1:]
	}
	rows, err := s.pool.Query(ctx, `SELECT address FROM mailbox_bal WHERE type = 'PER' AND owner IN ($1, $2)
		UNION SELECT m.bal FROM mailbox_bal_member m JOIN mailbox_bal b ON b.address = m.bal WHERE m.national_id = $1 AND b.type = 'ORG'
		ORDER BY 1`, nationalID, bare)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}
