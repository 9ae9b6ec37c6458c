package mailbox

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"github.com/mssante-go/sdk/whitelist"
)

// Options configures OpenSQLite. The zero value is valid.
type Options struct {
	// MaxMessageSize is the largest message Append accepts; 0 means 64 MiB.
	MaxMessageSize int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store events (identifiers only); nil discards them.
	Logger *slog.Logger
}

const defaultMaxMessageSize = 64 << 20

// SQLite is the embedded Store: an index in SQLite and one file per message under a folder.
type SQLite struct {
	dir    string
	db     *sql.DB
	opts   Options
	wmu    sync.Mutex // one writer at a time: SQLite has a single write lock anyway
	wmuMap sync.Mutex
	watch  map[MailboxID]map[chan struct{}]struct{}
	closed bool
}

var _ Store = (*SQLite)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS bal (
	address TEXT PRIMARY KEY,
	type TEXT NOT NULL,
	owner TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	cert_dn TEXT NOT NULL DEFAULT '',
	cert_dn_key TEXT NOT NULL DEFAULT '',
	quota INTEGER NOT NULL DEFAULT 0,
	retention_s INTEGER NOT NULL DEFAULT 0,
	pwhash TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL,
	used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mailbox (
	id INTEGER PRIMARY KEY,
	bal TEXT NOT NULL REFERENCES bal(address) ON DELETE CASCADE,
	name TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uidnext INTEGER NOT NULL DEFAULT 1,
	modseq INTEGER NOT NULL DEFAULT 1,
	subscribed INTEGER NOT NULL DEFAULT 0,
	recent_uid INTEGER NOT NULL DEFAULT 0,
	UNIQUE (bal, name)
);
CREATE TABLE IF NOT EXISTS counter (
	name TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS message (
	mailbox INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
	uid INTEGER NOT NULL,
	blob TEXT NOT NULL,
	size INTEGER NOT NULL,
	internal INTEGER NOT NULL,
	flags TEXT NOT NULL DEFAULT '',
	modseq INTEGER NOT NULL,
	delivery TEXT,
	header BLOB,
	PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS message_delivery ON message(mailbox, delivery) WHERE delivery IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_modseq ON message(mailbox, modseq);
CREATE TABLE IF NOT EXISTS audit (
	ts INTEGER NOT NULL,
	event TEXT NOT NULL,
	bal TEXT NOT NULL,
	detail TEXT NOT NULL
);
`

// OpenSQLite opens (creating if needed) the store in dir: dir/index.db and dir/blobs/. It
// removes message files left by a crash before their index row was committed.
func OpenSQLite(ctx context.Context, dir string, opts *Options) (*SQLite, error) {
	s := &SQLite{dir: dir, watch: make(map[MailboxID]map[chan struct{}]struct{})}
	if opts != nil {
		s.opts = *opts
	}
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
	}
	dsn := "file:" + filepath.Join(dir, "index.db") +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("mailbox: open index: %w", err)
	}
	s.db = db
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("mailbox: create schema: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.collectGarbage(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLite) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

func (s *SQLite) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// migrate adds the columns that stores created by earlier versions lack (the schema only
// grows: CREATE TABLE IF NOT EXISTS leaves existing tables as they are).
func (s *SQLite) migrate(ctx context.Context) error {
	for _, c := range []struct{ table, column, def string }{
		{"bal", "cert_dn_key", "TEXT NOT NULL DEFAULT ''"},
		{"mailbox", "recent_uid", "INTEGER NOT NULL DEFAULT 0"},
		{"message", "header", "BLOB"},
	} {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name=?`, c.table, c.column).Scan(&n); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
		if n > 0 {
			continue
		}
		if _, err := s.db.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.def); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
		if c.column == "cert_dn_key" {
			if err := s.backfillDNKeys(ctx); err != nil {
				return err
			}
		}
	}
	_, err := s.db.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS bal_cert_dn ON bal(cert_dn_key) WHERE cert_dn_key <> ''`)
	if err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	return nil
}

func (s *SQLite) backfillDNKeys(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT address, cert_dn FROM bal WHERE cert_dn <> ''`)
	if err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	keys := map[string]string{}
	for rows.Next() {
		var a, dn string
		rows.Scan(&a, &dn)
		if k, err := whitelist.CanonicalDN(dn); err == nil {
			keys[a] = k
		}
	}
	rows.Close()
	for a, k := range keys {
		if _, err := s.db.ExecContext(ctx, `UPDATE bal SET cert_dn_key=? WHERE address=?`, k, a); err != nil {
			return fmt.Errorf("mailbox: migrate: %w", err)
		}
	}
	return nil
}

