package queue

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/pgschema"
)

// The queue in PostgreSQL. Several nodes share one database: any of them commits a message
// (its bytes, its envelope and one row per recipient in one transaction, with
// synchronous_commit on, before the 250), and any of them delivers it. A node takes due
// messages with SELECT … FOR UPDATE SKIP LOCKED and marks them leased to itself until an
// expiry it renews while the attempt lasts; a node that dies stops renewing, and another
// takes the message over once the lease has expired. Every state change is written only
// while the lease is still the writer's (same owner, same lease number), so that an attempt
// overtaken by another node stores nothing: one final state per recipient. A lease covers a
// message rather than a recipient because one attempt is one SMTP transaction for the due
// recipients of a message, as in the file queue.
//
// The schedule, the notices and the destination suspension are those of the file queue (the
// same attempter); the suspension is shared by the nodes in the database (postgres_dests.go).

// pgComponent names the queue's migrations in the table of schema versions.
const pgComponent = "queue"

//go:embed pgmigrations/*.sql
var pgMigrationFS embed.FS

// PostgresMigrations returns the schema migrations of the queue (for `store migrate`-like
// commands that apply or check them apart from OpenPostgres).
func PostgresMigrations() ([]pgschema.Migration, error) {
	return pgschema.Load(pgMigrationFS, "pgmigrations")
}

// PostgresOptions configure OpenPostgres. A zero field takes the documented default.
type PostgresOptions struct {
	// Schedule is the retry policy.
	Schedule Schedule
	// MaxMessageBytes bounds a stored message (default 64 MiB). A message being received is
	// held in memory until Commit writes it in one transaction.
	MaxMessageBytes int64
	// Now is the clock (default time.Now). The nodes sharing a database compare their
	// times with the leases and due times the others wrote: keep their clocks in sync.
	Now func() time.Time
	// Rand returns a number in [0,1) for the jitter (default math/rand/v2).
	Rand func() float64
	// RedeliveryWindow is how long the recipients of an envelope with a RedeliveryKey are
	// remembered (default 120 h; negative: off). See Options.RedeliveryWindow.
	RedeliveryWindow time.Duration
	// Node names this node in the leases it takes (default host name, process ID and a
	// random suffix, unique to this OpenPostgres).
	Node string
	// Lease is how long a message stays leased to a node without a renewal (default 1
	// minute): a node that dies leaves its messages to the others after this long. It is
	// renewed every third of it while an attempt lasts.
	Lease time.Duration
	// Poll is how often Run looks for messages due or left by another node (default 1 s);
	// messages committed by this node, or announced by another (LISTEN/NOTIFY), wake it at
	// once.
	Poll time.Duration
	// MaxConns bounds the connections to the database (default 16).
	MaxConns int32
	// Logger receives queue events (nil: discard). Records hold IDs and domains, never content.
	Logger *slog.Logger
}

// Postgres is a queue kept in a PostgreSQL database, shared by the nodes that open it. It is
// safe for concurrent use.
type Postgres struct {
	pool   *pgxpool.Pool
	opts   PostgresOptions
	sched  Schedule
	logger *slog.Logger
	dests  destTracker

	finisher finisher
	leases   leaseBook

	mu     sync.Mutex
	closed bool
	kick   chan struct{}
	stop   chan struct{} // closed by Close
	runs   sync.WaitGroup

	// announcing: a notification to the other nodes is on its way; announceAgain: another
	// was asked for meanwhile. bg counts those goroutines, which bgCtx stops at Close.
	announcing, announceAgain bool
	bg                        sync.WaitGroup
	bgCtx                     context.Context
	bgStop                    context.CancelFunc
}

var _ Spool = (*Postgres)(nil)

