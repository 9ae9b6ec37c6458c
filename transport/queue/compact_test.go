package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// The redelivery file stays bounded by what it must hold (the keys in the window and the
// commit lines of the messages queued): it is rewritten while messages come and go once it
// holds twice that, and at Close once it holds more; the rewrite is private, and one a crash
// cut short (its temporary file) changes nothing. The keys survive it: the newest are still
// recognised after a restart, those past the count are not.
func TestRedeliveryFileCompacted(t *testing.T) {
	testenv.Umask0(t)
	dir, c := t.TempDir(), newClock()
	ctx := context.Background()
	const max, round = 50, 300
	open := func() *Queue {
		q, err := Open(&Options{Dir: dir, Now: c.Now, RedeliveryMax: max, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		q.waitLoaded(ctx)
		return q
	}
	lines := func() int {
		b, err := os.ReadFile(filepath.Join(dir, redeliveryFile))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Count(b, []byte("\n"))
	}
	enqueue := func(q *Queue, key string) error {
		c.Add(time.Millisecond) // the count keeps the newest: make the order certain
		e := env("a@x.fr", "r@y.fr")
		e.RedeliveryKey = key
		_, err := q.Enqueue(ctx, e, strings.NewReader("m"))
		return err
	}
	q := open()
	var got []string
	for r := range 6 {
		for i := range round {
			if err := enqueue(q, fmt.Sprintf("key-%d-%d", r, i)); err != nil {
				t.Fatal(err)
			}
		}
		q.RunOnce(ctx, outcome(map[string]string{"r@y.fr": "ok"}, &got), nil)
		// Without a rewrite: 3 lines a message (its keys and commit line, its keys again when
		// it leaves), 5,400 in all.
		if n, bound := lines(), 2*(max+round)+compactMin+2*round; n > bound {
			t.Fatalf("round %d: %d lines in the redelivery file, want at most %d", r, n, bound)
		}
	}
	// Queued, not delivered: no rewrite while they come (only a message leaving checks), so
	// that Close finds more lines than the keys and commit lines it must keep.
	const queued = 1200
	for i := range queued {
		if err := enqueue(q, fmt.Sprintf("queued-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := lines(); n <= max+queued+compactMin {
		t.Fatalf("%d lines before Close: the test needs more", n)
	}
	q.Close()
	b, err := os.ReadFile(filepath.Join(dir, redeliveryFile))
	if err != nil {
		t.Fatal(err)
	}
	if n, want := bytes.Count(b, []byte("\n")), max+queued; n != want {
		t.Fatalf("%d lines after Close, want %d (the keys and the commit lines)", n, want)
	}
	if st, err := os.Stat(filepath.Join(dir, redeliveryFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("rewritten file: %v %v", st.Mode(), err)
	}
	// A rewrite cut short by a crash leaves its temporary file, never a file in place.
	tmp := filepath.Join(dir, "tmp", redeliveryFile)
	if err := os.WriteFile(tmp, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	q = open()
	if exists(tmp) {
		t.Error("temporary file of a rewrite kept")
	}
	for _, k := range []struct {
		key  string
		want error
	}{{fmt.Sprintf("queued-%d", queued-1), ErrRedelivered}, {fmt.Sprintf("queued-%d", queued-max), ErrRedelivered},
		{"key-5-299", nil}} {
		if err := enqueue(q, k.key); !errors.Is(err, k.want) {
			t.Errorf("%s after the rewrite and a restart: %v, want %v", k.key, err, k.want)
		}
	}
}
