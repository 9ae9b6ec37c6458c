package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)} }

func openQ(t *testing.T, dir string, c *clock) *Queue {
	t.Helper()
	q, err := Open(&Options{Dir: dir, Now: c.Now, Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	q.waitLoaded(context.Background()) // the tests below look at the state once read
	return q
}

type notice struct {
	kind  NoticeKind
	rcpts []string
}

type recorder struct {
	mu      sync.Mutex
	notices []notice
}

func (n *recorder) Notify(_ context.Context, env *Envelope, kind NoticeKind, rcpts []*Recipient) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var rs []string
	for _, r := range rcpts {
		rs = append(rs, r.Addr)
	}
	n.notices = append(n.notices, notice{kind, rs})
	return nil
}

func env(from string, rcpts ...string) *Envelope {
	e := &Envelope{From: from, Source: "test"}
	for _, r := range rcpts {
		e.Rcpts = append(e.Rcpts, &Recipient{Addr: r})
	}
	return e
}

// outcome returns a deliverer that answers per recipient from a table ("ok", "temp", "perm").
func outcome(m map[string]string, got *[]string) Deliverer {
	var mu sync.Mutex
	return DelivererFunc(func(ctx context.Context, j *Job) []Result {
		f, err := j.Open()
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(f)
		f.Close()
		var rs []Result
		for _, r := range j.Rcpts {
			mu.Lock()
			*got = append(*got, r.Addr+":"+string(body))
			mu.Unlock()
			switch m[r.Addr] {
			case "ok":
				rs = append(rs, Result{Status: "250 2.0.0 ok"})
			case "perm":
				rs = append(rs, Result{Err: errors.New("refused"), Permanent: true, Status: "550 5.7.1 refused"})
			default:
				rs = append(rs, Result{Err: errors.New("busy"), Status: "451 4.4.1 busy"})
			}
		}
		return rs
	})
}

func TestEnqueueIsDurableAndResumes(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	id, err := q.Enqueue(context.Background(), env("a@x.fr", "b@y.fr"), strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", id)); err != nil {
		t.Fatalf("not stored: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "env", id+".json")); !os.IsNotExist(err) {
		t.Fatalf("state file written on the path to 250: %v", err)
	}
	// Debris of a crash before 250: a state update never renamed, a message without trailer.
	os.WriteFile(filepath.Join(dir, "tmp", "junk"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "data", "0000000000000-dead"), []byte("Subject: x\r\n\r\nhalf a mess"), 0o600)
	q.Close()

	q2 := openQ(t, dir, c)
	if s := q2.Stats(); s.Messages != 1 || s.Recipients != 1 {
		t.Fatalf("after reopen: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "0000000000000-dead")); !os.IsNotExist(err) {
		t.Fatal("orphan data file kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "junk")); !os.IsNotExist(err) {
		t.Fatal("tmp file kept")
	}
	var got []string
	if n := q2.RunOnce(context.Background(), outcome(map[string]string{"b@y.fr": "ok"}, &got), nil); n != 1 {
		t.Fatalf("RunOnce = %d", n)
	}
	if len(got) != 1 || got[0] != "b@y.fr:hello" {
		t.Fatalf("delivered %q", got)
	}
	if s := q2.Stats(); s.Messages != 0 {
		t.Fatalf("message not removed: %+v", s)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "data")); len(ents) != 0 {
		t.Fatalf("spool not empty: %v", ents)
	}
}

func TestRetryScheduleAndNotices(t *testing.T) {
	c := newClock()
	q := openQ(t, t.TempDir(), c)
	n := &recorder{}
	e := env("a@x.fr", "ok@y.fr", "perm@y.fr", "temp@y.fr", "never@y.fr", "succ@y.fr")
	e.Rcpts[3].Notify = []string{NotifyNever}
	e.Rcpts[4].Notify = []string{NotifySuccess}
	if _, err := q.Enqueue(context.Background(), e, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	table := map[string]string{"ok@y.fr": "ok", "perm@y.fr": "perm", "never@y.fr": "temp", "succ@y.fr": "ok"}
	var got []string
	d := outcome(table, &got)
	opts := &RunOptions{Notifier: n}
	ctx := context.Background()
	q.RunOnce(ctx, d, opts)
	if len(got) != 5 {
		t.Fatalf("first attempt: %v", got)
	}
	// ok@ default NOTIFY: no success notice; perm@: failure; succ@: success.
	want := []notice{{NoticeFailed, []string{"perm@y.fr"}}, {NoticeDelivered, []string{"succ@y.fr"}}}
	if !equalNotices(n.notices, want) {
		t.Fatalf("notices %v, want %v", n.notices, want)
	}
	// Nothing is due before the backoff (1 min ±20 %, here exactly 1 min with Rand=0.5).
	got = nil
	c.Add(59 * time.Second)
	if q.RunOnce(ctx, d, opts); len(got) != 0 {
		t.Fatalf("retried too early: %v", got)
	}
	c.Add(time.Second)
	if q.RunOnce(ctx, d, opts); len(got) != 2 {
		t.Fatalf("retry: %v", got)
	}
	r, _ := q.Get(firstID(q))
	if r.Rcpts[2].Attempts != 2 || !r.Rcpts[2].NextAttempt.Equal(c.Now().Add(2*time.Minute)) {
		t.Fatalf("backoff: %+v", r.Rcpts[2])
	}
	// Run until past 4 h: exactly one delay notice for temp@ (never@ asked for none).
	for c.Now().Sub(r.Received) < 5*time.Hour {
		c.Add(time.Hour)
		q.RunOnce(ctx, d, opts)
	}
	want = append(want, notice{NoticeDelayed, []string{"temp@y.fr"}})
	if !equalNotices(n.notices, want) {
		t.Fatalf("notices %v, want %v", n.notices, want)
	}
	// Past 5 days: both fail, only temp@ gets a failure notice, then the message is gone.
	for i := 0; i < 5*24 && q.Stats().Messages > 0; i++ {
		c.Add(time.Hour)
		q.RunOnce(ctx, d, opts)
	}
	want = append(want, notice{NoticeFailed, []string{"temp@y.fr"}})
	if !equalNotices(n.notices, want) {
		t.Fatalf("notices %v, want %v", n.notices, want)
	}
	if q.Stats().Messages != 0 {
		t.Fatal("message not given up after 5 days")
	}
}

func firstID(q *Queue) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id := range q.msgs {
		return id
	}
	return ""
}

func equalNotices(a, b []notice) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].kind != b[i].kind || strings.Join(a[i].rcpts, ",") != strings.Join(b[i].rcpts, ",") {
			return false
		}
	}
	return true
}

