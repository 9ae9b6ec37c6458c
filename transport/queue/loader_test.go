package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gateLoader holds the loader before each message until open is closed (or the queue closes).
func gateLoader(t *testing.T) (open chan struct{}) {
	open = make(chan struct{})
	beforeLoad = func(_ string, stop <-chan struct{}) {
		select {
		case <-open:
		case <-stop:
		}
	}
	t.Cleanup(func() { beforeLoad = nil })
	return open
}

// After a crash (no index), Open returns once it has listed the spool; the messages are read in
// the background. Meanwhile the queue accepts and delivers new messages, the administrative
// calls read the message they name at once, a redelivery is recognised from the redelivery
// file, and once loaded every message is there with its state, holds kept, debris removed.
func TestLoadInBackground(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	q := openQ(t, dir, c)
	var ids []string
	for i := range 6 {
		e := env("a@x.fr", fmt.Sprintf("r%d@y.fr", i), "ok@y.fr")
		e.RedeliveryKey = fmt.Sprintf("key-%d", i)
		id, err := q.Enqueue(ctx, e, strings.NewReader(fmt.Sprintf("m%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	q.RunOnce(ctx, outcome(map[string]string{"ok@y.fr": "ok"}, &got), nil) // r* deferred, state files written
	if err := q.Hold(ids[0]); err != nil {
		t.Fatal(err)
	}
	q.Close()
	os.Remove(filepath.Join(dir, indexName)) // as after a crash
	// Debris of a crash before a commit (with a hold marker), and the state file of a message
	// whose data file was removed.
	debris := "0000000000000-debris"
	os.WriteFile(filepath.Join(dir, "data", debris), []byte("half a message"), 0o600)
	os.WriteFile(filepath.Join(dir, "hold", debris), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "env", "0000000000001-gone.json"), []byte("{}"), 0o600)

	open := gateLoader(t)
	q2, err := Open(&Options{Dir: dir, Now: c.Now, Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if s := q2.Stats(); s.Messages != 7 || s.Loading != 7 || s.Held != 2 || s.Recipients != 0 {
		t.Fatalf("before loading: %+v", s)
	}
	// A new message is accepted and delivered while the others wait.
	_, err = q2.Enqueue(ctx, env("a@x.fr", "ok@y.fr"), strings.NewReader("fresh"))
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	d := outcome(map[string]string{"ok@y.fr": "ok", "r1@y.fr": "ok", "r2@y.fr": "ok", "r3@y.fr": "ok", "r4@y.fr": "ok", "r5@y.fr": "ok"}, &got)
	if n := q2.RunOnce(ctx, d, nil); n != 1 || !slices.Equal(got, []string{"ok@y.fr:fresh"}) {
		t.Fatalf("while loading, delivered %d: %v", n, got)
	}
	// Calls that name a message not read yet read it.
	e, err := q2.Get(ids[1])
	if err != nil || e.Rcpts[0].Attempts != 1 || e.Rcpts[1].State != Delivered || e.Size != 2 {
		t.Fatalf("Get of a message not loaded: %+v %v", e, err)
	}
	if err := q2.Hold(ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := q2.Delete(ids[3]); err != nil {
		t.Fatal(err)
	}
	if err := q2.Release(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := q2.Get(debris); !errors.Is(err, ErrNotFound) {
		t.Fatalf("debris: %v", err)
	}
	if err := q2.Hold("0000000000002-unknown"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if s := q2.Stats(); s.Loading != 2 || s.Messages != 5 || s.Held != 1 {
		t.Fatalf("after the calls: %+v", s)
	}
	// The same message handed over again (same key) is recognised at once: its keys were noted
	// in the redelivery file at its commit.
	redo := env("a@x.fr", "r5@y.fr")
	redo.RedeliveryKey = "key-5"
	if _, err := q2.Enqueue(ctx, redo, strings.NewReader("m5")); !errors.Is(err, ErrRedelivered) {
		t.Fatalf("redelivery while loading: %v", err)
	}
	close(open)
	q2.waitLoaded(ctx)
	if s := q2.Stats(); s.Loading != 0 || s.Messages != 5 || s.Held != 1 || s.Recipients != 5 {
		t.Fatalf("after loading: %+v", s)
	}
	for _, name := range []string{"data/" + debris, "hold/" + debris, "env/0000000000001-gone.json", "data/" + ids[3]} {
		if exists(filepath.Join(dir, name)) {
			t.Errorf("%s kept", name)
		}
	}
	// Every message loaded is delivered once its time comes; the held one is not.
	c.Add(time.Hour)
	got = nil
	q2.RunOnce(ctx, d, nil)
	slices.Sort(got)
	if want := []string{"r0@y.fr:m0", "r1@y.fr:m1", "r4@y.fr:m4", "r5@y.fr:m5"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// When the redelivery file lost the keys noted at commit (a system crash before the page cache
// reached the disk), a Commit that could be a redelivery (any key: the keys missing are not
// known) waits until the messages whose keys are missing are read, then is recognised; one
// without a key does not wait.
func TestRedeliveryWaitsForLostKeys(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	q := openQ(t, dir, c)
	for i := range 3 {
		e := env("a@x.fr", fmt.Sprintf("r%d@y.fr", i))
		e.RedeliveryKey = fmt.Sprintf("key-%d", i)
		if _, err := q.Enqueue(ctx, e, strings.NewReader("m")); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	os.Remove(filepath.Join(dir, indexName))
	// The system crash kept the commit lines of the first two messages only, and tore the
	// last key line.
	b, err := os.ReadFile(filepath.Join(dir, redeliveryFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[5], commitMark+" ") {
		t.Fatalf("redelivery file: %q", b)
	}
	torn := strings.Join(lines[:4], "") + lines[4][:20]
	if err := os.WriteFile(filepath.Join(dir, redeliveryFile), []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}

	open := gateLoader(t)
	q2, err := Open(&Options{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if _, err := q2.Enqueue(ctx, env("a@x.fr", "new@y.fr"), strings.NewReader("n")); err != nil {
		t.Fatal(err)
	}
	// The torn line was ended, with a field that makes it unreadable, before the next commit
	// appended its own.
	if b, _ := os.ReadFile(filepath.Join(dir, redeliveryFile)); !strings.Contains(string(b), torn+lineBreak+commitMark+" ") {
		t.Fatalf("redelivery file after the torn line: %q", b)
	}
	redo := env("a@x.fr", "r2@y.fr")
	redo.RedeliveryKey = "key-2"
	res := make(chan error, 1)
	go func() { _, err := q2.Enqueue(ctx, redo, strings.NewReader("m")); res <- err }()
	select {
	case err := <-res:
		t.Fatalf("a possible redelivery committed before its message was read: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(open)
	if err := <-res; !errors.Is(err, ErrRedelivered) {
		t.Fatalf("redelivery after the load: %v", err)
	}
	if s := q2.Stats(); s.Messages != 4 {
		t.Fatalf("stats: %+v", s)
	}
}

// A queue closed while it loads stops its loader; the index it writes holds what it had read,
// and the next Open reads the rest from the files.
func TestCloseWhileLoading(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	q := openQ(t, dir, c)
	for i := range 20 {
		if _, err := q.Enqueue(ctx, env("a@x.fr", fmt.Sprintf("r%d@y.fr", i)), strings.NewReader("m")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	q.RunOnce(ctx, outcome(nil, &got), nil)
	ids := q.IDs()
	q.Close()
	os.Remove(filepath.Join(dir, indexName))

	gateLoader(t)
	q2, err := Open(&Options{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q2.Get(ids[7]); err != nil {
		t.Fatal(err)
	}
	q2.Close() // returns although the loader is held
	if !exists(filepath.Join(dir, indexName)) {
		t.Fatal("no index")
	}
	beforeLoad = nil
	q3 := openQ(t, dir, c)
	if s := q3.Stats(); s.Messages != 20 || s.Loading != 0 || s.Recipients != 20 {
		t.Fatalf("after a restart: %+v", s)
	}
	for _, id := range ids {
		if e, err := q3.Get(id); err != nil || e.Rcpts[0].Attempts != 1 {
			t.Fatalf("%s: %+v %v", id, e, err)
		}
	}
}

// gateKeys holds the read of the redelivery file until open is closed (or the queue closes).
func gateKeys(t *testing.T) (open chan struct{}) {
	open = make(chan struct{})
	beforeKeys = func(stop <-chan struct{}) {
		select {
		case <-open:
		case <-stop:
		}
	}
	t.Cleanup(func() { beforeKeys = nil })
	return open
}

// After a clean stop, Open returns before the redelivery file is read. Meanwhile messages
// without a key are accepted and delivered, a message of the index delivered and gone; a
// Commit with a key waits for the read, then is recognised as a redelivery of a message
// delivered before the stop, of the one delivered during the read, and of one still queued.
func TestRedeliveryWhileReadingKeys(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	q := openQ(t, dir, c)
	var ids []string
	for i := range 3 {
		e := env("a@x.fr", fmt.Sprintf("r%d@y.fr", i))
		e.RedeliveryKey = fmt.Sprintf("key-%d", i)
		id, err := q.Enqueue(ctx, e, strings.NewReader("m"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	q.RunOnce(ctx, outcome(map[string]string{"r0@y.fr": "ok", "r1@y.fr": "temp", "r2@y.fr": "temp"}, &got), nil)
	q.Close()
	if !exists(filepath.Join(dir, indexName)) {
		t.Fatal("no index after a clean stop")
	}

	open := gateKeys(t)
	q2, err := Open(&Options{Dir: dir, Now: c.Now, Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	// The index is taken in the background too, before the keys are read.
	for deadline := time.Now().Add(10 * time.Second); q2.Stats().Loading > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := q2.Stats(); !s.RedeliveryLoading || s.Messages != 2 || s.Loading != 0 || s.Recipients != 2 {
		t.Fatalf("while reading the keys: %+v", s)
	}
	redo := func(i int) chan error {
		res := make(chan error, 1)
		go func() {
			e := env("a@x.fr", fmt.Sprintf("r%d@y.fr", i))
			e.RedeliveryKey = fmt.Sprintf("key-%d", i)
			_, err := q2.Enqueue(ctx, e, strings.NewReader("m"))
			res <- err
		}()
		return res
	}
	early := redo(0)
	if _, err := q2.Enqueue(ctx, env("a@x.fr", "new@y.fr"), strings.NewReader("n")); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour)
	got = nil
	if n := q2.RunOnce(ctx, outcome(map[string]string{"r1@y.fr": "ok", "r2@y.fr": "temp", "new@y.fr": "ok"}, &got), nil); n != 3 {
		t.Fatalf("delivered %d while reading the keys: %v", n, got)
	}
	if _, err := q2.Get(ids[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s still queued: %v", ids[1], err)
	}
	select {
	case err := <-early:
		t.Fatalf("a keyed commit answered before the keys were read: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(open)
	for i, res := range []chan error{early, redo(1), redo(2)} {
		if err := <-res; !errors.Is(err, ErrRedelivered) {
			t.Errorf("redelivery of key-%d: %v", i, err)
		}
	}
	e := env("a@x.fr", "r0@y.fr")
	e.RedeliveryKey = "key-new"
	if _, err := q2.Enqueue(ctx, e, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	if s := q2.Stats(); s.RedeliveryLoading || s.Messages != 2 {
		t.Fatalf("after reading the keys: %+v", s)
	}
}

// A queue closed while it reads the redelivery file stops: a Commit with a key that waited
// fails with ErrClosed, and the file is left as it was for the next Open.
func TestCloseWhileReadingKeys(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	q := openQ(t, dir, c)
	e := env("a@x.fr", "r@y.fr")
	e.RedeliveryKey = "key"
	if _, err := q.Enqueue(ctx, e, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	before, _ := os.ReadFile(filepath.Join(dir, redeliveryFile))
	gateKeys(t)
	q2, err := Open(&Options{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := q2.Enqueue(ctx, e, strings.NewReader("m")); res <- err }()
	time.Sleep(20 * time.Millisecond)
	q2.Close()
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("keyed commit at Close: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, redeliveryFile)); string(after) != string(before) {
		t.Fatalf("redelivery file changed: %q, was %q", after, before)
	}
	beforeKeys = nil
	q3 := openQ(t, dir, c)
	if _, err := q3.Enqueue(ctx, e, strings.NewReader("m")); !errors.Is(err, ErrRedelivered) {
		t.Fatalf("after a restart: %v", err)
	}
}
