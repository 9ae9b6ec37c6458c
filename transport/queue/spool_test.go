package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/queue"
)

// spoolKit opens queues of one kind for the behaviour suite.
type spoolKit struct {
	name string
	open func(t *testing.T, c *testClock, sched queue.Schedule) queue.Spool
}

var spoolDB atomic.Int64

// pgDatabase creates a database of its own for a test on the server pg and returns its DSN.
func pgDatabase(t testing.TB, pg *peers.Postgres) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("q%d", spoolDB.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(pg.DSN(), "dbname=postgres", "dbname="+name, 1)
}

// spoolKits returns the file queue and, on a throw-away PostgreSQL server, the database one.
func spoolKits(t *testing.T) []spoolKit {
	file := spoolKit{"file", func(t *testing.T, c *testClock, sched queue.Schedule) queue.Spool {
		q, err := queue.Open(&queue.Options{Dir: t.TempDir(), Now: c.Now, Schedule: sched, MaxMessageBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}}
	pg := peers.StartPostgres(t, nil)
	postgres := spoolKit{"postgres", func(t *testing.T, c *testClock, sched queue.Schedule) queue.Spool {
		q, err := queue.OpenPostgres(context.Background(), pgDatabase(t, pg), &queue.PostgresOptions{Now: c.Now, Schedule: sched,
			MaxMessageBytes: 1 << 20, Poll: 20 * time.Millisecond, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}}
	return []spoolKit{file, postgres}
}

// recorded is what a run saw: deliveries per recipient and notices.
type recorded struct {
	mu        sync.Mutex
	delivered map[string]int // "id addr"
	bodies    map[string]string
	notices   []string // "kind addr"
	attempts  int
}

func (r *recorded) count(f func() int) int { r.mu.Lock(); defer r.mu.Unlock(); return f() }

// runSpool runs q with a deliverer answering each recipient from answer ("ok", "temp",
// "perm") until the test ends.
func runSpool(t *testing.T, q queue.Spool, answer func(addr string) string) *recorded {
	rec := &recorded{delivered: map[string]int{}, bodies: map[string]string{}}
	d := queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		f, err := j.Open()
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(f)
			f.Close()
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.attempts++
		var rs []queue.Result
		for _, r := range j.Rcpts {
			switch answer(r.Addr) {
			case "ok":
				rec.delivered[j.Env.ID+" "+r.Addr]++
				rec.bodies[j.Env.ID] = string(body)
				rs = append(rs, queue.Result{Status: "250 2.0.0 ok"})
			case "perm":
				rs = append(rs, queue.Result{Err: errors.New("refused"), Permanent: true, Status: "550 5.1.1 unknown"})
			default:
				rs = append(rs, queue.Result{Err: errors.New("busy"), Status: "451 4.3.0 busy"})
			}
		}
		return rs
	})
	n := queue.NotifierFunc(func(_ context.Context, env *queue.Envelope, kind queue.NoticeKind, rcpts []*queue.Recipient) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, r := range rcpts {
			rec.notices = append(rec.notices, string(kind)+" "+r.Addr)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx, d, &queue.RunOptions{Workers: 4, Notifier: n, ControlPoll: -1}) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func enqueue(t *testing.T, q queue.Spool, from, body string, rcpts ...string) string {
	t.Helper()
	e := &queue.Envelope{From: from, Source: "test"}
	for _, r := range rcpts {
		e.Rcpts = append(e.Rcpts, &queue.Recipient{Addr: r})
	}
	id, err := q.Enqueue(context.Background(), e, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var noJitter = queue.Schedule{First: time.Minute, Factor: 2, Max: time.Hour, Jitter: -1, GiveUp: 5 * 24 * time.Hour,
	DelayNotice: 4 * time.Hour}

// The semantics both queues share, through the Spool interface alone: the file queue and the
// PostgreSQL one must be interchangeable under the connector and the node.
func TestSpoolBehaviour(t *testing.T) {
	for _, kit := range spoolKits(t) {
		t.Run(kit.name, func(t *testing.T) {
			t.Run("deliver", func(t *testing.T) { testDeliver(t, kit) })
			t.Run("writer", func(t *testing.T) { testWriter(t, kit) })
			t.Run("retry and give up", func(t *testing.T) { testGiveUp(t, kit) })
			t.Run("hold and release", func(t *testing.T) { testHold(t, kit) })
			t.Run("retry and delete", func(t *testing.T) { testRetryDelete(t, kit) })
			t.Run("redelivery", func(t *testing.T) { testRedelivered(t, kit) })
		})
	}
}

// Every recipient is delivered once with the bytes committed; the message then leaves the
// queue, and a success notice goes only to a recipient that asked for one.
func testDeliver(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	e := &queue.Envelope{From: "s@a.mssante.fr", Rcpts: []*queue.Recipient{
		{Addr: "a@b.mssante.fr", Notify: []string{queue.NotifySuccess}}, {Addr: "c@d.mssante.fr"}}}
	id, err := q.Enqueue(context.Background(), e, strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := q.Get(id); err != nil || len(got.Rcpts) != 2 || got.Rcpts[0].State != queue.Pending || got.Size != 21 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if ids := q.IDs(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("IDs = %v", ids)
	}
	rec := runSpool(t, q, func(string) string { return "ok" })
	waitFor(t, "the message to leave the queue", func() bool { return q.Stats().Messages == 0 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.delivered[id+" a@b.mssante.fr"] != 1 || rec.delivered[id+" c@d.mssante.fr"] != 1 || len(rec.delivered) != 2 {
		t.Errorf("delivered = %v", rec.delivered)
	}
	if rec.bodies[id] != "Subject: x\r\n\r\nhello\r\n" {
		t.Errorf("body = %q", rec.bodies[id])
	}
	if len(rec.notices) != 1 || rec.notices[0] != "delivered a@b.mssante.fr" {
		t.Errorf("notices = %v", rec.notices)
	}
	if _, err := q.Get(id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get after delivery: %v", err)
	}
}

// A writer gives its ID before Commit, reads back what was written, stores nothing on Abort,
// refuses a message past the size limit and an envelope without recipients.
func testWriter(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	ctx := context.Background()
	w, err := q.BeginMessage()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "aborted")
	w.Abort()
	if n := len(q.IDs()); n != 0 {
		t.Fatalf("%d messages after Abort", n)
	}
	w, _ = q.BeginMessage()
	io.WriteString(w, "Subject: y\r\n\r\nbody\r\n")
	rc, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(rc)
	rc.Close()
	if string(back) != "Subject: y\r\n\r\nbody\r\n" || w.Size() != int64(len(back)) {
		t.Fatalf("Open read %q (size %d)", back, w.Size())
	}
	id, err := w.Commit(ctx, &queue.Envelope{From: "s@a.mssante.fr", Rcpts: []*queue.Recipient{{Addr: "a@b.mssante.fr"}}})
	if err != nil || id != w.ID() {
		t.Fatalf("Commit = %q, %v (ID %q)", id, err, w.ID())
	}
	f, err := q.OpenMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(stored, back) {
		t.Errorf("stored %q", stored)
	}
	w, _ = q.BeginMessage()
	if _, err := w.Write(make([]byte, 2<<20)); !errors.Is(err, queue.ErrTooLarge) {
		t.Errorf("Write past the limit: %v", err)
	}
	w.Abort()
	if _, err := q.Enqueue(ctx, &queue.Envelope{From: "s@a.mssante.fr"}, strings.NewReader("x")); !errors.Is(err, queue.ErrNoRecipients) {
		t.Errorf("Enqueue without recipients: %v", err)
	}
	if _, err := q.OpenMessage("0000000000000-0000000000000000"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("OpenMessage of an unknown ID: %v", err)
	}
}

// A temporary failure is retried on the schedule (no jitter: First, then twice as long); one
// delay notice after DelayNotice; past GiveUp the recipient fails with exactly one failure
// notice and the message leaves the queue.
func testGiveUp(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	id := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "a@b.mssante.fr")
	rec := runSpool(t, q, func(string) string { return "temp" })
	start := c.Now()
	waitFor(t, "the first attempt", func() bool {
		e, err := q.Get(id)
		return err == nil && e.Rcpts[0].Attempts == 1
	})
	e, _ := q.Get(id)
	if want := start.Add(time.Minute); !e.Rcpts[0].NextAttempt.Equal(want) || e.Rcpts[0].State != queue.Pending {
		t.Fatalf("after one failure: %+v, want next attempt %v", e.Rcpts[0], want)
	}
	c.Add(time.Minute)
	q.Kick()
	waitFor(t, "the second attempt", func() bool {
		e, err := q.Get(id)
		return err == nil && e.Rcpts[0].Attempts == 2
	})
	e, _ = q.Get(id)
	if want := start.Add(3 * time.Minute); !e.Rcpts[0].NextAttempt.Equal(want) {
		t.Fatalf("after two failures: next attempt %v, want %v", e.Rcpts[0].NextAttempt, want)
	}
	c.Add(5 * time.Hour)
	q.Kick()
	waitFor(t, "the delay notice", func() bool {
		return rec.count(func() int { return len(rec.notices) }) == 1
	})
	c.Add(5 * 24 * time.Hour)
	q.Kick()
	waitFor(t, "the message to give up", func() bool { return q.Stats().Messages == 0 })
	c.Add(24 * time.Hour)
	q.Kick()
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []string{"delayed a@b.mssante.fr", "failed a@b.mssante.fr"}; fmt.Sprint(rec.notices) != fmt.Sprint(want) {
		t.Errorf("notices = %v, want %v", rec.notices, want)
	}
	if rec.attempts != 4 {
		t.Errorf("%d attempts, want 4", rec.attempts)
	}
}

// A held message is neither attempted nor given up while held; released, it is delivered.
func testHold(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	id := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "a@b.mssante.fr")
	if err := q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if err := q.Hold("0000000000000-0000000000000000"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Hold of an unknown ID: %v", err)
	}
	rec := runSpool(t, q, func(string) string { return "ok" })
	q.Kick()
	time.Sleep(200 * time.Millisecond)
	if n := rec.count(func() int { return rec.attempts }); n != 0 || q.Stats().Held != 1 {
		t.Fatalf("%d attempts on a held message (stats %+v)", n, q.Stats())
	}
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after release", func() bool { return q.Stats().Messages == 0 })
	if n := rec.count(func() int { return rec.delivered[id+" a@b.mssante.fr"] }); n != 1 {
		t.Errorf("delivered %d times", n)
	}
}

// Retry makes a deferred recipient due at once; Delete removes a message without a notice.
func testRetryDelete(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	var ok atomic.Bool
	id := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "a@b.mssante.fr")
	other := enqueue(t, q, "s@a.mssante.fr", "y\r\n", "z@b.mssante.fr")
	rec := runSpool(t, q, func(addr string) string {
		if addr == "a@b.mssante.fr" && ok.Load() {
			return "ok"
		}
		return "temp"
	})
	waitFor(t, "the first attempts", func() bool { return rec.count(func() int { return rec.attempts }) == 2 })
	var err error
	for range 100 { // the attempt may still be storing its outcome
		if err = q.Retry(id); !errors.Is(err, queue.ErrInFlight) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok.Store(true)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after Retry", func() bool {
		return rec.count(func() int { return rec.delivered[id+" a@b.mssante.fr"] }) == 1
	})
	for range 100 {
		if err = q.Delete(other); !errors.Is(err, queue.ErrInFlight) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(other); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := q.Delete(other); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if err := q.Retry(other); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Retry after Delete: %v", err)
	}
	c.Add(10 * 24 * time.Hour)
	q.Kick()
	time.Sleep(100 * time.Millisecond)
	if n := rec.count(func() int { return len(rec.notices) }); n != 0 {
		t.Errorf("%d notices after Delete", n)
	}
	if s := q.Stats(); s.Messages != 0 {
		t.Errorf("stats after Delete: %+v", s)
	}
}

// A message handed over again with the same RedeliveryKey is committed once per recipient.
func testRedelivered(t *testing.T, kit spoolKit) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := kit.open(t, c, noJitter)
	put := func(rcpts ...string) (string, []queue.Redelivered, error) {
		w, err := q.BeginMessage()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "Message-ID: <1@a.mssante.fr>\r\n\r\nbody\r\n")
		e := &queue.Envelope{From: "s@a.mssante.fr", RedeliveryKey: "k1"}
		for _, r := range rcpts {
			e.Rcpts = append(e.Rcpts, &queue.Recipient{Addr: r})
		}
		id, err := w.Commit(context.Background(), e)
		return id, w.Redelivered(), err
	}
	first, dups, err := put("a@b.mssante.fr")
	if err != nil || len(dups) != 0 {
		t.Fatalf("first: %v %v", dups, err)
	}
	_, dups, err = put("A@b.mssante.fr")
	if !errors.Is(err, queue.ErrRedelivered) || len(dups) != 1 || dups[0].ID != first {
		t.Fatalf("again: %v %v", dups, err)
	}
	second, dups, err := put("a@b.mssante.fr", "c@b.mssante.fr")
	if err != nil || len(dups) != 1 {
		t.Fatalf("with a new recipient: %v %v", dups, err)
	}
	if e, _ := q.Get(second); len(e.Rcpts) != 1 || e.Rcpts[0].Addr != "c@b.mssante.fr" {
		t.Errorf("stored recipients %+v", e.Rcpts)
	}
}
