package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
)

// ErrTargetNotEmpty is returned by CopyToPostgres when the target store already holds a BAL:
// a copy never merges two registries.
var ErrTargetNotEmpty = errors.New("mailbox: the target store is not empty")

// CopyOptions configure CopyToPostgres.
type CopyOptions struct {
	// Progress, when set, is called after each BAL with the counts copied so far.
	Progress func(CopyCounts)
}

// CopyCounts are the rows of each kind a copy wrote (or, Verified, found in the target).
type CopyCounts struct {
	BALs, Members, Listings, Publications, Folders, Messages, Audit int64
	Bytes                                                           int64 // message bodies
}

// CopyToPostgres copies the whole SQLite store src into dst, which must hold no BAL
// (ErrTargetNotEmpty): the BALs with their password hashes, certificate DNs, members,
// listings and publication journal; the folders with their UIDVALIDITY, UIDNEXT,
// modification sequences, subscriptions and keywords; the messages with their UIDs, flags,
// internal dates and bodies; the audit rows. Mail clients keep their caches: a folder's
// (UIDVALIDITY, UID) pairs name the same messages on both stores.
//
// It runs in one PostgreSQL transaction, so a copy that fails leaves dst empty and can be
// run again, and reads src in one read transaction (a consistent view; stop the node that
// writes it first). Bodies are read one at a time. It returns the counts written after
// checking them against counts read back from dst.
func CopyToPostgres(ctx context.Context, src *SQLite, dst *Postgres, opts *CopyOptions) (*CopyCounts, error) {
	var o CopyOptions
	if opts != nil {
		o = *opts
	}
	if dst.isClosed() {
		return nil, ErrClosed
	}
	rtx, err := src.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("mailbox: copy: %w", err)
	}
	defer rtx.Rollback()
	tx, err := dst.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("mailbox: copy: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM mailbox_bal`).Scan(&n); err != nil {
		return nil, fmt.Errorf("mailbox: copy: %w", err)
	}
	if n > 0 {
		return nil, fmt.Errorf("%w (%d BALs)", ErrTargetNotEmpty, n)
	}
	c := &copier{src: src, rtx: rtx, tx: tx}
	if err := c.run(ctx, o.Progress); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("mailbox: copy: commit: %w", err)
	}
	got, err := countPostgres(ctx, dst)
	if err != nil {
		return nil, err
	}
	if *got != c.n {
		return &c.n, fmt.Errorf("mailbox: copy: the target holds %+v after the copy, %+v were written", *got, c.n)
	}
	return &c.n, nil
}

type copier struct {
	src *SQLite
	rtx *sql.Tx
	tx  pgx.Tx
	n   CopyCounts
}

func (c *copier) fail(what string, err error) error {
	return fmt.Errorf("mailbox: copy: %s: %w", what, err)
}

func (c *copier) run(ctx context.Context, progress func(CopyCounts)) error {
	if err := c.counters(ctx); err != nil {
		return err
	}
	rows, err := c.rtx.QueryContext(ctx, `SELECT address, type, owner, description, cert_dn, cert_dn_key, quota,
		retention_s, pwhash, created, used FROM bal ORDER BY address`)
	if err != nil {
		return c.fail("BALs", err)
	}
	var bals [][]any
	for rows.Next() {
		var addr, typ, owner, desc, dn, dnKey, pw string
		var quota, ret, created, used int64
		if err := rows.Scan(&addr, &typ, &owner, &desc, &dn, &dnKey, &quota, &ret, &pw, &created, &used); err != nil {
			rows.Close()
			return c.fail("BALs", err)
		}
		bals = append(bals, []any{addr, typ, owner, desc, dn, dnKey, quota, ret, pw, created, used})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c.fail("BALs", err)
	}
	for _, b := range bals {
		if _, err := c.tx.Exec(ctx, `INSERT INTO mailbox_bal (address, type, owner, description, cert_dn, cert_dn_key,
			quota, retention_s, pwhash, created, used) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`, b...); err != nil {
			return c.fail("BAL", err)
		}
		c.n.BALs++
		if err := c.folders(ctx, b[0].(string)); err != nil {
			return err
		}
		if progress != nil {
			progress(c.n)
		}
	}
	return c.registry(ctx)
}

