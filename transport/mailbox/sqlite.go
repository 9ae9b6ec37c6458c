package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/whitelist"
)

// Options configures OpenSQLite and OpenPostgres. The zero value is valid.
type Options struct {
	// MaxMessageSize is the largest message Append accepts; 0 means 64 MiB.
	MaxMessageSize int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store events (identifiers only); nil discards them.
	Logger *slog.Logger
	// WatchPoll is how often the store looks, in one query for all the folders watched
	// through it (Watch), for changes made by other processes; changes made through the
	// store are signalled at once. 0 means 2 s; negative disables the look.
	WatchPoll time.Duration
	// FlagSync is how far a flag-only change (StoreFlags) is made durable before it returns.
	// The zero value, FlagSyncFull, fsyncs it like every other change.
	FlagSync FlagSync
	// ExpungeLog is how many modification sequences back each folder's log of expunged UIDs
	// reaches: older entries are removed at the next expunge, and a caller asking for the
	// changes since an older modseq is told to re-read the folder's UIDs
	// (Changes.ExpungedUnknown). 0 means 100,000.
	ExpungeLog uint64
	// Blobs is where the PostgreSQL store keeps message bodies: "" or "postgres" in the
	// database, "dir:" and an absolute path in files under that folder, which every node
	// must mount. The SQLite store keeps them in files under its own folder and ignores it.
	Blobs string
}

const defaultExpungeLog = 100_000

func (o *Options) expungeLog() uint64 {
	if o.ExpungeLog > 0 {
		return o.ExpungeLog
	}
	return defaultExpungeLog
}

func (s *SQLite) expungeLog() uint64 { return s.opts.expungeLog() }

// FlagSync is the durability of flag-only changes. Deliveries, copies, moves, expunges and
// every other change are always fsynced before they return, whatever this says.
type FlagSync int

const (
	// FlagSyncFull commits a flag change with an fsync of the write-ahead log before
	// StoreFlags returns: a flag change a client was told of survives a power loss.
	FlagSyncFull FlagSync = iota
	// FlagSyncNormal commits a flag change without an fsync (SQLite synchronous=NORMAL, on a
	// write connection of its own). The index stays consistent after a crash, and the next
	// fsynced commit (a delivery, an expunge) or checkpoint makes the flag changes before it
	// durable; a power loss may undo the last flag changes, never a message. This is what
	// Dovecot does by default (mail_fsync = optimized does not fsync a flag change).
	FlagSyncNormal
)

const defaultMaxMessageSize = 64 << 20

// SQLite is the embedded Store: an index in SQLite and one file per message under a folder.
type SQLite struct {
	dir string
	// db is the read pool (see readConns); the schema is created and migrated through it
	// before the writers open.
	db    *sql.DB
	reads readStmts
	// w is the writer (synchronous=FULL) through which every write goes, and flagW, with
	// FlagSyncNormal, one with synchronous=NORMAL on the same index, through which StoreFlags
	// writes; nil means flag changes go through w.
	w, flagW *writer
	opts     Options
	wmu      sync.Mutex // one writer at a time: SQLite has a single write lock anyway
	// cur is, under wmu, the writer of the transaction under way.
	cur    *writer
	closed bool
	// bumped collects, under wmu, the folders whose modseq the current write transaction
	// raised, with the new value: signalled to watchers once committed.
	bumped map[MailboxID]uint64
	hub    hub
	// polling starts the cross-process look at the first Watch; stop ends it at Close.
	polling sync.Once
	stop    chan struct{}
	done    chan struct{}
	lock    *os.File // the shared flock on the store's lock file, released by Close
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
	s := &SQLite{dir: dir, stop: make(chan struct{})}
	if opts != nil {
		s.opts = *opts
	}
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
	}
	index := filepath.Join(dir, "index.db")
	if err := privateIndex(index); err != nil {
		return nil, err
	}
	db, err := openIndex(index, "FULL", "")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(readConns)
	db.SetMaxIdleConns(readConns) // kept open, with the statements prepared on them
	s.db = db
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("mailbox: create schema: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrateChanges(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if s.lock, err = lockShared(ctx, dir, func() error { return s.collectGarbage(ctx) }); err != nil {
		db.Close()
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			s.lock.Close()
		}
	}()
	if s.opts.FlagSync != FlagSyncFull && s.opts.FlagSync != FlagSyncNormal {
		db.Close()
		return nil, fmt.Errorf("mailbox: unknown FlagSync %d", s.opts.FlagSync)
	}
	if s.w, err = openWriter(ctx, index, "FULL"); err != nil {
		db.Close()
		return nil, err
	}
	if s.opts.FlagSync == FlagSyncNormal {
		if s.flagW, err = openWriter(ctx, index, "NORMAL"); err != nil {
			s.w.close()
			db.Close()
			return nil, err
		}
	}
	opened = true
	return s, nil
}

