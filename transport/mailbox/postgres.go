package mailbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/pglisten"
	"github.com/mssante-go/sdk/internal/pgschema"
)

//go:embed pgschema/*.sql
var pgMigrations embed.FS

// pgComponent names the mailbox store's migrations in the table of schema versions.
const pgComponent = "mailbox"

// pgChannel is the LISTEN/NOTIFY channel of folder changes; a payload is "id modseq".
const pgChannel = "mssante_mailbox"

// Postgres is the Store shared by several connector nodes: the index and the message bodies
// in one PostgreSQL database.
//
// Bodies are bytea columns of the message rows (stored out of line, uncompressed), or files
// in a folder every node mounts (Options.Blobs, see below). In the database they are written
// in the delivery's transaction: a message is durable and visible at one commit, a failed
// delivery leaves nothing behind, and every node reads it without a shared file system. A
// body is held in memory while it is written or read, bounded by MaxMessageSize. Measured
// against a file per message in a folder with its name in PostgreSQL (bench/store, figures in
// bench/README.md): a 20 KB body is appended faster (one fsync instead of three) and read
// about as fast; a 1 MB body is read about ten times slower, and a FETCH of a thousand 20 KB
// bodies takes PostgreSQL several times what reading the files takes.
//
// With a folder, a body is written to its file and fsynced (file and folder) before the
// transaction naming it commits: a committed message always has its body, and a crash or a
// failed delivery in between leaves a file no row names, which Purge removes once it is
// an hour old, as it removes those of expunged messages (copies share one file).
//
// UIDNEXT and the folder's modification sequence are taken inside the delivery's transaction
// by an UPDATE of the folder's row, whose lock is held until the commit: deliveries from any
// number of nodes get strictly increasing UIDs, committed in their order, so no client sees a
// UID appear below one it has already seen.
//
// Watchers learn the changes of every node through LISTEN/NOTIFY: each change notifies its
// folder and modseq right after its commit, and each store keeps one listening connection,
// which it re-opens after the server restarts (then it looks at the watched folders once, for
// what it missed); it also looks at them every WatchPoll, for a notification lost with a node
// that stopped between a commit and its notification.
type Postgres struct {
	pool  *pgxpool.Pool
	opts  Options
	blobs blobStore // nil: bodies in the database
	hub   hub
	// appends lets one Append a folder into the database at a time (see Append).
	appends turns

	mu     sync.Mutex
	closed bool
	stop   context.CancelFunc
	done   chan struct{}

	// nmu guards the notifications waiting to be sent (see announce).
	nmu        sync.Mutex
	pending    map[MailboxID]uint64
	announcing bool
	bg         sync.WaitGroup // announceLoop and pollLoop
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database of dsn (a libpq connection string or URL; TLS as it
// says), applies the schema migrations it lacks (one node at a time) and starts listening for
// the changes other nodes make. It refuses a database migrated by a newer program
// (pgschema.ErrNewer).
//
// Of opts, WatchPoll is how often the watched folders are looked at for a change whose
// notification was lost (other nodes' changes arrive by NOTIFY), and FlagSyncNormal
// commits flag changes without waiting for the log's flush (synchronous_commit off for those
// transactions only). The DSN sets the pool (pool_max_conns: by default the larger of 4 and
// the number of CPUs, which bounds the store's queries in flight) and TLS to the server
// (sslmode=verify-full with sslrootcert).

func OpenPostgres(ctx context.Context, dsn string, opts *Options) (*Postgres, error) {
	s := &Postgres{}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.FlagSync != FlagSyncFull && s.opts.FlagSync != FlagSyncNormal {
		return nil, fmt.Errorf("mailbox: unknown FlagSync %d", s.opts.FlagSync)
	}
	blobs, err := openBlobs(s.opts.Blobs)
	if err != nil {
		return nil, err
	}
	s.blobs = blobs
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: PostgreSQL DSN: %v", ErrInvalid, err)
	}
	// A delivery is acknowledged after its commit: the commit must have reached the log,
	// whatever the server's default (a DSN that sets synchronous_commit itself decides).
	if _, ok := cfg.ConnConfig.RuntimeParams["synchronous_commit"]; !ok {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	migs, err := pgschema.Load(pgMigrations, "pgschema")
	if err != nil {
		pool.Close()
		return nil, err
	}
	if _, _, err := pgschema.Migrate(ctx, pool, pgComponent, migs); err != nil {
		pool.Close()
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	s.pool = pool
	conn, err := pglisten.Dial(ctx, cfg.ConnConfig.Copy(), pgChannel)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("mailbox: listen: %w", err)
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.listen(lctx, cfg.ConnConfig.Copy(), conn)
	if s.opts.WatchPoll >= 0 {
		s.bg.Add(1)
		go s.pollLoop(lctx)
	}
	return s, nil
}

func (s *Postgres) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

func (s *Postgres) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Postgres) maxSize(o int64) int64 {
	switch {
	case o > 0:
		return o
	case s.opts.MaxMessageSize > 0:
		return s.opts.MaxMessageSize
	}
	return defaultMaxMessageSize
}

// pgAddr is normAddr for a query parameter. Text PostgreSQL cannot hold (invalid UTF-8, a
// NUL byte) names no BAL: it becomes "", which no BAL has, so that a look-up answers
// ErrNoBAL as the SQLite store's does, not a database error.
func pgAddr(a string) string {
	a = normAddr(a)
	if !utf8.ValidString(a) || strings.IndexByte(a, 0) >= 0 {
		return ""
	}
	return a
}

// Close stops listening and closes the connections.
func (s *Postgres) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	<-s.done
	s.bg.Wait() // the notifications of the last commits are sent
	s.pool.Close()
	return nil
}

func (s *Postgres) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// pgTx is a write transaction with the folders whose modseq it raised.
type pgTx struct {
	pgx.Tx
	bumped map[MailboxID]uint64
}

// bumpModSeq raises the modseq of a folder, locking its row until the commit; the change is
// notified to every node after the commit (see announce).
func (tx *pgTx) bumpModSeq(ctx context.Context, id MailboxID) (uint64, error) {
	var m uint64
	err := tx.QueryRow(ctx, `UPDATE mailbox_folder SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq`, id).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNoMailbox
	}
	if err != nil {
		return 0, fmt.Errorf("mailbox: %w", err)
	}
	tx.bumped[id] = m
	return m, nil
}

