package mailbox

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"
)

// Purge implements Store.
func (s *SQLite) Purge(ctx context.Context, now time.Time) (*PurgeResult, error) {
	var res PurgeResult
	var blobs []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		rows, err := tx.QueryContext(ctx, `SELECT b.address, x.id, m.uid FROM message m JOIN mailbox x ON m.mailbox=x.id JOIN bal b ON x.bal=b.address
			WHERE b.retention_s > 0 AND m.internal < (? - b.retention_s*1000) ORDER BY b.address, x.id, m.uid`, now.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		type key struct {
			bal string
			id  MailboxID
		}
		byBox := map[key][]uint32{}
		var order []key
		for rows.Next() {
			var k key
			var uid uint32
			rows.Scan(&k.bal, &k.id, &uid)
			if _, ok := byBox[k]; !ok {
				order = append(order, k)
			}
			byBox[k] = append(byBox[k], uid)
		}
		rows.Close()
		perBAL := map[string][2]int64{}
		var touched []MailboxID
		for _, k := range order {
			var before int64
			tx.QueryRowContext(ctx, `SELECT used FROM bal WHERE address=?`, k.bal).Scan(&before)
			b, err := s.deleteTx(ctx, tx, k.id, byBox[k])
			if err != nil {
				return nil, err
			}
			var after int64
			tx.QueryRowContext(ctx, `SELECT used FROM bal WHERE address=?`, k.bal).Scan(&after)
			blobs = append(blobs, b...)
			touched = append(touched, k.id)
			p := perBAL[k.bal]
			perBAL[k.bal] = [2]int64{p[0] + int64(len(b)), p[1] + before - after}
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
			if err := s.audit(tx, "retention-purge", b, fmt.Sprintf("messages=%d bytes=%d", p[0], p[1])); err != nil {
				return nil, err
			}
		}
		return touched, nil
	})
	if err != nil {
		return nil, err
	}
	s.removeBlobs(blobs)
	return &res, nil
}