// openIndex opens the index in WAL mode with the given synchronous setting, which SQLite
// keeps per connection: FULL fsyncs the log at each commit, NORMAL only at checkpoints. more
// is appended to the driver's options.
func openIndex(index, synchronous, more string) (*sql.DB, error) {
	dsn := "file:" + index + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + synchronous +
		")&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" + more
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("mailbox: open index: %w", err)
	}
	return db, nil
}

// privateIndex creates the index file with mode 0600 before SQLite opens it, and narrows an
// index and its -wal and -shm files that an earlier version left wider. The index holds
// password hashes and message headers; SQLite would create it with mode 0644 (its default
// file permissions, whatever the umask allows) and gives the -wal and -shm files it creates
// the mode of the database file, so the mode set here is the mode of all three.
func privateIndex(index string) error {
	f, err := os.OpenFile(index, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("mailbox: open index: %w", err)
	}
	f.Close()
	for _, p := range []string{index, index + "-wal", index + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil && st.Mode().Perm()&0o077 != 0 {
			err = os.Chmod(p, 0o600)
		}
		if err != nil {
			return fmt.Errorf("mailbox: index file mode: %w", err)
		}
	}
	return nil
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
	if err := s.migrateListing(ctx); err != nil {
		return err
	}
	return s.migrateMembers(ctx)
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

// lockName is the file every open SQLite store holds a shared flock on.
const lockName = "store.lock"

// lockShared takes a shared flock on the lock file of dir, calling alone first when no other
// process has the store open (an exclusive flock then succeeds): the message file another
// process is writing is referenced by no row yet, so only a lone opener may collect garbage
// (an "mssante bal" command beside a running node would otherwise delete the node's
// deliveries in flight).
func lockShared(ctx context.Context, dir string, alone func() error) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	if statelock.Flock(f, true) == nil {
		if err := alone(); err != nil {
			f.Close()
			return nil, err
		}
	}
	// Another opener holds the exclusive lock only while it collects garbage.
	for statelock.Flock(f, false) != nil {
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("mailbox: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return f, nil
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
	close(s.stop)
	if s.done != nil {
		<-s.done
	}
	if s.flagW != nil {
		s.flagW.close()
	}
	s.w.close()
	s.closeReads()
	s.lock.Close()
	return s.db.Close()
}

// write runs fn in a write transaction, one at a time, then signals watchers of the folders
// whose modseq it raised and of touched.
func (s *SQLite) write(ctx context.Context, fn func(tx *sql.Tx) ([]MailboxID, error)) error {
	return s.writeOn(ctx, s.w, fn)
}

// writeFlags is write for a transaction that changes only flags (and the folder's modseq and
// keyword list): it commits with the FlagSync the store was opened with.
func (s *SQLite) writeFlags(ctx context.Context, fn func(tx *sql.Tx) ([]MailboxID, error)) error {
	if s.flagW != nil {
		return s.writeOn(ctx, s.flagW, fn)
	}
	return s.writeOn(ctx, s.w, fn)
}

func (s *SQLite) writeOn(ctx context.Context, w *writer, fn func(tx *sql.Tx) ([]MailboxID, error)) error {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return ErrClosed
	}
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("mailbox: %w", err)
	}
	s.bumped = map[MailboxID]uint64{}
	s.cur = w
	touched, err := fn(tx)
	bumped := s.bumped
	s.bumped, s.cur = nil, nil
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
	for id, m := range bumped {
		s.hub.changed(id, m)
	}
	for _, id := range touched {
		if _, ok := bumped[id]; !ok {
			s.hub.changed(id, 0)
		}
	}
	return nil
}

// Watch implements Store (see [Watcher]).
func (s *SQLite) Watch(mbox MailboxID) (<-chan struct{}, func()) {
	if s.opts.WatchPoll >= 0 {
		s.polling.Do(func() {
			s.wmu.Lock()
			defer s.wmu.Unlock()
			if !s.closed {
				s.done = make(chan struct{})
				go s.pollWatched()
			}
		})
	}
	return s.hub.watch(mbox)
}
