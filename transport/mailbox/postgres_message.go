package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"

	"github.com/jackc/pgx/v5"
)

// readBody reads a message to its end, refusing one above max bytes, and captures its header.
func readBody(r io.Reader, max int64) ([]byte, []byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, nil, fmt.Errorf("mailbox: read message: %w", err)
	}
	if n > max {
		return nil, nil, ErrTooBig
	}
	var hc headerCapture
	hc.Write(buf.Bytes())
	return buf.Bytes(), hc.header(), nil
}

// reserve adds size bytes to the BAL's use, or returns ErrOverQuota, in one statement that
// nodes delivering at once cannot both pass.
func reserve(ctx context.Context, tx *pgTx, bal string, size int64) error {
	tag, err := tx.Exec(ctx, `UPDATE mailbox_bal SET used = used + $2 WHERE address = $1 AND (quota = 0 OR used + $2 <= quota)`, bal, size)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrOverQuota
	}
	return nil
}

// addKeywordsPg records the keywords of flags in the folder's keyword list (see addKeywords).
func addKeywordsPg(ctx context.Context, tx *pgTx, id MailboxID, flags []string) error {
	if !hasKeyword(flags) {
		return nil
	}
	var cur string
	if err := tx.QueryRow(ctx, `SELECT keywords FROM mailbox_folder WHERE id = $1`, id).Scan(&cur); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	next, added := unionKeywords(splitFlags(cur), flags)
	if !added {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE mailbox_folder SET keywords = $2 WHERE id = $1`, id, joinFlags(next)); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	return nil
}

// Append implements Store. The folder's row is locked first, so that a retried delivery is
// recognised even when two nodes deliver it at once.
func (s *Postgres) Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *AppendOptions) (*AppendResult, error) {
	var o AppendOptions
	if opts != nil {
		o = *opts
	}
	bal = pgAddr(bal)
	folder, err := s.mailboxID(ctx, s.pool, bal, mailbox)
	if err != nil {
		return nil, err
	}
	cname, err := canonName(mailbox)
	if err != nil {
		return nil, err
	}
	body, header, err := readBody(r, s.maxSize(o.MaxSize))
	if err != nil {
		return nil, err
	}
	date := o.Date
	if date.IsZero() {
		date = s.now()
	}
	flags := joinFlags(normFlags(o.Flags))
	var delivery *string
	if o.DeliveryID != "" {
		delivery = &o.DeliveryID
	}
	size, stored, name := int64(len(body)), body, (*string)(nil)
	if s.blobs != nil {
		// The body is durable before the row naming it commits; if the commit fails, the
		// sweep removes the file.
		n := newBlobName()
		if err := s.blobs.put(ctx, n, body); err != nil {
			return nil, err
		}
		stored, name = []byte{}, &n
	}
	// Deliveries to one folder take turns on its row until their commit: the others of this
	// node wait here, without a connection of the pool, which stays free for the lookups and
	// reads of the SMTP and IMAP sessions.
	release, err := s.appends.enter(ctx, folder)
	if err != nil {
		return nil, err
	}
	defer release()
	var res AppendResult
	err = s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		res = AppendResult{}
		// One statement locks the folder's row and takes the UID and the modseq; a second one checks the delivery ID, reserves the quota and inserts.
		// A retried delivery found there rolls the first back.
		var id MailboxID
		var ms uint64
		err := tx.QueryRow(ctx, `WITH u AS (UPDATE mailbox_folder SET uidnext = uidnext + 1, modseq = modseq + 1
				WHERE bal = $1 AND name = $2 RETURNING id, uidvalidity, uidnext - 1 AS uid, modseq)
			SELECT u.id, u.uidvalidity, u.uid, u.modseq FROM u`,
			bal, cname).Scan(&id, &res.UIDValidity, &res.UID, &ms)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		tx.bumped[id] = ms
		res.Mailbox = id
		var dup *uint32
		var reserved bool
		err = tx.QueryRow(ctx, `WITH d AS (SELECT uid FROM mailbox_message WHERE mailbox = $1 AND delivery = $7 LIMIT 1),
			q AS (UPDATE mailbox_bal SET used = used + $3 WHERE address = $11 AND (quota = 0 OR used + $3 <= quota)
				AND NOT EXISTS (SELECT 1 FROM d) RETURNING 1),
			i AS (INSERT INTO mailbox_message (mailbox, uid, size, internal, flags, modseq, delivery, header, body, blob)
				SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM q))
			SELECT (SELECT uid FROM d), EXISTS (SELECT 1 FROM q)`,
			id, res.UID, size, date.UnixMilli(), flags, ms, delivery, header, stored, name, bal).Scan(&dup, &reserved)
		switch {
		case err != nil:
			return nil, fmt.Errorf("mailbox: append: %w", err)
		case dup != nil:
			res.UID, res.Duplicate = *dup, true
			return nil, errNoChange
		case !reserved:
			return nil, ErrOverQuota
		}
		if err := addKeywordsPg(ctx, tx, id, splitFlags(flags)); err != nil {
			return nil, err
		}
		res.Size = size
		return []MailboxID{id}, nil
	})
	if errors.Is(err, errNoChange) && res.Duplicate {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

const pgMessageCols = `uid, size, internal, flags, modseq`

func scanPgMessages(rows pgx.Rows, err error) ([]Message, error) {
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanMessage)
}

// Messages implements Store.
func (s *Postgres) Messages(ctx context.Context, mbox MailboxID, sinceModSeq uint64) ([]Message, error) {
	return scanPgMessages(s.pool.Query(ctx, `SELECT `+pgMessageCols+` FROM mailbox_message WHERE mailbox = $1 AND modseq > $2 ORDER BY uid`, mbox, sinceModSeq))
}

// uidList sorts and deduplicates uids for an "= ANY" parameter.
func uidList(uids []uint32) []int64 {
	out := make([]int64, 0, len(uids))
	for _, u := range uids {
		out = append(out, int64(u))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// MessagesByUID implements Store.
func (s *Postgres) MessagesByUID(ctx context.Context, mbox MailboxID, uids []uint32) ([]Message, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	return scanPgMessages(s.pool.Query(ctx, `SELECT `+pgMessageCols+` FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2) ORDER BY uid`, mbox, uidList(uids)))
}

func (s *Postgres) headers(ctx context.Context, query string, args ...any) (map[uint32][]byte, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	out := make(map[uint32][]byte)
	for rows.Next() {
		var uid uint32
		var h []byte
		if err := rows.Scan(&uid, &h); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out[uid] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// HeadersByUID implements Store.
func (s *Postgres) HeadersByUID(ctx context.Context, mbox MailboxID, uids []uint32) (map[uint32][]byte, error) {
	if len(uids) == 0 {
		return map[uint32][]byte{}, nil
	}
	return s.headers(ctx, `SELECT uid, header FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2) AND header IS NOT NULL`, mbox, uidList(uids))
}

// Headers implements Store.
func (s *Postgres) Headers(ctx context.Context, mbox MailboxID, afterUID uint32) (map[uint32][]byte, error) {
	return s.headers(ctx, `SELECT uid, header FROM mailbox_message WHERE mailbox = $1 AND uid > $2 AND header IS NOT NULL`, mbox, afterUID)
}

// readBatch bounds the bodies Read fetches with one query.
const readBatch = 8 << 20

// Read implements Store: the sizes and blob names first, then the bodies kept in the database
// in batches of up to readBatch bytes, so that a FETCH of many messages costs few round trips
// and bounded memory (two batches at most): the next batch is fetched while fn reads the
// current one.
func (s *Postgres) Read(ctx context.Context, mbox MailboxID, uids []uint32, fn func(uid uint32, r io.ReaderAt, size int64) error) error {
	if len(uids) == 0 {
		return nil
	}
	type where struct {
		size int64
		blob *string
	}
	at := map[uint32]where{}
	rows, err := s.pool.Query(ctx, `SELECT uid, size, blob FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2)`, mbox, uidList(uids))
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for rows.Next() {
		var u uint32
		var w where
		if err := rows.Scan(&u, &w.size, &w.blob); err != nil {
			rows.Close()
			return fmt.Errorf("mailbox: %w", err)
		}
		at[u] = w
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	// The spans of uids whose bodies one query fetches; the first is small, so that fn starts
	// early.
	type span struct {
		i, j  int
		batch []int64
	}
	var spans []span
	for i := 0; i < len(uids); {
		limit := int64(readBatch)
		if len(spans) == 0 {
			limit = readBatch / 8
		}
		var batch []int64
		var total int64
		j := i
		for ; j < len(uids) && (len(batch) == 0 || total+at[uids[j]].size <= limit); j++ {
			if w, ok := at[uids[j]]; ok && w.blob == nil {
				batch = append(batch, int64(uids[j]))
				total += w.size
			}
		}
		spans = append(spans, span{i, j, batch})
		i = j
	}
	// The next span's bodies are fetched while fn reads the current one's: the database
	// sends bodies while this process parses them.
	type fetched struct {
		bodies map[uint32][]byte
		err    error
	}
	fctx, cancel := context.WithCancel(ctx)
	var pending chan fetched
	defer func() {
		cancel()
		if pending != nil {
			<-pending
		}
	}()
	fetch := func(batch []int64) chan fetched {
		ch := make(chan fetched, 1)
		go func() {
			b, err := s.fetchBodies(fctx, mbox, batch)
			ch <- fetched{b, err}
		}()
		return ch
	}
	pending = fetch(spans[0].batch)
	for k, sp := range spans {
		f := <-pending
		pending = nil
		if f.err != nil {
			return f.err
		}
		if k+1 < len(spans) {
			pending = fetch(spans[k+1].batch)
		}
		for _, u := range uids[sp.i:sp.j] {
			w, ok := at[u]
			if !ok {
				continue // expunged meanwhile
			}
			if w.blob != nil {
				if err := s.readBlob(ctx, u, *w.blob, fn); err != nil {
					return err
				}
				continue
			}
			b, ok := f.bodies[u]
			if !ok {
				continue // expunged meanwhile
			}
			if err := fn(u, bytes.NewReader(b), int64(len(b))); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetchBodies returns the bodies of the listed messages of mbox kept in the database.
func (s *Postgres) fetchBodies(ctx context.Context, mbox MailboxID, batch []int64) (map[uint32][]byte, error) {
	bodies := map[uint32][]byte{}
	if len(batch) == 0 {
		return bodies, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT uid, body FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2)`, mbox, batch)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u uint32
		var b []byte
		if err := rows.Scan(&u, &b); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		bodies[u] = b
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return bodies, nil
}

