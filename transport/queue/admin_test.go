package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Hold keeps a message from Run across a restart; Release gives it back; Retry makes a
// deferred recipient due now; Delete removes it without a notice.
func TestHoldReleaseRetryDelete(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	ctx := context.Background()
	id, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m"))
	if err := q.Hold(id); err != nil {
		t.Fatal(err)
	}
	var got []string
	d := outcome(map[string]string{}, &got)
	if n := q.RunOnce(ctx, d, nil); n != 0 || len(got) != 0 {
		t.Fatalf("held message attempted: %d %v", n, got)
	}
	q.Close()
	q = openQ(t, dir, c)
	if !q.Held(id) || q.Stats().Held != 1 {
		t.Fatal("hold lost across a restart")
	}
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	if n := q.RunOnce(ctx, d, nil); n != 1 {
		t.Fatalf("released message not attempted: %d", n)
	}
	// Deferred by a minute: not due until Retry.
	if n := q.RunOnce(ctx, d, nil); n != 0 {
		t.Fatal("deferred recipient attempted at once")
	}
	if err := q.Retry(id); err != nil {
		t.Fatal(err)
	}
	if n := q.RunOnce(ctx, d, nil); n != 1 {
		t.Fatal("Retry did not make the recipient due")
	}
	n := &recorder{}
	if err := q.Delete(id); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour)
	q.RunOnce(ctx, d, &RunOptions{Notifier: n})
	if len(n.notices) != 0 || q.Stats().Messages != 0 {
		t.Fatalf("after delete: %v %+v", n.notices, q.Stats())
	}
	for _, sub := range []string{"data/" + id, "env/" + id + ".json", "hold/" + id} {
		if _, err := os.Stat(filepath.Join(dir, sub)); !os.IsNotExist(err) {
			t.Errorf("%s left after delete", sub)
		}
	}
	for _, op := range []Op{OpHold, OpRelease, OpRetry, OpDelete} {
		if err := q.Apply(op, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a deleted message: %v", op, err)
		}
	}
}

// Retry and Delete wait for an attempt in progress; a hold taken during it survives the
// attempt's commit of its own copy of the state.
func TestAdminDuringAttempt(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	ctx := context.Background()
	id, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m"))
	var errs []error
	d := DelivererFunc(func(ctx context.Context, j *Job) []Result {
		errs = append(errs, q.Retry(id), q.Delete(id), q.Hold(id))
		return []Result{{Err: errors.New("busy"), Status: "451 4.4.1 busy"}}
	})
	q.RunOnce(ctx, d, nil)
	if !errors.Is(errs[0], ErrInFlight) || !errors.Is(errs[1], ErrInFlight) || errs[2] != nil {
		t.Fatalf("during an attempt: %v", errs)
	}
	c.Add(time.Hour)
	if n := q.RunOnce(ctx, d, nil); n != 0 || !q.Held(id) {
		t.Fatal("hold taken during an attempt was lost")
	}
}

// Inspect reads the spool without a lock, beside its owner; ReadHeader stops at the header.
func TestInspect(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	ctx := context.Background()
	id, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr", "c@y.fr"), strings.NewReader("From: a@x.fr\r\nSubject: secret\r\n folded\r\n\r\nbody text\r\n"))
	var got []string
	q.RunOnce(ctx, outcome(map[string]string{"b@y.fr": "ok"}, &got), nil)
	q.Hold(id)
	ms, err := Inspect(dir)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Inspect: %v %v", ms, err)
	}
	m := ms[0]
	if m.ID != id || !m.Held || m.Rcpts[0].State != Delivered || m.Rcpts[1].State != Pending ||
		m.Rcpts[1].LastStatus != "451 4.4.1 busy" || m.Size == 0 {
		t.Fatalf("Inspect: %+v %+v %+v", m, m.Rcpts[0], m.Rcpts[1])
	}
	h, err := ReadHeader(dir, id)
	if err != nil || len(h) != 2 || h[1].Value != "secret folded" {
		t.Fatalf("ReadHeader: %+v %v", h, err)
	}
	if _, err := InspectMessage(dir, "0000000000000-0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ID: %v", err)
	}
	if _, err := InspectMessage(dir, "../env"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("path as ID: %v", err)
	}
}

// Admin applies an operation to the files when no queue is open, and through the owner's Run
// when one is; an exclusive Open is refused beside an owner.
func TestAdminWithAndWithoutOwner(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	q := openQ(t, dir, c)
	ctx := context.Background()
	id, _ := q.Enqueue(ctx, env("a@x.fr", "b@y.fr"), strings.NewReader("m"))
	q.Close()

	owner, err := Admin(ctx, dir, OpHold, id)
	if err != nil || owner {
		t.Fatalf("Admin without an owner: %v %v", owner, err)
	}
	q = openQ(t, dir, c)
	if !q.Held(id) {
		t.Fatal("hold not stored")
	}
	if _, err := Open(&Options{Dir: dir, Exclusive: true}); !errors.Is(err, ErrInUse) {
		t.Fatalf("exclusive Open beside an owner: %v", err)
	}
	// An owner that does not Run does not answer; the request is withdrawn.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := Admin(short, dir, OpRelease, id); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("Admin beside an owner without Run: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "ctl")); len(ents) != 0 {
		t.Fatalf("withdrawn request left: %v", ents)
	}
	delivered := make(chan string, 1)
	d := DelivererFunc(func(ctx context.Context, j *Job) []Result {
		delivered <- j.Env.ID
		return make([]Result, len(j.Rcpts))
	})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go q.Run(rctx, d, &RunOptions{ControlPoll: 10 * time.Millisecond})
	select {
	case <-delivered:
		t.Fatal("held message delivered")
	case <-time.After(100 * time.Millisecond):
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if owner, err := Admin(wctx, dir, OpRelease, id); err != nil || !owner {
		t.Fatalf("Admin through the owner: %v %v", owner, err)
	}
	select {
	case <-delivered:
	case <-time.After(5 * time.Second):
		t.Fatal("released message not delivered")
	}
	if _, err := Admin(wctx, dir, OpDelete, "0000000000000-0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ID through the owner: %v", err)
	}
}