// collectGarbage removes temporary files and message files no index row references: what a
// crash between writing a file and committing its row leaves behind.
func (s *SQLite) collectGarbage(ctx context.Context) error {
	tmp := filepath.Join(s.dir, "tmp")
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	refs := make(map[string]struct{})
	rows, err := s.db.QueryContext(ctx, `SELECT blob FROM message`)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return fmt.Errorf("mailbox: %w", err)
		}
		refs[b] = struct{}{}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	subs, _ := os.ReadDir(filepath.Join(s.dir, "blobs"))
	removed := 0
	for _, sub := range subs {
		files, _ := os.ReadDir(filepath.Join(s.dir, "blobs", sub.Name()))
		for _, f := range files {
			name := sub.Name() + "/" + f.Name()
			if _, ok := refs[name]; !ok {
				os.Remove(filepath.Join(s.dir, "blobs", name))
				removed++
			}
		}
	}
	if removed > 0 {
		s.logger().Info("mailbox: removed unreferenced message files", "count", removed)
	}
	return nil
}

// Close closes the index.
func (s *SQLite) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// write runs fn in a write transaction, one at a time, then signals watchers of touched.
func (s *SQLite) write(ctx context.Context, fn func(tx *sql.Tx) ([]MailboxID, error)) error {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return ErrClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("mailbox: %w", err)
	}
	touched, err := fn(tx)
	if err != nil {
		tx.Rollback()
		s.wmu.Unlock()
		return err
	}
	if err := tx.Commit(); err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("mailbox: commit: %w", err)
	}
	s.wmu.Unlock()
	s.notify(touched)
	return nil
}