// readBlob calls fn with a body kept in the blob store. A missing body is skipped, as an
// expunged message is: the sweep removes only bodies no row named an hour before.
func (s *Postgres) readBlob(ctx context.Context, uid uint32, name string, fn func(uid uint32, r io.ReaderAt, size int64) error) error {
	if s.blobs == nil {
		return fmt.Errorf("mailbox: message %d is in a blob store and Options.Blobs names none", uid)
	}
	b, err := s.blobs.open(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer b.Close()
	n, err := b.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("mailbox: blobs: %w", err)
	}
	return fn(uid, b, n)
}

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

// Open implements Store.
func (s *Postgres) Open(ctx context.Context, mbox MailboxID, uid uint32) (io.ReadSeekCloser, int64, error) {
	var b []byte
	var name *string
	err := s.pool.QueryRow(ctx, `SELECT body, blob FROM mailbox_message WHERE mailbox = $1 AND uid = $2`, mbox, uid).Scan(&b, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, ErrNoMessage
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox: %w", err)
	}
	if name != nil {
		if s.blobs == nil {
			return nil, 0, fmt.Errorf("mailbox: message %d is in a blob store and Options.Blobs names none", uid)
		}
		f, err := s.blobs.open(ctx, *name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, ErrNoMessage
		}
		if err != nil {
			return nil, 0, err
		}
		n, err := f.Seek(0, io.SeekEnd)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("mailbox: blobs: %w", err)
		}
		return f, n, nil
	}
	return bodyReader{bytes.NewReader(b)}, int64(len(b)), nil
}

