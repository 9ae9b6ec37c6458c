package queue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/pgschema"
	"github.com/mssante-go/sdk/transport/queue"
)

func openPG(t *testing.T, dsn, node string, poll time.Duration) *queue.Postgres {
	t.Helper()
	q, err := queue.OpenPostgres(context.Background(), dsn, &queue.PostgresOptions{Node: node, Poll: poll, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runNode runs q with d until the test ends.
func runNode(t *testing.T, q queue.Spool, d queue.Deliverer, n queue.Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx, d, &queue.RunOptions{Workers: 2, Notifier: n}) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Two nodes: while node A attempts a message, node B may hold it but neither retry nor delete
// it (ErrInFlight). When A's lease is taken from it (expired, as when A stalls), B delivers
// the message and A's late outcome is dropped: one final state, one notice.
func TestPostgresLeases(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	// A does not poll: it takes the message when it is committed, then stalls in its
	// attempt, and does not come back for it.
	a := openPG(t, dsn, "a", time.Hour)
	b := openPG(t, dsn, "b", 20*time.Millisecond)
	if a.Node() != "a" {
		t.Fatalf("Node = %q", a.Node())
	}
	id := enqueue(t, a, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
	started, finish := make(chan struct{}), make(chan struct{})
	var aCalls, bCalls atomic.Int32
	var mu sync.Mutex
	var notices []string
	note := queue.NotifierFunc(func(_ context.Context, env *queue.Envelope, kind queue.NoticeKind, rs []*queue.Recipient) error {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, string(kind))
		return nil
	})
	runNode(t, a, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		if aCalls.Add(1) == 1 {
			close(started)
		}
		<-finish
		return []queue.Result{{Err: errors.New("refused"), Permanent: true, Status: "550 5.1.1 unknown"}}
	}), note)
	<-started
	if err := b.Retry(id); !errors.Is(err, queue.ErrInFlight) {
		t.Errorf("Retry during A's attempt: %v", err)
	}
	if err := b.Delete(id); !errors.Is(err, queue.ErrInFlight) {
		t.Errorf("Delete during A's attempt: %v", err)
	}
	if s := b.Stats(); s.InFlight != 1 || s.Messages != 1 || s.Recipients != 1 {
		t.Errorf("Stats during A's attempt: %+v", s)
	}
	// A stalls past its lease.
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `UPDATE queue_messages SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	runNode(t, b, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		bCalls.Add(1)
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}), note)
	t0 := time.Now()
	waitFor(t, "B to deliver", func() bool { return b.Stats().Messages == 0 })
	t.Logf("B delivered in %v", time.Since(t0))
	close(finish)
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if aCalls.Load() != 1 || bCalls.Load() != 1 {
		t.Errorf("attempts: A %d, B %d", aCalls.Load(), bCalls.Load())
	}
	if len(notices) != 0 {
		t.Errorf("notices %v: B's success asked for none, A's late failure must not raise one", notices)
	}
	if _, err := a.Get(id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get after delivery: %v", err)
	}
}

// A closed queue refuses new messages; a database migrated by a newer program is refused at
// open; a DSN that names no server fails at open.
func TestPostgresRefusals(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	q := openPG(t, dsn, "a", time.Second)
	q.Close()
	if _, err := q.BeginMessage(); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("BeginMessage after Close: %v", err)
	}
	if err := q.Run(context.Background(), queue.DelivererFunc(nil), nil); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `INSERT INTO mssante_schema (component, version, name) VALUES ('queue', 99, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.OpenPostgres(context.Background(), dsn, nil); !errors.Is(err, pgschema.ErrNewer) {
		t.Errorf("OpenPostgres of a newer schema: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := queue.OpenPostgres(ctx, "host=/nonexistent user=postgres dbname=postgres", nil); err == nil ||
		!strings.HasPrefix(err.Error(), "queue: postgres:") {
		t.Errorf("OpenPostgres without a server: %v", err)
	}
	if _, err := queue.OpenPostgres(ctx, "not a dsn ===", nil); err == nil {
		t.Error("OpenPostgres of a malformed DSN succeeded")
	}
}
