package queue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// it (ErrInFlight). When A's lease is taken from it (expired, as when A stalls), the message
// is attempted again (by B, or by A itself) and delivered, and A's late permanent failure is
// dropped: one final state, no failure notice.
func TestPostgresLeases(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	a := openPG(t, dsn, "a", 20*time.Millisecond)
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
	ok := []queue.Result{{Status: "250 2.0.0 ok"}}
	runNode(t, a, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		if aCalls.Add(1) > 1 {
			return ok
		}
		close(started)
		select {
		case <-finish:
		case <-time.After(30 * time.Second):
		}
		return []queue.Result{{Err: errors.New("refused"), Permanent: true, Status: "550 5.1.1 unknown"}}
	}), note)
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("node A did not attempt the message")
	}
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
		return ok
	}), note)
	waitFor(t, "the message delivered", func() bool { return b.Stats().Messages == 0 })
	close(finish)
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if n := aCalls.Load() + bCalls.Load(); n != 2 {
		t.Errorf("attempts: A %d, B %d; want the stalled one and one more", aCalls.Load(), bCalls.Load())
	}
	if len(notices) != 0 {
		t.Errorf("notices %v: the success asked for none, A's late failure must not raise one", notices)
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

// Close during an attempt waits for its outcome to be stored: another node then finds the
// message delivered, not leased to a node that is gone.
func TestPostgresCloseWaitsForAttempts(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	a := openPG(t, dsn, "a", 20*time.Millisecond)
	b := openPG(t, dsn, "b", 20*time.Millisecond)
	id := enqueue(t, a, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
	started, finish := make(chan struct{}), make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- a.Run(context.Background(), queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
			close(started)
			<-finish
			return []queue.Result{{Status: "250 2.0.0 ok"}}
		}), nil)
	}()
	<-started
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned during an attempt")
	case <-time.After(200 * time.Millisecond):
	}
	close(finish)
	<-closed
	if err := <-ran; !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if _, err := b.Get(id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("message after A closed: %v; want delivered", err)
	}
}