func TestNullSenderGetsNoNotice(t *testing.T) {
	c := newClock()
	q := openQ(t, t.TempDir(), c)
	n := &recorder{}
	q.Enqueue(context.Background(), env("", "x@y.fr"), strings.NewReader("dsn"))
	var got []string
	q.RunOnce(context.Background(), outcome(map[string]string{"x@y.fr": "perm"}, &got), &RunOptions{Notifier: n})
	if len(n.notices) != 0 || q.Stats().Messages != 0 {
		t.Fatalf("notices %v, stats %+v", n.notices, q.Stats())
	}
}

// A notice whose Notifier fails is kept across a restart and offered again, once.
func TestNoticeSurvivesRestart(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	q.Enqueue(context.Background(), env("a@x.fr", "x@y.fr"), strings.NewReader("m"))
	var got []string
	d := outcome(map[string]string{"x@y.fr": "perm"}, &got)
	failing := NotifierFunc(func(context.Context, *Envelope, NoticeKind, []*Recipient) error { return errors.New("down") })
	q.RunOnce(context.Background(), d, &RunOptions{Notifier: failing})
	q.Close()

	q2 := openQ(t, dir, c)
	n := &recorder{}
	c.Add(time.Minute)
	q2.RunOnce(context.Background(), d, &RunOptions{Notifier: n})
	q2.RunOnce(context.Background(), d, &RunOptions{Notifier: n})
	if len(got) != 1 {
		t.Fatalf("redelivered a final recipient: %v", got)
	}
	if !equalNotices(n.notices, []notice{{NoticeFailed, []string{"x@y.fr"}}}) || q2.Stats().Messages != 0 {
		t.Fatalf("notices %v, stats %+v", n.notices, q2.Stats())
	}
}

func TestEnqueueLimits(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(&Options{Dir: dir, MaxMessageBytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Enqueue(context.Background(), env("a@x.fr", "b@y.fr"), strings.NewReader("12345")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, err := q.Enqueue(context.Background(), env("a@x.fr"), strings.NewReader("1")); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "data")); len(ents) != 0 {
		t.Fatal("refused message left on disk")
	}
	if _, err := Open(nil); err == nil {
		t.Fatal("Open(nil) succeeded")
	}
}

func TestCorruptState(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	ctx := context.Background()
	id, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m"))
	id2, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m2"))
	var got []string
	q.RunOnce(ctx, outcome(map[string]string{}, &got), nil) // temporary failures: state files written
	q.Close()
	os.Remove(filepath.Join(dir, indexName)) // as after a crash, which leaves no index
	// A tampered state file is kept aside; the state committed with the message is used.
	os.WriteFile(filepath.Join(dir, "env", id+".json"), []byte("{not json"), 0o600)
	// A truncated data file (its trailer gone) is not a committed message.
	b, _ := os.ReadFile(filepath.Join(dir, "data", id2))
	os.WriteFile(filepath.Join(dir, "data", id2), b[:len(b)-3], 0o600)
	q2 := openQ(t, dir, c)
	if ids := q2.IDs(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("loaded %v", ids)
	}
	if e, _ := q2.Get(id); e.Rcpts[0].Attempts != 0 || e.Size != 1 {
		t.Fatalf("fallback state %+v", e.Rcpts[0])
	}
	if _, err := os.Stat(filepath.Join(dir, "env", id+".json.bad")); err != nil {
		t.Fatal("tampered state not kept aside")
	}
	if _, err := os.Stat(filepath.Join(dir, "env", id2+".json")); !os.IsNotExist(err) {
		t.Fatal("state of a removed message kept")
	}
}

func TestRunDeliversConcurrently(t *testing.T) {
	q, err := Open(&Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	const n = 50
	d := DelivererFunc(func(_ context.Context, j *Job) []Result {
		mu.Lock()
		seen[j.Env.ID]++
		if len(seen) == n {
			close(all)
		}
		mu.Unlock()
		return []Result{{}}
	})
	done := make(chan error)
	go func() { done <- q.Run(ctx, d, &RunOptions{Workers: 4}) }()
	for i := 0; i < n; i++ {
		if _, err := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("not all delivered")
	}
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run = %v", err)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("%s delivered %d times", id, k)
		}
	}
}

func TestBackoff(t *testing.T) {
	s := Schedule{}
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour} {
		if got := s.Backoff(i + 1); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, want)
		}
	}
	if got := s.Backoff(10000); got != time.Hour {
		t.Errorf("Backoff(10000) = %v", got)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	q, err := Open(&Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("x", 10240)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := q.Enqueue(context.Background(), env("a@x.fr", "b@y.fr"), strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}