// StoreFlags implements Store. With FlagSyncNormal the transaction commits without waiting
// for its log to reach the disk (synchronous_commit off): a crash of PostgreSQL may undo the
// last flag changes, never a message, and the database stays consistent.
func (s *Postgres) StoreFlags(ctx context.Context, mbox MailboxID, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	flags = normFlags(flags)
	var out []Message
	err := s.writeWith(ctx, s.opts.FlagSync == FlagSyncNormal, func(tx *pgTx) ([]MailboxID, error) {
		out = nil
		ms, err := tx.bumpModSeq(ctx, mbox)
		if err != nil {
			return nil, err
		}
		cur, err := scanPgMessages(tx.Query(ctx, `SELECT `+pgMessageCols+` FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2) ORDER BY uid FOR UPDATE`, mbox, uidList(uids)))
		if err != nil {
			return nil, err
		}
		byUID := make(map[uint32]Message, len(cur))
		for _, m := range cur {
			byUID[m.UID] = m
		}
		// one UPDATE for all the changed messages: the counters' trigger runs once
		var changedUIDs []int64
		var changedFlags []string
		var kw []string
		for _, uid := range uids {
			m, ok := byUID[uid]
			if !ok {
				continue // expunged meanwhile
			}
			old := joinFlags(m.Flags)
			m.Flags = applyFlags(m.Flags, op, flags)
			if nj := joinFlags(m.Flags); nj != old {
				changedUIDs = append(changedUIDs, int64(uid))
				changedFlags = append(changedFlags, nj)
				kw, _ = unionKeywords(kw, m.Flags)
				m.ModSeq = ms
				byUID[uid] = m
			}
			out = append(out, m)
		}
		changed := len(changedUIDs) > 0
		if changed {
			if _, err := tx.Exec(ctx, `UPDATE mailbox_message m SET flags = v.flags, modseq = $2
				FROM (SELECT DISTINCT ON (uid) uid, flags FROM unnest($3::bigint[], $4::text[]) WITH ORDINALITY AS u(uid, flags, i) ORDER BY uid, i DESC) v
				WHERE m.mailbox = $1 AND m.uid = v.uid`, mbox, ms, changedUIDs, changedFlags); err != nil {
				return nil, fmt.Errorf("mailbox: %w", err)
			}
			if err := addKeywordsPg(ctx, tx, mbox, kw); err != nil {
				return nil, err
			}
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

// copyTx copies uids from mbox into dest (bodies included) and returns dest's id.
func (s *Postgres) copyTx(ctx context.Context, tx *pgTx, mbox MailboxID, uids []uint32, dest string, res *CopyResult) (MailboxID, error) {
	var bal string
	if err := tx.QueryRow(ctx, `SELECT bal FROM mailbox_folder WHERE id = $1`, mbox).Scan(&bal); err != nil {
		return 0, ErrNoMailbox
	}
	did, err := s.mailboxID(ctx, tx, bal, dest)
	if err != nil {
		return 0, err
	}
	ms, err := tx.bumpModSeq(ctx, did)
	if err != nil {
		return 0, err
	}
	*res = CopyResult{}
	if err := tx.QueryRow(ctx, `SELECT uidvalidity FROM mailbox_folder WHERE id = $1`, did).Scan(&res.UIDValidity); err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	present := map[uint32]bool{}
	var kw []string
	q := `SELECT uid, flags FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2)`
	if s.blobs != nil {
		// The source rows stay until the copies commit: otherwise an expunge committed
		// meanwhile would let the sweep find the shared body unnamed and remove it under
		// the copies.
		q += ` FOR SHARE`
	}
	rows, err := tx.Query(ctx, q, mbox, uidList(uids))
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	for rows.Next() {
		var u uint32
		var f string
		if err := rows.Scan(&u, &f); err != nil {
			rows.Close()
			return 0, fmt.Errorf("mailbox: %w", err)
		}
		present[u] = true
		kw, _ = unionKeywords(kw, splitFlags(f))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	var src, dst []int64
	for _, u := range uids {
		if present[u] {
			present[u] = false // once each
			res.SourceUIDs = append(res.SourceUIDs, u)
			src = append(src, int64(u))
		}
	}
	if len(src) == 0 {
		return did, nil
	}
	var first uint32
	if err := tx.QueryRow(ctx, `UPDATE mailbox_folder SET uidnext = uidnext + $2 WHERE id = $1 RETURNING uidnext - $2`, did, len(src)).Scan(&first); err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	for i := range src {
		res.DestUIDs = append(res.DestUIDs, first+uint32(i))
		dst = append(dst, int64(first)+int64(i))
	}
	var total int64
	err = tx.QueryRow(ctx, `WITH ins AS (
		INSERT INTO mailbox_message (mailbox, uid, size, internal, flags, modseq, header, body, blob)
		SELECT $3, p.dst, m.size, m.internal, m.flags, $4, m.header, m.body, m.blob
		FROM unnest($2::bigint[], $5::bigint[]) AS p(src, dst) JOIN mailbox_message m ON m.mailbox = $1 AND m.uid = p.src
		RETURNING size)
		SELECT coalesce(sum(size), 0) FROM ins`, mbox, src, did, ms, dst).Scan(&total)
	if err != nil {
		return 0, fmt.Errorf("mailbox: copy: %w", err)
	}
	if err := addKeywordsPg(ctx, tx, did, kw); err != nil {
		return 0, err
	}
	if err := reserve(ctx, tx, bal, total); err != nil {
		return 0, err
	}
	return did, nil
}

// Copy implements Store.
func (s *Postgres) Copy(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	err := s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		did, err := s.copyTx(ctx, tx, mbox, uids, dest, &res)
		return []MailboxID{did}, err
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// Move implements Store.
func (s *Postgres) Move(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	err := s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		// both folders' rows in the order of their ids, so that moves in opposite
		// directions wait for each other instead of deadlocking
		var bal string
		if err := tx.QueryRow(ctx, `SELECT bal FROM mailbox_folder WHERE id = $1`, mbox).Scan(&bal); err != nil {
			return nil, ErrNoMailbox
		}
		did, err := s.mailboxID(ctx, tx, bal, dest)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM mailbox_folder WHERE id = ANY($1) ORDER BY id FOR UPDATE`, []int64{int64(mbox), int64(did)}); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		did, err = s.copyTx(ctx, tx, mbox, uids, dest, &res)
		if err != nil {
			return nil, err
		}
		src := make([]int64, len(res.SourceUIDs))
		for i, u := range res.SourceUIDs {
			src[i] = int64(u)
		}
		_, _, err = s.deleteTx(ctx, tx, mbox, src)
		return []MailboxID{did, mbox}, err
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// deleteTx removes the listed messages, logs them as expunged at a new modseq (the trigger)
// and releases their quota; it returns how many messages and bytes it removed.
func (s *Postgres) deleteTx(ctx context.Context, tx *pgTx, mbox MailboxID, uids []int64) (n, size int64, err error) {
	if len(uids) == 0 {
		return 0, 0, nil
	}
	ms, err := tx.bumpModSeq(ctx, mbox)
	if err != nil {
		return 0, 0, err
	}
	if keep := s.opts.expungeLog(); ms > keep {
		// older entries only serve sessions that far behind, which Changes sends to re-read
		// the UIDs (as the SQLite store's deleteTx)
		if _, err := tx.Exec(ctx, `DELETE FROM mailbox_expunged WHERE mailbox = $1 AND modseq <= $2`, mbox, ms-keep); err != nil {
			return 0, 0, fmt.Errorf("mailbox: %w", err)
		}
	}
	err = tx.QueryRow(ctx, `WITH d AS (DELETE FROM mailbox_message WHERE mailbox = $1 AND uid = ANY($2) RETURNING size),
		t AS (SELECT count(*) AS n, coalesce(sum(size), 0) AS size FROM d),
		u AS (UPDATE mailbox_bal SET used = used - t.size FROM t WHERE address = (SELECT bal FROM mailbox_folder WHERE id = $1))
		SELECT n, size FROM t`, mbox, uids).Scan(&n, &size)
	if err != nil {
		return 0, 0, fmt.Errorf("mailbox: %w", err)
	}
	return n, size, nil
}

// Expunge implements Store.
func (s *Postgres) Expunge(ctx context.Context, mbox MailboxID, uids []uint32) ([]uint32, error) {
	var removed []uint32
	err := s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		removed = nil
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM mailbox_folder WHERE id = $1 FOR UPDATE`, mbox).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, errNoChange
			}
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		q, args := `SELECT uid FROM mailbox_message WHERE mailbox = $1 AND deleted ORDER BY uid`, []any{mbox}
		if uids != nil {
			q, args = `SELECT uid FROM mailbox_message WHERE mailbox = $1 AND deleted AND uid = ANY($2) ORDER BY uid`, []any{mbox, uidList(uids)}
		}
		var del []int64
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		for rows.Next() {
			var u int64
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mailbox: %w", err)
			}
			del = append(del, u)
			removed = append(removed, uint32(u))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		if len(del) == 0 {
			return nil, errNoChange
		}
		_, _, err = s.deleteTx(ctx, tx, mbox, del)
		return []MailboxID{mbox}, err
	})
	if errors.Is(err, errNoChange) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// Changes implements Store, from one snapshot (a repeatable-read transaction).
func (s *Postgres) Changes(ctx context.Context, mbox MailboxID, sinceModSeq uint64) (*Changes, error) {
	var c Changes
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT modseq FROM mailbox_folder WHERE id = $1`, mbox).Scan(&c.ModSeq)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoMailbox
		}
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		if c.ModSeq <= sinceModSeq {
			return nil
		}
		if c.Messages, err = scanPgMessages(tx.Query(ctx, `SELECT `+pgMessageCols+` FROM mailbox_message WHERE mailbox = $1 AND modseq > $2 ORDER BY uid`, mbox, sinceModSeq)); err != nil {
			return err
		}
		if sinceModSeq == 0 {
			return nil // nothing expunged before the start
		}
		if keep := s.opts.expungeLog(); c.ModSeq > keep && sinceModSeq < c.ModSeq-keep {
			c.ExpungedUnknown = true // pruned up to at most the last expunge's modseq minus keep
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT uid FROM mailbox_expunged WHERE mailbox = $1 AND modseq > $2`, mbox, sinceModSeq)
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var u uint32
			if err := rows.Scan(&u); err != nil {
				return fmt.Errorf("mailbox: %w", err)
			}
			c.Expunged = append(c.Expunged, u)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNoMailbox) {
			return nil, ErrNoMailbox
		}
		return nil, err
	}
	return &c, nil
}