// A message committed on node A is leased at once by node B, whose poll is an hour away: A
// announces it (NOTIFY) and B listens. When B's listening connection is cut, B listens again
// and the next message still reaches it without a poll.
func TestPostgresNotifyWakesOtherNode(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	a := openPG(t, dsn, "a", time.Hour)
	b := openPG(t, dsn, "b", time.Hour)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// listeners counts the sessions listening on the queue's channel.
	listeners := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN "mssante_queue"'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	got := make(chan string, 4)
	runNode(t, b, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		got <- j.Env.ID
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}), nil)
	waitFor(t, "node B listening", func() bool { return listeners() == 1 })
	// B's Run looked once at start and found nothing; it sleeps until its hour-long poll.
	time.Sleep(100 * time.Millisecond)
	for round := range 2 {
		id := enqueue(t, a, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
		select {
		case d := <-got:
			if d != id {
				t.Fatalf("round %d: B delivered %s, want %s", round, d, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: B did not take the message that A committed", round)
		}
		if round == 0 {
			if _, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND query = 'LISTEN "mssante_queue"'`); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "node B's listener gone", func() bool { return listeners() == 0 })
			waitFor(t, "node B listening again", func() bool { return listeners() == 1 })
		}
	}
	waitFor(t, "the queue empty", func() bool { return b.Stats().Messages == 0 })
}

// Sixteen commits of one RedeliveryKey on two nodes at once, their common recipients listed in
// either order: each recipient is committed by exactly one of them, and the others learn
// which message holds it; none fails (no deadlock between the keys). Past the window the key
// is free again.
func TestPostgresRedeliveryConcurrent(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	open := func(node string) *queue.Postgres {
		q, err := queue.OpenPostgres(context.Background(), dsn, &queue.PostgresOptions{Node: node, Now: now,
			RedeliveryWindow: time.Hour, MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	nodes := []*queue.Postgres{open("a"), open("b")}
	commit := func(q *queue.Postgres, rcpts ...string) (string, []queue.Redelivered, error) {
		w, err := q.BeginMessage()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "Message-ID: <1@a.mssante.fr>\r\n\r\nbody\r\n")
		e := &queue.Envelope{From: "s@a.mssante.fr", RedeliveryKey: "<1@a.mssante.fr>"}
		for _, r := range rcpts {
			e.Rcpts = append(e.Rcpts, &queue.Recipient{Addr: r})
		}
		id, err := w.Commit(context.Background(), e)
		return id, w.Redelivered(), err
	}
	type outcome struct {
		id   string
		dups []queue.Redelivered
		err  error
	}
	outs := make([]outcome, 16)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			rcpts := []string{"x@b.mssante.fr", "y@b.mssante.fr", fmt.Sprintf("own%d@b.mssante.fr", i)}
			if i%2 == 1 {
				rcpts[0], rcpts[1] = rcpts[1], rcpts[0]
			}
			id, dups, err := commit(nodes[i%2], rcpts...)
			outs[i] = outcome{id, dups, err}
		})
	}
	wg.Wait()
	holder := map[string]string{} // common recipient → message committing it
	for i, o := range outs {
		if o.err != nil {
			t.Fatalf("commit %d: %v", i, o.err)
		}
		e, err := nodes[0].Get(o.id)
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		for _, r := range e.Rcpts {
			if strings.HasPrefix(r.Addr, "own") {
				continue
			}
			if h, ok := holder[r.Addr]; ok {
				t.Errorf("%s committed by %s and %s", r.Addr, h, o.id)
			}
			holder[r.Addr] = o.id
		}
		if len(e.Rcpts)+len(o.dups) != 3 {
			t.Errorf("commit %d: %d recipients stored, %d redelivered; want 3 in all", i, len(e.Rcpts), len(o.dups))
		}
	}
	for i, o := range outs {
		for _, d := range o.dups {
			if holder[d.Addr] != d.ID {
				t.Errorf("commit %d: %s redelivered as %s, committed by %s", i, d.Addr, d.ID, holder[d.Addr])
			}
		}
	}
	if len(holder) != 2 {
		t.Fatalf("common recipients committed: %v", holder)
	}
	if _, dups, err := commit(nodes[1], "x@b.mssante.fr"); !errors.Is(err, queue.ErrRedelivered) || len(dups) != 1 {
		t.Errorf("again within the window: %v %v", dups, err)
	}
	clock.Add(int64(2 * time.Hour))
	if id, dups, err := commit(nodes[1], "x@b.mssante.fr"); err != nil || len(dups) != 0 || id == holder["x@b.mssante.fr"] {
		t.Errorf("past the window: %s %v %v; want a new message", id, dups, err)
	}
}

// With one worker, a message whose every recipient is final gives the worker to the next one
// while its removal waits for its commit: here another session holds the first message's
// row, so that its removal waits, and the second message is delivered meanwhile; once the row
// is free the first is removed too.
func TestPostgresRemovalFreesWorker(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	q := openPG(t, dsn, "a", time.Hour)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	first := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
	second := enqueue(t, q, "s@a.mssante.fr", "y\r\n", "r@b.mssante.fr")
	got := make(chan string, 2)
	run := func(c context.Context, j *queue.Job) []queue.Result {
		if j.Env.ID == first {
			if _, err := tx.Exec(ctx, `SELECT 1 FROM queue_messages WHERE id = $1 FOR UPDATE`, first); err != nil {
				t.Error(err)
			}
		}
		got <- j.Env.ID
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(rctx, queue.DelivererFunc(run), &queue.RunOptions{Workers: 1})
	}()
	defer func() { cancel(); <-done }()
	for _, want := range []string{first, second} {
		select {
		case id := <-got:
			if id != want {
				t.Fatalf("delivered %s, want %s", id, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s not delivered while the removal of %s waits", want, first)
		}
	}
	if _, err := q.Get(first); err != nil {
		t.Fatalf("the first message, its row held: %v; want it still there", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both messages removed", func() bool { return q.Stats().Messages == 0 })
}