// counters keeps the UIDVALIDITY counter, so that a folder created after the copy never
// reuses a value of the source.
func (c *copier) counters(ctx context.Context) error {
	rows, err := c.rtx.QueryContext(ctx, `SELECT name, value FROM counter`)
	if err != nil {
		return c.fail("counters", err)
	}
	defer rows.Close()
	var kv [][2]any
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return c.fail("counters", err)
		}
		kv = append(kv, [2]any{name, v})
	}
	if err := rows.Err(); err != nil {
		return c.fail("counters", err)
	}
	rows.Close()
	for _, p := range kv {
		if _, err := c.tx.Exec(ctx, `INSERT INTO mailbox_counter (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET value = greatest(mailbox_counter.value, excluded.value)`, p[0], p[1]); err != nil {
			return c.fail("counters", err)
		}
	}
	return nil
}

// folders copies the folders of bal and their messages.
func (c *copier) folders(ctx context.Context, bal string) error {
	rows, err := c.rtx.QueryContext(ctx, `SELECT id, name, uidvalidity, uidnext, modseq, subscribed, recent_uid, keywords
		FROM mailbox WHERE bal=? ORDER BY id`, bal)
	if err != nil {
		return c.fail("folders", err)
	}
	type folder struct {
		id                                   int64
		name, keywords                       string
		uidvalidity, uidnext, modseq, recent int64
		subscribed                           bool
	}
	var fs []folder
	for rows.Next() {
		var f folder
		if err := rows.Scan(&f.id, &f.name, &f.uidvalidity, &f.uidnext, &f.modseq, &f.subscribed, &f.recent, &f.keywords); err != nil {
			rows.Close()
			return c.fail("folders", err)
		}
		fs = append(fs, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return c.fail("folders", err)
	}
	for _, f := range fs {
		var id int64
		if err := c.tx.QueryRow(ctx, `INSERT INTO mailbox_folder (bal, name, uidvalidity, uidnext, modseq, subscribed, recent_uid, keywords)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING id`, bal, f.name, f.uidvalidity, f.uidnext, f.modseq, f.subscribed, f.recent, f.keywords).Scan(&id); err != nil {
			return c.fail("folder", err)
		}
		c.n.Folders++
		if err := c.messages(ctx, f.id, id); err != nil {
			return err
		}
	}
	return nil
}

// messages copies the messages of the SQLite folder from into the PostgreSQL folder to,
// with COPY, one body in memory at a time.
func (c *copier) messages(ctx context.Context, from, to int64) error {
	rows, err := c.rtx.QueryContext(ctx, `SELECT uid, blob, size, internal, flags, modseq, delivery, header
		FROM message WHERE mailbox=? ORDER BY uid`, from)
	if err != nil {
		return c.fail("messages", err)
	}
	defer rows.Close()
	var rowErr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		var uid, size, internal, modseq int64
		var blob, flags string
		var delivery sql.NullString
		var header []byte
		if err := rows.Scan(&uid, &blob, &size, &internal, &flags, &modseq, &delivery, &header); err != nil {
			return nil, err
		}
		body, err := os.ReadFile(c.src.blobPath(blob))
		if err != nil {
			rowErr = err
			return nil, err
		}
		if int64(len(body)) != size {
			rowErr = fmt.Errorf("the file of UID %d has %d bytes, its index row says %d", uid, len(body), size)
			return nil, rowErr
		}
		c.n.Messages++
		c.n.Bytes += size
		var d any
		if delivery.Valid {
			d = delivery.String
		}
		return []any{to, uid, size, internal, flags, modseq, d, header, body}, nil
	})
	if _, err := c.tx.CopyFrom(ctx, pgx.Identifier{"mailbox_message"},
		[]string{"mailbox", "uid", "size", "internal", "flags", "modseq", "delivery", "header", "body"}, src); err != nil {
		if rowErr != nil {
			err = rowErr
		}
		return c.fail("messages", err)
	}
	return nil
}