// UIDs implements Store (an index-only scan of the folder's primary key).
func (s *Postgres) UIDs(ctx context.Context, mbox MailboxID) ([]uint32, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT n_messages FROM mailbox_folder WHERE id = $1`, mbox).Scan(&n); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT uid FROM mailbox_message WHERE mailbox = $1 ORDER BY uid`, mbox)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	out := make([]uint32, 0, max(n, 0))
	for rows.Next() {
		var u uint32
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// UIDRuns implements Store. The runs are computed from the folder's UIDs by the database (a
// UID minus its rank is constant along a run): only the runs cross the network.
func (s *Postgres) UIDRuns(ctx context.Context, mbox MailboxID) ([]UIDRun, error) {
	var id MailboxID
	if err := s.pool.QueryRow(ctx, `SELECT id FROM mailbox_folder WHERE id = $1`, mbox).Scan(&id); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoMailbox
		}
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT min(uid), max(uid) FROM
		(SELECT uid, uid - row_number() OVER (ORDER BY uid) AS g FROM mailbox_message WHERE mailbox = $1) r
		GROUP BY g ORDER BY 1`, mbox)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []UIDRun
	for rows.Next() {
		var first, last int64
		if err := rows.Scan(&first, &last); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, UIDRun{uint32(first), uint32(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}