func (s *SQLite) notify(ids []MailboxID) {
	s.wmuMap.Lock()
	defer s.wmuMap.Unlock()
	for _, id := range ids {
		for ch := range s.watch[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// Watch implements Store.
func (s *SQLite) Watch(mbox MailboxID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.wmuMap.Lock()
	if s.watch[mbox] == nil {
		s.watch[mbox] = make(map[chan struct{}]struct{})
	}
	s.watch[mbox][ch] = struct{}{}
	s.wmuMap.Unlock()
	return ch, func() {
		s.wmuMap.Lock()
		delete(s.watch[mbox], ch)
		if len(s.watch[mbox]) == 0 {
			delete(s.watch, mbox)
		}
		s.wmuMap.Unlock()
	}
}

func (s *SQLite) audit(tx *sql.Tx, event, bal, detail string) error {
	_, err := tx.Exec(`INSERT INTO audit(ts, event, bal, detail) VALUES (?,?,?,?)`, s.now().UnixMilli(), event, bal, detail)
	if err != nil {
		return fmt.Errorf("mailbox: audit: %w", err)
	}
	s.logger().Info("mailbox: "+event, "bal", bal, "detail", detail)
	return nil
}

// ---- BAL registry ----

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

const balCols = `b.address,b.type,b.owner,b.description,b.cert_dn,b.quota,b.retention_s,b.created,b.used,
	(SELECT count(*) FROM message m JOIN mailbox x ON m.mailbox=x.id WHERE x.bal=b.address)`

func scanBAL(row interface{ Scan(...any) error }) (*BAL, error) {
	var b BAL
	var typ string
	var ret, created int64
	if err := row.Scan(&b.Address, &typ, &b.Owner, &b.Description, &b.CertDN, &b.QuotaBytes, &ret, &created, &b.UsedBytes, &b.Messages); err != nil {
		return nil, err
	}
	b.Type = Type(typ)
	b.Retention = time.Duration(ret) * time.Second
	b.Created = time.Unix(created, 0).UTC()
	return &b, nil
}

// GetBAL implements Store.
func (s *SQLite) GetBAL(ctx context.Context, address string) (*BAL, error) {
	b, err := scanBAL(s.db.QueryRowContext(ctx, `SELECT `+balCols+` FROM bal b WHERE b.address=?`, normAddr(address)))
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
	var h string
	if password != "" {
		salt := make([]byte, 16)
		rand.Read(salt)
		key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iter, 32)
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		h = "pbkdf2-sha256$" + fmt.Sprint(pbkdf2Iter) + "$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key)
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
func (s *SQLite) CheckPassword(ctx context.Context, address, password string) error {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT pwhash FROM bal WHERE address=?`, normAddr(address)).Scan(&h)
	if err != nil || h == "" || password == "" {
		return ErrAuthFailed
	}
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return ErrAuthFailed
	}
	var iter int
	fmt.Sscan(parts[1], &iter)
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || iter <= 0 {
		return ErrAuthFailed
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrAuthFailed
	}
	return nil
}

// ---- folders ----

// canonName validates a folder name and spells INBOX in upper case.
func canonName(name string) (string, error) {
	name = strings.TrimSuffix(name, string(Delim))
	if name == "" || len(name) > 255 || strings.ContainsAny(name, "\r\n\x00*%") || strings.Contains(name, "//") || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
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

const mailboxCols = `x.id, x.bal, x.name, x.uidvalidity, x.uidnext, x.modseq, x.subscribed, x.recent_uid,
	(SELECT count(*) FROM message m WHERE m.mailbox=x.id AND m.uid > x.recent_uid),
	(SELECT count(*) FROM message m WHERE m.mailbox=x.id),
	(SELECT count(*) FROM message m WHERE m.mailbox=x.id AND NOT instr(' '||lower(m.flags)||' ', ' \seen ')),
	(SELECT count(*) FROM message m WHERE m.mailbox=x.id AND instr(' '||lower(m.flags)||' ', ' \deleted ')),
	(SELECT coalesce(sum(size),0) FROM message m WHERE m.mailbox=x.id)`

func scanMailbox(row interface{ Scan(...any) error }) (*MailboxInfo, error) {
	var m MailboxInfo
	if err := row.Scan(&m.ID, &m.BAL, &m.Name, &m.UIDValidity, &m.UIDNext, &m.ModSeq, &m.Subscribed, &m.RecentUID, &m.Recent, &m.Messages, &m.Unseen, &m.Deleted, &m.Size); err != nil {
		return nil, err
	}
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
	m, err := scanMailbox(s.db.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailbox x WHERE x.bal=? AND x.name=?`, normAddr(bal), cn))
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
	err := s.db.QueryRowContext(ctx, `SELECT modseq FROM mailbox WHERE id=?`, mbox).Scan(&m)
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
	err = s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		err := tx.QueryRowContext(ctx, `SELECT recent_uid, uidnext-1 FROM mailbox WHERE id=?`, mbox).Scan(&from, &to)
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

// ---- messages ----

func (s *SQLite) blobPath(name string) string {
	return filepath.Join(s.dir, "blobs", filepath.FromSlash(name))
}

func newBlobName() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:2] + "/" + h[2:]
}

// maxIndexedHeader bounds the header block kept in the index for SEARCH and ENVELOPE.
const maxIndexedHeader = 64 << 10

// headerCapture keeps the start of a message until its header ends (or the bound is reached).
type headerCapture struct{ buf []byte }

func (h *headerCapture) Write(p []byte) (int, error) {
	if room := maxIndexedHeader - len(h.buf); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		h.buf = append(h.buf, p[:room]...)
	}
	return len(p), nil
}

// header returns the header block, blank line included, or nil when it does not end within
// the bound (the message is then read from its file).
func (h *headerCapture) header() []byte {
	if i := bytes.Index(h.buf, []byte("\r\n\r\n")); i >= 0 {
		return h.buf[:i+4]
	}
	if i := bytes.Index(h.buf, []byte("\n\n")); i >= 0 {
		return h.buf[:i+2]
	}
	return nil
}