// OpenPostgres connects to the database of dsn (a libpq connection string or URL), applies
// the queue's schema migrations that it lacks (one node at a time) and returns the queue. It
// fails with pgschema.ErrNewer when a newer program migrated the database.
func OpenPostgres(ctx context.Context, dsn string, opts *PostgresOptions) (*Postgres, error) {
	var o PostgresOptions
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = mrand.Float64
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 64 << 20
	}
	if o.RedeliveryWindow == 0 {
		o.RedeliveryWindow = DefaultRedeliveryWindow
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.Node == "" {
		host, _ := os.Hostname()
		o.Node = fmt.Sprintf("%s-%d-%06x", host, os.Getpid(), mrand.IntN(1<<24))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	cfg.MaxConns = o.MaxConns
	// The 250 follows the COMMIT: the commit must be on the server's disk when it returns,
	// whatever the server's default.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	migs, err := PostgresMigrations()
	if err == nil {
		_, _, err = pgschema.Migrate(ctx, pool, pgComponent, migs)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	q := &Postgres{pool: pool, opts: o, sched: o.Schedule.withDefaults(), logger: o.Logger, kick: make(chan struct{}, 1),
		stop: make(chan struct{})}
	q.bgCtx, q.bgStop = context.WithCancel(context.Background())
	if q.logger == nil {
		q.logger = slog.New(slog.DiscardHandler)
	}
	q.dests = newSharedDestinations(q)
	return q, nil
}

// Node returns the name this queue gives its leases.
func (q *Postgres) Node() string { return q.opts.Node }

func (q *Postgres) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Close stops Run, waits for the attempts in progress to store their outcomes and release
// their leases, then closes the connections. Committed messages stay in the database.
func (q *Postgres) Close() error {
	q.mu.Lock()
	was := q.closed
	q.closed = true
	q.mu.Unlock()
	if !was {
		close(q.stop)
		q.runs.Wait()
		q.bgStop()
		q.bg.Wait()
		q.pool.Close()
	}
	return nil
}

// Kick makes Run look for due messages now.
func (q *Postgres) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// pgWriter is a message being received for a Postgres queue.
type pgWriter struct {
	q           *Postgres
	id          string
	buf         bytes.Buffer
	err         error
	done        bool
	redelivered []Redelivered
}

// BeginMessage starts a message; its ID is known now.
func (q *Postgres) BeginMessage() (MessageWriter, error) {
	if q.isClosed() {
		return nil, ErrClosed
	}
	return &pgWriter{q: q, id: newMessageID(q.opts.Now())}, nil
}

func (w *pgWriter) ID() string  { return w.id }
func (w *pgWriter) Size() int64 { return int64(w.buf.Len()) }

func (w *pgWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("queue: Write after Commit or Abort")
	}
	if int64(w.buf.Len()+len(p)) > w.q.opts.MaxMessageBytes {
		w.err = ErrTooLarge
		return 0, w.err
	}
	return w.buf.Write(p)
}

func (w *pgWriter) Open() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(w.buf.Bytes())), nil
}

func (w *pgWriter) Abort() {
	w.done = true
	w.buf = bytes.Buffer{}
}

func (w *pgWriter) Redelivered() []Redelivered { return w.redelivered }

// Commit stores the message, its envelope and its recipients in one transaction and returns
// once PostgreSQL has committed it: the caller may then answer 250. An error means nothing
// was stored, or (the connection lost during COMMIT) that the caller cannot know: it answers
// with a temporary failure either way, and a RedeliveryKey makes the sender's next attempt
// find what was stored.
func (w *pgWriter) Commit(ctx context.Context, env *Envelope) (string, error) {
	q := w.q
	if w.done {
		return "", errors.New("queue: Commit after Abort or Commit")
	}
	defer w.Abort()
	if len(env.Rcpts) == 0 {
		return "", ErrNoRecipients
	}
	if w.err != nil {
		return "", w.err
	}
	if q.isClosed() {
		return "", ErrClosed
	}
	e := env.clone()
	e.ID = w.id
	now := q.opts.Now()
	if e.Received.IsZero() {
		e.Received = now
	}
	for _, r := range e.Rcpts {
		r.State, r.Attempts, r.NextAttempt, r.Notice = Pending, 0, now, ""
	}
	e.Size = int64(w.buf.Len())
	var dups []Redelivered
	var err error
	if e.RedeliveryKey == "" || q.opts.RedeliveryWindow < 0 {
		err = q.insert(ctx, q.pool, e, w.buf.Bytes())
	} else {
		dups, err = q.insertKeyed(ctx, e, w.buf.Bytes(), now)
	}
	w.redelivered = dups
	if errors.Is(err, ErrRedelivered) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("queue: store message: %w", err)
	}
	q.logger.Info("queue: queued", "id", e.ID, "source", e.Source, "rcpts", len(e.Rcpts), "size", e.Size)
	q.Kick()
	q.announce()
	return e.ID, nil
}

