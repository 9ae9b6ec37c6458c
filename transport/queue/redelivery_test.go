package queue_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/queue"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openRedelivery(t *testing.T, dir string, c *testClock, window time.Duration, max int) *queue.Queue {
	t.Helper()
	q, err := queue.Open(&queue.Options{Dir: dir, Now: c.Now, RedeliveryWindow: window, RedeliveryMax: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// commit stores a message with key and rcpts; it returns the ID (or "") and what was left out.
func commit(t *testing.T, q *queue.Queue, key string, rcpts ...string) (string, []queue.Redelivered, error) {
	t.Helper()
	w, err := q.Begin()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Message-ID: <1@a.mssante.fr>\r\n\r\nbody\r\n"))
	env := &queue.Envelope{From: "s@a.mssante.fr", RedeliveryKey: key}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, &queue.Recipient{Addr: r})
	}
	id, err := w.Commit(context.Background(), env)
	return id, w.Redelivered(), err
}

var deliverAll = queue.DelivererFunc(func(_ context.Context, j *queue.Job) []queue.Result {
	return make([]queue.Result, len(j.Rcpts))
})

// The same message handed over again is committed once per recipient: in full (nothing
// stored, ErrRedelivered), in part (only the new recipients), while the first copy waits in
// the spool and after it left it, across restarts; other keys and messages without a key are
// not affected.
func TestRedelivery(t *testing.T) {
	dir := t.TempDir()
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := openRedelivery(t, dir, c, 0, 0)
	id1, dup, err := commit(t, q, "K1", "a@b.mssante.fr", "b@b.mssante.fr")
	if err != nil || dup != nil {
		t.Fatalf("first commit: %v %v", err, dup)
	}
	_, dup, err = commit(t, q, "K1", "B@b.mssante.fr", "a@b.mssante.fr")
	if !errors.Is(err, queue.ErrRedelivered) || !reflect.DeepEqual(dup, []queue.Redelivered{{"B@b.mssante.fr", id1}, {"a@b.mssante.fr", id1}}) {
		t.Fatalf("redelivery: %v %v", err, dup)
	}
	id2, dup, err := commit(t, q, "K1", "b@b.mssante.fr", "c@b.mssante.fr")
	if err != nil || !reflect.DeepEqual(dup, []queue.Redelivered{{"b@b.mssante.fr", id1}}) {
		t.Fatalf("partial redelivery: %v %v", err, dup)
	}
	if e, _ := q.Get(id2); len(e.Rcpts) != 1 || e.Rcpts[0].Addr != "c@b.mssante.fr" {
		t.Fatalf("partial redelivery stored %+v", e.Rcpts)
	}
	for _, key := range []string{"K2", "", ""} {
		if _, _, err := commit(t, q, key, "a@b.mssante.fr"); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
	}
	if n := len(q.IDs()); n != 5 {
		t.Fatalf("%d messages in the spool, want 5", n)
	}

	// After a restart, the first copy still in the spool.
	q.Close()
	c.Add(time.Hour)
	q = openRedelivery(t, dir, c, 0, 0)
	if _, _, err := commit(t, q, "K1", "c@b.mssante.fr"); !errors.Is(err, queue.ErrRedelivered) {
		t.Fatalf("after restart: %v", err)
	}
	// Delivered and gone from the spool, then a restart.
	q.RunOnce(context.Background(), deliverAll, nil)
	if n := len(q.IDs()); n != 0 {
		t.Fatalf("%d messages left", n)
	}
	if _, _, err := commit(t, q, "K2", "a@b.mssante.fr"); !errors.Is(err, queue.ErrRedelivered) {
		t.Fatalf("after delivery: %v", err)
	}
	q.Close()
	q = openRedelivery(t, dir, c, 0, 0)
	if _, dup, err := commit(t, q, "K1", "a@b.mssante.fr"); !errors.Is(err, queue.ErrRedelivered) || dup[0].ID != id1 {
		t.Fatalf("after delivery and restart: %v %v", err, dup)
	}
	// Past the window (120 h from the first reception), the same message is new again.
	c.Add(queue.DefaultRedeliveryWindow)
	if _, _, err := commit(t, q, "K1", "a@b.mssante.fr"); err != nil {
		t.Fatalf("past the window: %v", err)
	}
}

// The window is bounded in count too, oldest forgotten first; a negative window turns the
// detection off.
func TestRedeliveryBounds(t *testing.T) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	q := openRedelivery(t, dir, c, time.Hour, 2)
	for _, k := range []string{"K1", "K2", "K3"} {
		c.Add(time.Second)
		if _, _, err := commit(t, q, k, "a@b.mssante.fr"); err != nil {
			t.Fatal(err)
		}
	}
	q.RunOnce(context.Background(), deliverAll, nil)
	q.Close()
	q = openRedelivery(t, dir, c, time.Hour, 2)
	for _, k := range []string{"K2", "K3", "K1"} {
		_, _, err := commit(t, q, k, "a@b.mssante.fr")
		if k == "K1" && err != nil || k != "K1" && !errors.Is(err, queue.ErrRedelivered) {
			t.Errorf("%s: %v", k, err)
		}
	}
	off := openRedelivery(t, t.TempDir(), c, -1, 0)
	for range 2 {
		if _, _, err := commit(t, off, "K1", "a@b.mssante.fr"); err != nil {
			t.Fatalf("detection off: %v", err)
		}
	}
}

// Sessions handing the same message over at the same time: one commits it, the others are
// told it is committed or being committed, never a second copy.
func TestRedeliveryConcurrent(t *testing.T) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	q := openRedelivery(t, t.TempDir(), c, 0, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := commit(t, q, "K1", "a@b.mssante.fr")
			k := "committed"
			switch {
			case errors.Is(err, queue.ErrRedelivered):
				k = "redelivered"
			case errors.Is(err, queue.ErrRedeliveryInProgress):
				k = "in progress"
			case err != nil:
				k = err.Error()
			}
			mu.Lock()
			outcomes[k]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if outcomes["committed"] != 1 || len(q.IDs()) != 1 || outcomes["redelivered"]+outcomes["in progress"] != 15 {
		t.Fatalf("outcomes %v, %d messages", outcomes, len(q.IDs()))
	}
}

// The redelivery file holds keys only: no address, no content.
func TestRedeliveryFile(t *testing.T) {
	c := &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	q := openRedelivery(t, dir, c, 0, 0)
	commit(t, q, "K1", "a@b.mssante.fr")
	q.RunOnce(context.Background(), deliverAll, nil)
	b, err := readFile(filepath.Join(dir, "redelivery"))
	if err != nil || len(b) == 0 || strings.Contains(b, "@") || strings.Contains(b, "K1") {
		t.Fatalf("redelivery file %q, %v", b, err)
	}
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// An Open that cannot read the redelivery file fails and leaves the spool free: an
// administrator's exclusive Open succeeds once the file is readable again.
func TestRedeliveryFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(&queue.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	path := filepath.Join(dir, "redelivery")
	os.Remove(path)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if q, err := queue.Open(&queue.Options{Dir: dir}); err == nil {
		q.Close()
		t.Fatal("Open read a redelivery file that is a folder")
	}
	os.Remove(path)
	q, err = queue.Open(&queue.Options{Dir: dir, Exclusive: true})
	if err != nil {
		t.Fatalf("exclusive Open after a failed one: %v", err)
	}
	q.Close()
}
