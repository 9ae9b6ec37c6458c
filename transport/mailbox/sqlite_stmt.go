package mailbox

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// The index is reached through two kinds of connection. Writes go, one transaction at a time
// (SQLite has a single write lock anyway), through a writer: a pool of exactly one connection
// on which the statements of the frequent writes are prepared once. Reads go through a pool of
// at most readConns connections, kept open, on each of which a frequent read is prepared the
// first time it runs there. SQLite otherwise parses and plans each statement, and compiles
// the triggers it fires, at every command: half the CPU of a flag change.
//
// A statement is never prepared through the writer's pool while a transaction holds its one
// connection (database/sql would wait for that connection for ever): the writer's statements
// are prepared when the store opens, and any other statement of a write is prepared for its
// transaction alone. Likewise a read statement is prepared before the read transaction that
// uses it begins, so that a full read pool cannot wait on itself.

// readConns bounds the read pool: SQLite readers do not block each other in WAL mode, but
// beyond a few per core they only queue for the CPU, and every open connection holds its own
// page cache. Sessions waiting for a connection wait in database/sql, in order.
const readConns = 8

// Statements of the frequent reads that more than one function runs.
const (
	qModSeq   = `SELECT modseq FROM mailbox WHERE id=?`
	qExpunged = `SELECT uid FROM expunged WHERE mailbox=? AND modseq>?`
	qRecent   = `SELECT recent_uid, uidnext-1 FROM mailbox WHERE id=?`
)

// Statements of the frequent writes (a delivery, a flag change), prepared once per writer.
const (
	qBumpModSeq    = `UPDATE mailbox SET modseq=modseq+1 WHERE id=? RETURNING modseq`
	qFlagsOf       = `SELECT size, internal, flags FROM message WHERE mailbox=? AND uid=?`
	qSetFlags      = `UPDATE message SET flags=?, modseq=? WHERE mailbox=? AND uid=?`
	qKeywords      = `SELECT keywords FROM mailbox WHERE id=?`
	qSetKeywords   = `UPDATE mailbox SET keywords=? WHERE id=?`
	qDeliveryUID   = `SELECT uid FROM message WHERE mailbox=? AND delivery=?`
	qQuota         = `SELECT quota, used FROM bal WHERE address=?`
	qUseQuota      = `UPDATE bal SET used=used+? WHERE address=?`
	qNextUID       = `UPDATE mailbox SET uidnext=uidnext+1 WHERE id=? RETURNING uidnext-1, uidvalidity`
	qInsertMessage = `INSERT INTO message(mailbox,uid,blob,size,internal,flags,modseq,delivery,header) VALUES (?,?,?,?,?,?,?,?,?)`
	qPruneExpunged = `DELETE FROM expunged WHERE mailbox=? AND modseq<=?`
)

func hotWrites() []string {
	return []string{qBumpModSeq, qFlagsOf, qSetFlags, qKeywords, qSetKeywords,
		qDeliveryUID, qQuota, qUseQuota, qNextUID, qInsertMessage, qPruneExpunged}
}

// writer is one connection to the index, used under SQLite.wmu, with its prepared statements.
type writer struct {
	db    *sql.DB
	stmts map[string]*sql.Stmt
}

// openWriter opens the writer connection with the given synchronous setting and prepares the
// frequent writes on it. Its transactions take the write lock as they begin (BEGIN
// IMMEDIATE), so that a write meeting another process's write waits for it (busy_timeout)
// rather than failing when its read snapshot turns out stale.
func openWriter(ctx context.Context, index, synchronous string) (*writer, error) {
	db, err := openIndex(index, synchronous, "&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	w := &writer{db: db, stmts: map[string]*sql.Stmt{}}
	for _, q := range hotWrites() {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("mailbox: prepare: %w", err)
		}
		w.stmts[q] = st
	}
	return w, nil
}

func (w *writer) close() error {
	for _, st := range w.stmts {
		st.Close()
	}
	return w.db.Close()
}

// txStmt returns query for use in tx, the write transaction under way: the statement prepared
// once if it is a frequent write, else one prepared for tx alone. Either is closed with tx.
func (s *SQLite) txStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if s.cur != nil {
		if st := s.cur.stmts[query]; st != nil {
			return tx.StmtContext(ctx, st), nil
		}
	}
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return st, nil
}

// txExec runs query in tx, the write transaction under way (see txStmt).
func (s *SQLite) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if s.cur != nil {
		if st := s.cur.stmts[query]; st != nil {
			return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		}
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQueryRow runs query in tx, the write transaction under way (see txStmt).
func (s *SQLite) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if s.cur != nil {
		if st := s.cur.stmts[query]; st != nil {
			return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
		}
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// readStmts holds the read statements prepared on the read pool, by query.
type readStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// readStmt returns query prepared on the read pool (errors unwrapped, as database/sql's); database/sql prepares it again on each
// pool connection the first time it runs there. Not to be called while holding a pool
// connection (inside a read transaction): preparing may need one.
func (s *SQLite) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.reads.mu.Lock()
	st := s.reads.m[query]
	s.reads.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	if old := s.reads.m[query]; old != nil {
		st.Close()
		return old, nil
	}
	if s.reads.m == nil {
		s.reads.m = map[string]*sql.Stmt{}
	}
	s.reads.m[query] = st
	return st, nil
}

// query runs a frequent read through the read pool's prepared statements.
func (s *SQLite) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRow runs a frequent one-row read through the read pool's prepared statements.
func (s *SQLite) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return s.db.QueryRowContext(ctx, query, args...) // the same error, in a Row
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *SQLite) closeReads() {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	for _, st := range s.reads.m {
		st.Close()
	}
	s.reads.m = nil
}