// writeBlob streams r to a new message file, fsynced and in place, and returns its name and size.
func (s *SQLite) writeBlob(r io.Reader, max int64, hc *headerCapture) (string, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "msg-")
	if err != nil {
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (string, int64, error) {
		f.Close()
		os.Remove(tmp)
		return "", 0, err
	}
	n, err := io.Copy(io.MultiWriter(f, hc), io.LimitReader(r, max+1))
	if err != nil {
		return fail(fmt.Errorf("mailbox: write message: %w", err))
	}
	if n > max {
		return fail(ErrTooBig)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("mailbox: fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	name := newBlobName()
	dst := s.blobPath(name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		os.Remove(dst)
		return "", 0, err
	}
	return name, n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mailbox: fsync dir: %w", err)
	}
	return nil
}

func (s *SQLite) removeBlobs(names []string) {
	for _, n := range names {
		os.Remove(s.blobPath(n))
	}
}

// bumpModSeq increments and returns the modseq of a folder.
func bumpModSeq(ctx context.Context, tx *sql.Tx, id MailboxID) (uint64, error) {
	var m uint64
	err := tx.QueryRowContext(ctx, `UPDATE mailbox SET modseq=modseq+1 WHERE id=? RETURNING modseq`, id).Scan(&m)
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	return m, nil
}

// checkQuota returns ErrOverQuota when adding size bytes would exceed the BAL's quota.
func checkQuota(ctx context.Context, tx *sql.Tx, bal string, size int64) error {
	var quota, used int64
	if err := tx.QueryRowContext(ctx, `SELECT quota, used FROM bal WHERE address=?`, bal).Scan(&quota, &used); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	if quota > 0 && used+size > quota {
		return ErrOverQuota
	}
	_, err := tx.ExecContext(ctx, `UPDATE bal SET used=used+? WHERE address=?`, size, bal)
	return err
}

// Append implements Store.
func (s *SQLite) Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *AppendOptions) (*AppendResult, error) {
	var o AppendOptions
	if opts != nil {
		o = *opts
	}
	max := o.MaxSize
	if max <= 0 {
		max = s.opts.MaxMessageSize
	}
	if max <= 0 {
		max = defaultMaxMessageSize
	}
	bal = normAddr(bal)
	// Cheap checks before writing the file.
	if _, err := s.mailboxID(ctx, s.db, bal, mailbox); err != nil {
		return nil, err
	}
	var hc headerCapture
	blob, size, err := s.writeBlob(r, max, &hc)
	if err != nil {
		return nil, err
	}
	date := o.Date
	if date.IsZero() {
		date = s.now()
	}
	flags := joinFlags(normFlags(o.Flags))
	var res AppendResult
	err = s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		id, err := s.mailboxID(ctx, tx, bal, mailbox)
		if err != nil {
			return nil, err
		}
		res.Mailbox = id
		if o.DeliveryID != "" {
			var uid uint32
			err := tx.QueryRowContext(ctx, `SELECT uid FROM message WHERE mailbox=? AND delivery=?`, id, o.DeliveryID).Scan(&uid)
			if err == nil {
				res.UID, res.Duplicate = uid, true
				tx.QueryRowContext(ctx, `SELECT uidvalidity FROM mailbox WHERE id=?`, id).Scan(&res.UIDValidity)
				return nil, nil
			}
		}
		if err := checkQuota(ctx, tx, bal, size); err != nil {
			return nil, err
		}
		var uid uint32
		if err := tx.QueryRowContext(ctx, `UPDATE mailbox SET uidnext=uidnext+1 WHERE id=? RETURNING uidnext-1, uidvalidity`, id).Scan(&uid, &res.UIDValidity); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		ms, err := bumpModSeq(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		var delivery any
		if o.DeliveryID != "" {
			delivery = o.DeliveryID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq,delivery,header) VALUES (?,?,?,?,?,?,?,?,?)`,
			id, uid, blob, size, date.UnixMilli(), flags, ms, delivery, hc.header()); err != nil {
			return nil, fmt.Errorf("mailbox: append: %w", err)
		}
		res.UID, res.Size = uid, size
		return []MailboxID{id}, nil
	})
	if err != nil || res.Duplicate {
		s.removeBlobs([]string{blob})
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// Messages implements Store.
func (s *SQLite) Messages(ctx context.Context, mbox MailboxID, sinceModSeq uint64) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT uid, size, internal, flags, modseq FROM message WHERE mailbox=? AND modseq>? ORDER BY uid`, mbox, sinceModSeq)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var internal int64
		var flags string
		if err := rows.Scan(&m.UID, &m.Size, &internal, &flags, &m.ModSeq); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		m.InternalDate = time.UnixMilli(internal)
		m.Flags = splitFlags(flags)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Headers implements Store.
func (s *SQLite) Headers(ctx context.Context, mbox MailboxID, afterUID uint32) (map[uint32][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT uid, header FROM message WHERE mailbox=? AND uid>? AND header IS NOT NULL`, mbox, afterUID)
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
	return out, rows.Err()
}

// Read implements Store.
func (s *SQLite) Read(ctx context.Context, mbox MailboxID, uids []uint32, fn func(uid uint32, r io.ReaderAt, size int64) error) error {
	if len(uids) == 0 {
		return nil
	}
	lo, hi := uids[0], uids[0]
	for _, u := range uids {
		lo, hi = min(lo, u), max(hi, u)
	}
	type ref struct {
		blob string
		size int64
	}
	refs := make(map[uint32]ref, len(uids))
	rows, err := s.db.QueryContext(ctx, `SELECT uid, blob, size FROM message WHERE mailbox=? AND uid BETWEEN ? AND ?`, mbox, lo, hi)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for rows.Next() {
		var u uint32
		var r ref
		if err := rows.Scan(&u, &r.blob, &r.size); err != nil {
			rows.Close()
			return fmt.Errorf("mailbox: %w", err)
		}
		refs[u] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for _, u := range uids {
		r, ok := refs[u]
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(s.blobPath(r.blob))
		if errors.Is(err, fs.ErrNotExist) {
			continue // expunged since the lookup
		}
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		err = fn(u, f, r.size)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Open implements Store.
func (s *SQLite) Open(ctx context.Context, mbox MailboxID, uid uint32) (io.ReadSeekCloser, int64, error) {
	var blob string
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT blob, size FROM message WHERE mailbox=? AND uid=?`, mbox, uid).Scan(&blob, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, ErrNoMessage
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox: %w", err)
	}
	f, err := os.Open(s.blobPath(blob))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNoMessage // expunged between the lookup and the open
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox: %w", err)
	}
	return f, size, nil
}