// insertKeyed writes message e as insert does, but only for the recipients whose redelivery
// key no message committed within the window holds, and records those keys; it returns the
// others, which it leaves out of e.Rcpts, and ErrRedelivered when none is left. One
// statement, its own transaction: a key committed by a concurrent transaction makes it wait
// for that one, then count as a redelivery (the unique key does what the file queue's
// reservations do), and the keys are taken in one order, so that two transactions with
// common keys never deadlock.
func (q *Postgres) insertKeyed(ctx context.Context, e *Envelope, body []byte, now time.Time) ([]Redelivered, error) {
	head := *e
	head.Rcpts = nil
	hb, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	c, err := columnsOf(e)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(e.Rcpts))
	for i, r := range e.Rcpts {
		k := keyOf(e.RedeliveryKey, r.Addr)
		keys[i] = k[:]
	}
	due, _ := e.dueAt()
	rows, err := q.pool.Query(ctx, `WITH k AS (
			INSERT INTO queue_keys AS o (key, msg_id, received)
			SELECT DISTINCT key, $1, $4::timestamptz FROM unnest($13::bytea[]) AS key ORDER BY key
			ON CONFLICT (key) DO UPDATE SET
				msg_id = CASE WHEN o.received < $14 THEN excluded.msg_id ELSE o.msg_id END,
				received = CASE WHEN o.received < $14 THEN excluded.received ELSE o.received END
			RETURNING key, msg_id),
		u AS (SELECT u.*, row_number() OVER (ORDER BY u.idx) - 1 AS n
			FROM unnest($6::int[], $7::text[], $8::text[], $9::int[], $10::timestamptz[], $11::text[], $12::text[], $13::bytea[])
				AS u(idx, domain, state, attempts, next, notice, data, key)
			JOIN k ON k.key = u.key AND k.msg_id = $1),
		m AS (INSERT INTO queue_messages (id, envelope, received, due)
			SELECT $1, $2, $4, $5 WHERE EXISTS (SELECT 1 FROM u) RETURNING id),
		b AS (INSERT INTO queue_bodies (msg_id, body) SELECT m.id, $3 FROM m),
		r AS (INSERT INTO queue_rcpts (msg_id, idx, domain, state, attempts, next_attempt, notice, data)
			SELECT m.id, u.n, u.domain, u.state, u.attempts, u.next, u.notice, u.data::json FROM m, u)
		SELECT key, msg_id FROM k WHERE msg_id <> $1`,
		e.ID, hb, body, e.Received, due, c.idx, c.domain, c.state, c.attempts, c.next, c.notice, c.data,
		keys, now.Add(-q.opts.RedeliveryWindow))
	if err != nil {
		return nil, err
	}
	held := map[string]string{}
	for rows.Next() {
		var k []byte
		var id string
		if err := rows.Scan(&k, &id); err != nil {
			rows.Close()
			return nil, err
		}
		held[string(k)] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var dups []Redelivered
	var keep []*Recipient
	for i, r := range e.Rcpts {
		if id, ok := held[string(keys[i])]; ok {
			dups = append(dups, Redelivered{Addr: r.Addr, ID: id})
		} else {
			keep = append(keep, r)
		}
	}
	e.Rcpts = keep
	if len(keep) == 0 {
		return dups, ErrRedelivered
	}
	return dups, nil
}

