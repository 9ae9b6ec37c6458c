package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// A clean stop writes the index; the next Open reads the queue from it (states, holds) and
// removes it before changing anything. An index written while another Queue had the spool
// open, or by a Queue that another Open followed, would miss changes: none is written then.
func TestIndexRestart(t *testing.T) {
	dir, c := t.TempDir(), newClock()
	index := filepath.Join(dir, indexName)
	q := openQ(t, dir, c)
	ctx := context.Background()
	var ids []string
	for _, to := range []string{"ok@y.fr", "temp@y.fr", "held@y.fr"} {
		id, err := q.Enqueue(ctx, env("a@x.fr", to, "ok2@y.fr"), strings.NewReader("m "+to))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := q.Hold(ids[2]); err != nil {
		t.Fatal(err)
	}
	var got []string
	q.RunOnce(ctx, outcome(map[string]string{"ok@y.fr": "ok", "ok2@y.fr": "ok"}, &got), nil)
	q.Close()
	if !exists(index) {
		t.Fatal("no index after a clean stop")
	}
	q2 := openQ(t, dir, c)
	if exists(index) {
		t.Fatal("index kept after Open")
	}
	if s := q2.Stats(); s.Messages != 2 || s.Recipients != 3 || s.Held != 1 {
		t.Fatalf("after a restart from the index: %+v", s)
	}
	e, err := q2.Get(ids[1])
	if err != nil || e.Rcpts[0].Attempts != 1 || e.Rcpts[0].LastStatus != "451 4.4.1 busy" || e.Rcpts[1].State != Delivered {
		t.Fatalf("state lost: %+v %v", e, err)
	}
	// A second Queue beside it: neither writes an index.
	q3, err := Open(&Options{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	q3.Close()
	q2.Close()
	if exists(index) {
		t.Fatal("index written while another Queue had the spool open")
	}
	// Read from the files, then an index again; a message committed by a Writer after Close
	// is read from its files.
	q4 := openQ(t, dir, c)
	if s := q4.Stats(); s.Messages != 2 {
		t.Fatalf("after a restart from the files: %+v", s)
	}
	w, err := q4.Begin()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("late"))
	q4.Close()
	if exists(index) {
		t.Fatal("index written while a message was being written")
	}
	if _, err := w.Commit(ctx, env("a@x.fr", "late@y.fr")); err != nil {
		t.Fatal(err)
	}
	q5 := openQ(t, dir, c)
	if s := q5.Stats(); s.Messages != 3 {
		t.Fatalf("late commit: %+v", s)
	}
	q5.Close()
	if !exists(index) {
		t.Fatal("no index")
	}
	// An index cut short is ignored: the files are read.
	b, _ := os.ReadFile(index)
	os.WriteFile(index, b[:len(b)-3], 0o600)
	q6 := openQ(t, dir, c)
	if s := q6.Stats(); s.Messages != 3 || s.Held != 1 {
		t.Fatalf("after a torn index: %+v", s)
	}
}