// StoreFlags implements Store.
func (s *SQLite) StoreFlags(ctx context.Context, mbox MailboxID, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	flags = normFlags(flags)
	var out []Message
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		ms, err := bumpModSeq(ctx, tx, mbox)
		if err != nil {
			return nil, err
		}
		sel, err := tx.PrepareContext(ctx, `SELECT size, internal, flags FROM message WHERE mailbox=? AND uid=?`)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		defer sel.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE message SET flags=?, modseq=? WHERE mailbox=? AND uid=?`)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		defer upd.Close()
		changed := false
		for _, uid := range uids {
			var m Message
			var internal int64
			var cur string
			if err := sel.QueryRowContext(ctx, mbox, uid).Scan(&m.Size, &internal, &cur); err != nil {
				continue // expunged meanwhile
			}
			m.UID, m.InternalDate = uid, time.UnixMilli(internal)
			next := applyFlags(splitFlags(cur), op, flags)
			nj := joinFlags(next)
			m.Flags = next
			if nj != cur {
				if _, err := upd.ExecContext(ctx, nj, ms, mbox, uid); err != nil {
					return nil, fmt.Errorf("mailbox: %w", err)
				}
				m.ModSeq = ms
				changed = true
			}
			out = append(out, m)
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

// errNoChange rolls back a transaction that changed nothing (keeps modseq still).
var errNoChange = errors.New("mailbox: no change")

// copyTx copies uids from mbox into dest, hard-linking message files; it returns the new
// blob names so a failed commit can remove them.
func (s *SQLite) copyTx(ctx context.Context, tx *sql.Tx, mbox MailboxID, uids []uint32, dest string, res *CopyResult, newBlobs *[]string) (MailboxID, error) {
	var bal string
	if err := tx.QueryRowContext(ctx, `SELECT bal FROM mailbox WHERE id=?`, mbox).Scan(&bal); err != nil {
		return 0, ErrNoMailbox
	}
	did, err := s.mailboxID(ctx, tx, bal, dest)
	if err != nil {
		return 0, err
	}
	ms, err := bumpModSeq(ctx, tx, did)
	if err != nil {
		return 0, err
	}
	sel, err := tx.PrepareContext(ctx, `SELECT blob, size, internal, flags, header FROM message WHERE mailbox=? AND uid=?`)
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	defer sel.Close()
	var total int64
	for _, uid := range uids {
		var blob, flags string
		var size, internal int64
		var header []byte
		if err := sel.QueryRowContext(ctx, mbox, uid).Scan(&blob, &size, &internal, &flags, &header); err != nil {
			continue
		}
		nb := newBlobName()
		if err := os.MkdirAll(filepath.Dir(s.blobPath(nb)), 0o700); err != nil {
			return 0, fmt.Errorf("mailbox: %w", err)
		}
		if err := os.Link(s.blobPath(blob), s.blobPath(nb)); err != nil {
			return 0, fmt.Errorf("mailbox: copy: %w", err)
		}
		*newBlobs = append(*newBlobs, nb)
		var nuid uint32
		if err := tx.QueryRowContext(ctx, `UPDATE mailbox SET uidnext=uidnext+1 WHERE id=? RETURNING uidnext-1, uidvalidity`, did).Scan(&nuid, &res.UIDValidity); err != nil {
			return 0, fmt.Errorf("mailbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq,header) VALUES (?,?,?,?,?,?,?,?)`,
			did, nuid, nb, size, internal, flags, ms, header); err != nil {
			return 0, fmt.Errorf("mailbox: copy: %w", err)
		}
		res.SourceUIDs = append(res.SourceUIDs, uid)
		res.DestUIDs = append(res.DestUIDs, nuid)
		total += size
	}
	if err := checkQuota(ctx, tx, bal, total); err != nil {
		return 0, err
	}
	// the links must be durable before the rows that reference them
	dirs := map[string]bool{}
	for _, nb := range *newBlobs {
		dirs[filepath.Dir(s.blobPath(nb))] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return 0, err
		}
	}
	return did, nil
}