// pgRetries is how many times a write transaction is tried when PostgreSQL aborts it to
// break a deadlock: rows are locked in one order (folder, then BAL; two folders by id), but a
// retention purge, which goes from one folder to the next holding the BAL's row, may still
// cross a delivery.
const pgRetries = 5

// write runs fn in a transaction and commits it, then wakes the watchers in this process of
// the folders whose modseq it raised and of touched, and notifies the other nodes. An
// error returned is never a change committed.
func (s *Postgres) write(ctx context.Context, fn func(tx *pgTx) ([]MailboxID, error)) error {
	return s.writeWith(ctx, false, fn)
}

func (s *Postgres) writeWith(ctx context.Context, async bool, fn func(tx *pgTx) ([]MailboxID, error)) error {
	if s.isClosed() {
		return ErrClosed
	}
	for attempt := 1; ; attempt++ {
		tx := &pgTx{bumped: map[MailboxID]uint64{}}
		var touched []MailboxID
		var fnErr error
		err := pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error {
			tx.Tx = t
			if async {
				if _, err := t.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
					return err
				}
			}
			touched, fnErr = fn(tx)
			return fnErr
		})
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") && attempt < pgRetries {
			continue
		}
		if err != nil && err == fnErr {
			return err
		}
		if err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		changes := maps.Clone(tx.bumped)
		for _, id := range touched {
			if _, ok := changes[id]; !ok {
				changes[id] = 0
			}
		}
		for id, m := range changes {
			s.hub.changed(id, m)
		}
		s.announce(changes)
		return nil
	}
}

// Watch implements Store (see [Watcher]).
func (s *Postgres) Watch(mbox MailboxID) (<-chan struct{}, func()) { return s.hub.watch(mbox) }

// listen keeps conn listening on pgChannel, and the connections it opens again after a loss,
// and wakes the local watchers of the folders other nodes changed; after a reconnection it
// looks at the watched folders once, for what it missed.
func (s *Postgres) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn) {
	defer close(s.done)
	pglisten.Keep(ctx, cfg, pgChannel, conn, pglisten.Handler{
		Notify: s.notified,
		Listening: func() {
			s.logger().Info("mailbox: listening to PostgreSQL again")
			s.pollWatched(ctx)
		},
		Lost: func(err error) {
			s.logger().Warn("mailbox: PostgreSQL change listener lost, reconnecting", "err", err)
		},
	})
}

func (s *Postgres) notified(payload string) {
	a, b, ok := strings.Cut(payload, " ")
	id, err1 := strconv.ParseInt(a, 10, 64)
	m, err2 := strconv.ParseUint(b, 10, 64)
	if ok && err1 == nil && err2 == nil {
		s.hub.changed(MailboxID(id), m)
	}
}

// pollWatched wakes the watchers of the folders whose modseq rose while nobody listened.
func (s *Postgres) pollWatched(ctx context.Context) {
	known := s.hub.known()
	if len(known) == 0 {
		return
	}
	ids := make([]int64, 0, len(known))
	for id := range known {
		ids = append(ids, int64(id))
	}
	rows, err := s.pool.Query(ctx, `SELECT id, modseq FROM mailbox_folder WHERE id = ANY($1)`, ids)
	if err != nil {
		return
	}
	defer rows.Close()
	seen := map[MailboxID]bool{}
	for rows.Next() {
		var id MailboxID
		var m uint64
		if rows.Scan(&id, &m) == nil {
			seen[id] = true
			if m > known[id] {
				s.hub.changed(id, m)
			}
		}
	}
	if rows.Err() == nil {
		for id := range known {
			if !seen[id] {
				s.hub.changed(id, 0) // deleted meanwhile
			}
		}
	}
}

// turns lets one holder at a time in per key, the others waiting their turn or until their
// context ends.
type turns struct {
	mu   sync.Mutex
	keys map[MailboxID]*turn
}

type turn struct {
	ch chan struct{} // holds a token while nobody is in
	n  int           // holders and waiters
}

// enter waits for the turn of key and returns the function that ends it.
func (t *turns) enter(ctx context.Context, key MailboxID) (func(), error) {
	t.mu.Lock()
	if t.keys == nil {
		t.keys = map[MailboxID]*turn{}
	}
	k := t.keys[key]
	if k == nil {
		k = &turn{ch: make(chan struct{}, 1)}
		k.ch <- struct{}{}
		t.keys[key] = k
	}
	k.n++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if k.n--; k.n == 0 {
			delete(t.keys, key)
		}
		t.mu.Unlock()
	}
	select {
	case <-k.ch:
		return func() { k.ch <- struct{}{}; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
