package mailbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

func (s *SQLite) audit(tx *sql.Tx, event, bal, detail string) error {
	_, err := tx.Exec(`INSERT INTO audit(ts, event, bal, detail) VALUES (?,?,?,?)`, s.now().UnixMilli(), event, bal, detail)
	if err != nil {
		return fmt.Errorf("mailbox: audit: %w", err)
	}
	s.logger().Info("mailbox: "+event, "bal", bal, "detail", detail)
	return nil
}

// Audit implements Store.
func (s *SQLite) Audit(ctx context.Context, since time.Time) ([]AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ts, event, bal, detail FROM audit WHERE ts >= ? ORDER BY rowid`, since.UnixMilli())
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
	return out, rows.Err()
}