// Copy implements Store.
func (s *SQLite) Copy(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	var blobs []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		did, err := s.copyTx(ctx, tx, mbox, uids, dest, &res, &blobs)
		return []MailboxID{did}, err
	})
	if err != nil {
		s.removeBlobs(blobs)
		return nil, err
	}
	return &res, nil
}

// Move implements Store.
func (s *SQLite) Move(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error) {
	var res CopyResult
	var blobs, old []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		did, err := s.copyTx(ctx, tx, mbox, uids, dest, &res, &blobs)
		if err != nil {
			return nil, err
		}
		old, err = s.deleteTx(ctx, tx, mbox, res.SourceUIDs)
		return []MailboxID{did, mbox}, err
	})
	if err != nil {
		s.removeBlobs(blobs)
		return nil, err
	}
	s.removeBlobs(old)
	return &res, nil
}

// deleteTx removes the listed messages, releases their quota and returns their blob names.
func (s *SQLite) deleteTx(ctx context.Context, tx *sql.Tx, mbox MailboxID, uids []uint32) ([]string, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	if _, err := bumpModSeq(ctx, tx, mbox); err != nil {
		return nil, err
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM message WHERE mailbox=? AND uid=? RETURNING blob, size`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer del.Close()
	var blobs []string
	var total int64
	for _, uid := range uids {
		var b string
		var n int64
		if err := del.QueryRowContext(ctx, mbox, uid).Scan(&b, &n); err != nil {
			continue
		}
		blobs = append(blobs, b)
		total += n
	}
	if _, err := tx.ExecContext(ctx, `UPDATE bal SET used=used-? WHERE address=(SELECT bal FROM mailbox WHERE id=?)`, total, mbox); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return blobs, nil
}

// Expunge implements Store.
func (s *SQLite) Expunge(ctx context.Context, mbox MailboxID, uids []uint32) ([]uint32, error) {
	var want map[uint32]bool
	if uids != nil {
		want = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
	}
	var removed []uint32
	var blobs []string
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		rows, err := tx.QueryContext(ctx, `SELECT uid FROM message WHERE mailbox=? AND instr(' '||lower(flags)||' ', ' \deleted ') ORDER BY uid`, mbox)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		for rows.Next() {
			var u uint32
			rows.Scan(&u)
			if want == nil || want[u] {
				removed = append(removed, u)
			}
		}
		rows.Close()
		if len(removed) == 0 {
			return nil, errNoChange
		}
		blobs, err = s.deleteTx(ctx, tx, mbox, removed)
		return []MailboxID{mbox}, err
	})
	if errors.Is(err, errNoChange) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.removeBlobs(blobs)
	return removed, nil
}

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
