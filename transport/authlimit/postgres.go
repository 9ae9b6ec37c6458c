package authlimit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/pgschema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// PostgresOptions configure NewPostgres. Zero fields take the documented defaults.
type PostgresOptions struct {
	// Timeout bounds each query (default 2 s): past it the attempt is refused with
	// ErrUnavailable rather than held.
	Timeout time.Duration
	// SweepInterval is how often a node deletes the counts past the window (default 1 min).
	SweepInterval time.Duration
}

// Postgres keeps the failure counters in PostgreSQL (the table authlimit_failures), shared
// by every node whose [Limiter] uses it: a failure on one node brakes and locks the same
// account and address on the others at once. Each count is one row keyed by the SHA-256 of
// the key, updated by one atomic upsert, and the rows past the window are swept.
//
// It fails closed: when the database does not answer within Timeout, Get and Add return
// the error, and the Limiter refuses the attempt with ErrUnavailable (a temporary refusal,
// the connection closed) rather than let a guesser try uncounted.
//
// The nodes share one window: their clocks must agree within a small part of it (NTP).
type Postgres struct {
	pool *pgxpool.Pool
	opts PostgresOptions

	mu        sync.Mutex
	lastSweep time.Time
}

// NewPostgres returns the counters in the database of pool, after applying the schema
// migrations of the component "authlimit" that it lacks (one node at a time). It refuses a
// database migrated by a newer release (wrapping the error of internal/pgschema).
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, opts *PostgresOptions) (*Postgres, error) {
	p := &Postgres{pool: pool}
	if opts != nil {
		p.opts = *opts
	}
	if p.opts.Timeout <= 0 {
		p.opts.Timeout = 2 * time.Second
	}
	if p.opts.SweepInterval <= 0 {
		p.opts.SweepInterval = time.Minute
	}
	migs, err := pgschema.Load(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("authlimit: %w", err)
	}
	if _, _, err := pgschema.Migrate(ctx, pool, "authlimit", migs); err != nil {
		return nil, fmt.Errorf("authlimit: %w", err)
	}
	return p, nil
}

// hashes returns the row keys of keys, sorted so that concurrent upserts lock rows in one
// order and cannot deadlock; index maps each back to its place in keys.
func hashes(keys []string) (sorted [][]byte, index map[string]int) {
	index = make(map[string]int, len(keys))
	for i, k := range keys {
		h := sha256.Sum256([]byte(k))
		sorted = append(sorted, h[:])
		index[string(h[:])] = i
	}
	slices.SortFunc(sorted, bytes.Compare)
	return sorted, index
}

// Get implements Counters.
func (p *Postgres) Get(ctx context.Context, keys []string, since time.Time) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	hs, index := hashes(keys)
	rows, err := p.pool.Query(ctx, `SELECT key, n FROM authlimit_failures WHERE key = ANY($1) AND last > $2`, hs, since)
	if err != nil {
		return nil, fmt.Errorf("authlimit: %w", err)
	}
	defer rows.Close()
	out := make([]int, len(keys))
	for rows.Next() {
		var h []byte
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			return nil, fmt.Errorf("authlimit: %w", err)
		}
		if i, ok := index[string(h)]; ok {
			out[i] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("authlimit: %w", err)
	}
	return out, nil
}

// maxCount caps a count: past the lockouts its size no longer matters.
const maxCount = 1 << 30

// Add implements Counters: one statement counts the failure on every key, starting again
// at one a count whose last failure is not after since; the last failure only moves forward,
// whatever the clock of the node that writes.
func (p *Postgres) Add(ctx context.Context, keys []string, now, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	hs, _ := hashes(keys)
	_, err := p.pool.Exec(ctx, `INSERT INTO authlimit_failures AS f (key, n, last)
		SELECT k, 1, $2 FROM unnest($1::bytea[]) AS k ORDER BY k
		ON CONFLICT (key) DO UPDATE SET
			n = CASE WHEN f.last > $3 THEN least(f.n + 1, $4) ELSE 1 END,
			last = greatest(f.last, $2)`, hs, now, since, maxCount)
	if err != nil {
		return fmt.Errorf("authlimit: %w", err)
	}
	p.sweep(ctx, now, since)
	return nil
}

// sweep deletes the rows past the window, at most once per SweepInterval on this node. A
// failed sweep is retried at the next interval: the rows it leaves count for nothing.
func (p *Postgres) sweep(ctx context.Context, now, since time.Time) {
	p.mu.Lock()
	due := now.Sub(p.lastSweep) >= p.opts.SweepInterval
	if due {
		p.lastSweep = now
	}
	p.mu.Unlock()
	if due {
		p.pool.Exec(ctx, `DELETE FROM authlimit_failures WHERE last <= $1`, since)
	}
}

// Delete implements Counters.
func (p *Postgres) Delete(ctx context.Context, keys []string) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	hs, _ := hashes(keys)
	if _, err := p.pool.Exec(ctx, `DELETE FROM authlimit_failures WHERE key = ANY($1)`, hs); err != nil {
		return fmt.Errorf("authlimit: %w", err)
	}
	return nil
}

// Rows returns the number of counts stored, live or not yet swept (for tests and metrics).
func (p *Postgres) Rows(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM authlimit_failures`).Scan(&n); err != nil {
		return 0, fmt.Errorf("authlimit: %w", err)
	}
	return n, nil
}