// registry copies the members, listings, publication journal and audit rows.
func (c *copier) registry(ctx context.Context) error {
	for _, t := range []struct {
		what, query, table string
		cols               []string
		n                  *int64
		scan               func(*sql.Rows) ([]any, error)
	}{
		{"members", `SELECT bal, national_id, added FROM bal_member`, "mailbox_bal_member",
			[]string{"bal", "national_id", "added"}, &c.n.Members, func(r *sql.Rows) ([]any, error) {
				var bal, id string
				var added int64
				err := r.Scan(&bal, &id, &added)
				return []any{bal, id, added}, err
			}},
		{"listings", `SELECT address, structure, liste_rouge, suspended FROM bal_listing`, "mailbox_bal_listing",
			[]string{"address", "structure", "liste_rouge", "suspended"}, &c.n.Listings, func(r *sql.Rows) ([]any, error) {
				var addr, structure string
				var rouge, suspended bool
				err := r.Scan(&addr, &structure, &rouge, &suspended)
				return []any{addr, structure, rouge, suspended}, err
			}},
		{"publications", `SELECT ts, address, action, type, owner, structure, description, liste_rouge, done FROM publication ORDER BY id`,
			"mailbox_publication", []string{"ts", "address", "action", "type", "owner", "structure", "description", "liste_rouge", "done"},
			&c.n.Publications, func(r *sql.Rows) ([]any, error) {
				var ts, done int64
				var addr, action, typ, owner, structure, desc string
				var rouge bool
				err := r.Scan(&ts, &addr, &action, &typ, &owner, &structure, &desc, &rouge, &done)
				return []any{ts, addr, action, typ, owner, structure, desc, rouge, done}, err
			}},
		{"audit", `SELECT ts, event, bal, detail FROM audit ORDER BY rowid`, "mailbox_audit",
			[]string{"ts", "event", "bal", "detail"}, &c.n.Audit, func(r *sql.Rows) ([]any, error) {
				var ts int64
				var event, bal, detail string
				err := r.Scan(&ts, &event, &bal, &detail)
				return []any{ts, event, bal, detail}, err
			}},
	} {
		rows, err := c.rtx.QueryContext(ctx, t.query)
		if err != nil {
			return c.fail(t.what, err)
		}
		_, err = c.tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, pgx.CopyFromFunc(func() ([]any, error) {
			if !rows.Next() {
				return nil, rows.Err()
			}
			*t.n++
			return t.scan(rows)
		}))
		rows.Close()
		if err != nil {
			return c.fail(t.what, err)
		}
	}
	return nil
}

// countPostgres counts what a copy writes, as it stands in s.
func countPostgres(ctx context.Context, s *Postgres) (*CopyCounts, error) {
	var n CopyCounts
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailbox_bal), (SELECT count(*) FROM mailbox_bal_member),
		(SELECT count(*) FROM mailbox_bal_listing), (SELECT count(*) FROM mailbox_publication),
		(SELECT count(*) FROM mailbox_folder), (SELECT count(*) FROM mailbox_message),
		(SELECT count(*) FROM mailbox_audit), (SELECT coalesce(sum(size), 0) FROM mailbox_message)`).Scan(
		&n.BALs, &n.Members, &n.Listings, &n.Publications, &n.Folders, &n.Messages, &n.Audit, &n.Bytes)
	if err != nil {
		return nil, fmt.Errorf("mailbox: copy: verification: %w", err)
	}
	return &n, nil
}