// insert writes message e, its body and its recipient rows: one statement.
func (q *Postgres) insert(ctx context.Context, db execer, e *Envelope, body []byte) error {
	head := *e
	head.Rcpts = nil
	hb, err := json.Marshal(&head)
	if err != nil {
		return err
	}
	c, err := columnsOf(e)
	if err != nil {
		return err
	}
	due, _ := e.dueAt()
	_, err = db.Exec(ctx, `WITH m AS (
			INSERT INTO queue_messages (id, envelope, received, due) VALUES ($1, $2, $4, $5) RETURNING id),
		b AS (INSERT INTO queue_bodies (msg_id, body) SELECT m.id, $3 FROM m)
		INSERT INTO queue_rcpts (msg_id, idx, domain, state, attempts, next_attempt, notice, data)
		SELECT m.id, u.idx, u.domain, u.state, u.attempts, u.next, u.notice, u.data::json
		FROM m, unnest($6::int[], $7::text[], $8::text[], $9::int[], $10::timestamptz[], $11::text[], $12::text[])
			AS u(idx, domain, state, attempts, next, notice, data)`,
		e.ID, hb, body, e.Received, due, c.idx, c.domain, c.state, c.attempts, c.next, c.notice, c.data)
	return err
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// rcptColumns are the recipient rows of e, as arrays for unnest.
type rcptColumns struct {
	idx      []int32
	domain   []string
	state    []string
	attempts []int32
	next     []time.Time
	notice   []string
	data     []string
}

func columnsOf(e *Envelope) (*rcptColumns, error) {
	c := &rcptColumns{}
	for i, r := range e.Rcpts {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		c.idx = append(c.idx, int32(i))
		c.domain = append(c.domain, addrDomain(r.Addr))
		c.state = append(c.state, string(r.State))
		c.attempts = append(c.attempts, int32(r.Attempts))
		c.next = append(c.next, r.NextAttempt)
		c.notice = append(c.notice, string(r.Notice))
		c.data = append(c.data, string(b))
	}
	return c, nil
}

// updateRcpts writes the state of e's recipients in tx.
func updateRcpts(ctx context.Context, tx pgx.Tx, e *Envelope) error {
	c, err := columnsOf(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE queue_rcpts r SET state = u.state, attempts = u.attempts, next_attempt = u.next,
			notice = u.notice, data = u.data::json
		FROM unnest($2::int[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::text[])
			AS u(idx, state, attempts, next, notice, data)
		WHERE r.msg_id = $1 AND r.idx = u.idx`,
		e.ID, c.idx, c.state, c.attempts, c.next, c.notice, c.data)
	return err
}

// Enqueue stores body and env and returns the message ID once committed.
func (q *Postgres) Enqueue(ctx context.Context, env *Envelope, body io.Reader) (string, error) {
	if len(env.Rcpts) == 0 {
		return "", ErrNoRecipients
	}
	w, err := q.BeginMessage()
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, ctxReader{ctx, body}); err != nil {
		w.Abort()
		return "", err
	}
	return w.Commit(ctx, env)
}

// OpenMessage opens the stored message id for reading.
func (q *Postgres) OpenMessage(id string) (io.ReadCloser, error) {
	var body []byte
	err := q.pool.QueryRow(context.Background(), `SELECT body FROM queue_bodies WHERE msg_id = $1`, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// envelopeColumns are what scanEnvelopes reads: a message, its lease number and one of its
// recipients a row, ordered by message and recipient.
const envelopeColumns = `m.id, m.lease_seq, m.envelope, r.state, r.attempts, r.next_attempt, r.notice, r.data`

// load reads the envelopes of ids with their recipients (missing ones left out).
func load(ctx context.Context, db querier, ids []string) ([]*Envelope, error) {
	rows, err := db.Query(ctx, `SELECT `+envelopeColumns+` FROM queue_messages m JOIN queue_rcpts r ON r.msg_id = m.id
		WHERE m.id = ANY($1) ORDER BY m.id, r.idx`, ids)
	if err != nil {
		return nil, err
	}
	es, _, err := scanEnvelopes(rows)
	return es, err
}

// scanEnvelopes reads rows of envelopeColumns; seqs are the lease numbers by message.
func scanEnvelopes(rows pgx.Rows) ([]*Envelope, map[string]int64, error) {
	defer rows.Close()
	var out []*Envelope
	seqs := map[string]int64{}
	var e *Envelope
	for rows.Next() {
		var id, state, notice string
		var seq int64
		var attempts int
		var next time.Time
		var hb, data []byte
		if err := rows.Scan(&id, &seq, &hb, &state, &attempts, &next, &notice, &data); err != nil {
			return nil, nil, err
		}
		if e == nil || e.ID != id {
			e = &Envelope{}
			if err := json.Unmarshal(hb, e); err != nil {
				return nil, nil, fmt.Errorf("message %s: %w", id, err)
			}
			e.ID, seqs[id] = id, seq
			out = append(out, e)
		}
		r := &Recipient{}
		if err := json.Unmarshal(data, r); err != nil {
			return nil, nil, fmt.Errorf("message %s: %w", id, err)
		}
		r.State, r.Attempts, r.NextAttempt, r.Notice = State(state), attempts, next, NoticeKind(notice)
		e.Rcpts = append(e.Rcpts, r)
	}
	return out, seqs, rows.Err()
}

// Get returns the envelope of message id.
func (q *Postgres) Get(id string) (*Envelope, error) {
	es, err := load(context.Background(), q.pool, []string{id})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if len(es) == 0 {
		return nil, ErrNotFound
	}
	return es[0], nil
}

// IDs returns the IDs of the queued messages, oldest first (nil when the database cannot be
// read: the error is logged).
func (q *Postgres) IDs() []string {
	rows, err := q.pool.Query(context.Background(), `SELECT id FROM queue_messages ORDER BY id`)
	if err != nil {
		q.logger.Error("queue: list", "err", err)
		return nil
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		q.logger.Error("queue: list", "err", err)
	}
	return ids
}

// Stats returns the depth of the whole queue, every node's messages (zero counts when the
// database cannot be read). InFlight counts the messages leased to any node.
func (q *Postgres) Stats() Stats {
	var s Stats
	now := q.opts.Now()
	err := q.pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM queue_messages),
			(SELECT count(*) FROM queue_rcpts WHERE state = 'pending'),
			(SELECT count(*) FROM queue_messages WHERE lease_until > $1),
			(SELECT count(*) FROM queue_messages WHERE held)`, now).Scan(&s.Messages, &s.Recipients, &s.InFlight, &s.Held)
	if err != nil {
		q.logger.Error("queue: stats", "err", err)
	}
	s.Suspended = q.dests.count(now)
	return s
}

// Hold stops the delivery of message id until Release. An attempt in progress ends normally.
func (q *Postgres) Hold(id string) error { return q.setHeld(context.Background(), id, true) }

// Release ends the hold of message id.
func (q *Postgres) Release(id string) error { return q.unhold(context.Background(), id) }

func (q *Postgres) unhold(ctx context.Context, id string) error {
	err := q.setHeld(ctx, id, false)
	if err == nil {
		q.Kick()
		q.announce()
	}
	return err
}

func (q *Postgres) setHeld(ctx context.Context, id string, held bool) error {
	tag, err := q.pool.Exec(ctx, `UPDATE queue_messages SET held = $2 WHERE id = $1`, id, held)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// idle runs fn on message id in a transaction that holds its row, unless a node's lease on
// it is still running (ErrInFlight).
func (q *Postgres) idle(ctx context.Context, id string, fn func(tx pgx.Tx, e *Envelope) error) error {
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var until *time.Time
		err := tx.QueryRow(ctx, `SELECT lease_until FROM queue_messages WHERE id = $1 FOR UPDATE`, id).Scan(&until)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if until != nil && until.After(q.opts.Now()) {
			return ErrInFlight
		}
		es, err := load(ctx, tx, []string{id})
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return ErrNotFound
		}
		return fn(tx, es[0])
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInFlight) {
		return fmt.Errorf("queue: %w", err)
	}
	return err
}

// Retry makes the pending recipients and the waiting notices of message id due now.
func (q *Postgres) Retry(id string) error { return q.retry(context.Background(), id) }

func (q *Postgres) retry(ctx context.Context, id string) error {
	now := q.opts.Now()
	err := q.idle(ctx, id, func(tx pgx.Tx, e *Envelope) error {
		for _, r := range e.Rcpts {
			if r.State == Pending {
				r.NextAttempt = now
			}
			if r.Notice != "" {
				r.NoticeRetry = time.Time{}
			}
		}
		return q.store(ctx, tx, e)
	})
	if err == nil {
		q.Kick()
		q.announce()
	}
	return err
}

// Delete removes message id without any notice; its redelivery keys stay.
func (q *Postgres) Delete(id string) error { return q.delete(context.Background(), id) }

func (q *Postgres) delete(ctx context.Context, id string) error {
	err := q.idle(ctx, id, func(tx pgx.Tx, e *Envelope) error {
		_, err := tx.Exec(ctx, `DELETE FROM queue_messages WHERE id = $1`, id)
		return err
	})
	if err == nil {
		q.logger.Info("queue: deleted by an administrator", "id", id)
	}
	return err
}

// store writes e's recipients and due time in tx (the message row is locked or leased).
func (q *Postgres) store(ctx context.Context, tx pgx.Tx, e *Envelope) error {
	if err := updateRcpts(ctx, tx, e); err != nil {
		return err
	}
	due, ok := e.dueAt()
	var d *time.Time
	if ok {
		d = &due
	}
	_, err := tx.Exec(ctx, `UPDATE queue_messages SET due = $2 WHERE id = $1`, e.ID, d)
	return err
}
