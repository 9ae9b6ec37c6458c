// Package pgschema applies the versioned, embedded schema migrations of the PostgreSQL
// stores: one node at a time (a session-level advisory lock), each migration in its own
// transaction, and never against a database that a newer binary already migrated.
//
// A component (the mailbox store, the queue) keeps its migrations as files named
// NNNN_what.sql in an embedded folder; the versions applied are rows of the table
// mssante_schema (component, version, name, applied_at).
package pgschema

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNewer is wrapped by Migrate and Check when the database holds a version of the
// component that this binary does not know: it was migrated by a newer release, and an older
// one must not write to it.
var ErrNewer = errors.New("pgschema: the database schema is newer than this program")

// Migration is one step of a component's schema.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads the migrations of dir in fsys: files NNNN_name.sql, versions from 1 without a
// gap, so that a missing file is an error here and not a half-built database.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("pgschema: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgschema: %s: want NNNN_name.sql", e.Name())
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("pgschema: %w", err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(data)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("pgschema: %s: migration %d is missing or doubled (found %d)", dir, i+1, m.Version)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pgschema: %s: no migration", dir)
	}
	return out, nil
}

// Status is where a component's schema stands in a database.
type Status struct {
	Component string
	Current   int // the highest version applied, 0 for none
	Latest    int // the highest version this program knows
}

// Pending reports whether migrations remain to apply.
func (s Status) Pending() bool { return s.Current < s.Latest }

const createTable = `CREATE TABLE IF NOT EXISTS mssante_schema (
	component  text        NOT NULL,
	version    integer     NOT NULL,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (component, version))`

// lockKey is the advisory lock key of a component: a 63-bit hash of its name under a fixed
// prefix, so that two components migrate side by side and nothing else is likely to collide.
func lockKey(component string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mssante-schema/" + component))
	return int64(h.Sum64() >> 1)
}

// Check returns the status of component without changing the database (the table of
// versions may not exist yet: then Current is 0). It wraps ErrNewer when the database is
// ahead of migs.
func Check(ctx context.Context, pool *pgxpool.Pool, component string, migs []Migration) (Status, error) {
	st := Status{Component: component, Latest: latest(migs)}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('mssante_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return st, fmt.Errorf("pgschema: %w", err)
	}
	if !exists {
		return st, nil
	}
	cur, err := current(ctx, pool, component)
	if err != nil {
		return st, err
	}
	st.Current = cur
	if cur > st.Latest {
		return st, fmt.Errorf("%w: %s is at version %d, this program knows up to %d", ErrNewer, component, cur, st.Latest)
	}
	return st, nil
}

// Migrate applies the migrations of component that the database lacks, each in its own
// transaction, holding the component's advisory lock so that nodes starting together apply
// them once. It returns the status after, and how many it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, migs []Migration) (Status, int, error) {
	st := Status{Component: component, Latest: latest(migs)}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return st, 0, fmt.Errorf("pgschema: %w", err)
	}
	defer conn.Release()
	key := lockKey(component)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return st, 0, fmt.Errorf("pgschema: waiting for the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return st, 0, fmt.Errorf("pgschema: %w", err)
	}
	cur, err := current(ctx, conn, component)
	if err != nil {
		return st, 0, err
	}
	st.Current = cur
	if cur > st.Latest {
		return st, 0, fmt.Errorf("%w: %s is at version %d, this program knows up to %d", ErrNewer, component, cur, st.Latest)
	}
	n := 0
	for _, m := range migs[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO mssante_schema (component, version, name) VALUES ($1, $2, $3)`,
				component, m.Version, m.Name)
			return err
		})
		if err != nil {
			return st, n, fmt.Errorf("pgschema: %s migration %d (%s): %w", component, m.Version, m.Name, err)
		}
		st.Current, n = m.Version, n+1
	}
	return st, n, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func current(ctx context.Context, q querier, component string) (int, error) {
	var v int
	if err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM mssante_schema WHERE component = $1`, component).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgschema: %w", err)
	}
	return v, nil
}

func latest(migs []Migration) int {
	if len(migs) == 0 {
		return 0
	}
	return migs[len(migs)-1].Version
}
