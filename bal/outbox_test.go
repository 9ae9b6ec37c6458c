package bal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// A durable save survives a crash (the outbox is reopened without being closed), a torn
// last journal line is ignored, and the newest version of a record wins.
func TestOutboxJournalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	b, err := openOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := envelopeID("m1@test.example")
	r := &Record{MessageID: "m1@test.example", EnvelopeID: id, Created: time.Now(),
		Recipients: []RecipientState{{Address: "a@other.example", Status: StatusPending}}}
	b.mu.Lock()
	if err := b.save(r); err != nil { // before the server's reply: not durable
		t.Fatal(err)
	}
	b.mu.Unlock()
	r.Recipients[0].Status = StatusSubmitted
	if err := b.commit(r); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next append.
	f, _ := os.OpenFile(filepath.Join(dir, "outbox", "journal.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"version":99,"envelope_id":"` + id + `","recipients":[{"address":"a@other.example","sta`)
	f.Close()

	b2, err := openOutbox(dir) // no close of b: the crash
	if err != nil {
		t.Fatal(err)
	}
	b2.mu.Lock()
	got, err := b2.load(id)
	b2.mu.Unlock()
	if err != nil || got.Recipients[0].Status != StatusSubmitted {
		t.Fatalf("after the crash: %+v, %v", got, err)
	}
	// Folded at open: the record file is current and the journal empty.
	if st, _ := os.Stat(filepath.Join(dir, "outbox", "journal.log")); st.Size() != 0 {
		t.Fatalf("journal not folded: %d bytes", st.Size())
	}
	if _, err := b2.update(id, func(r *Record) bool { r.Recipients[0].Status = StatusDelivered; return true }); err != nil {
		t.Fatal(err)
	}
	if err := b2.close(); err != nil {
		t.Fatal(err)
	}
	b3, _ := openOutbox(dir)
	defer b3.close() // waits for its background fold
	b3.mu.Lock()
	got, _ = b3.load(id)
	b3.mu.Unlock()
	if got.Recipients[0].Status != StatusDelivered {
		t.Fatalf("after close and reopen: %+v", got)
	}
	if _, err := b3.loadFile("../../../etc/passwd"); err == nil {
		t.Fatal("path outside the outbox read")
	}
}

// BenchmarkOutboxClose: Close (the fold of the journal into the record store) after N
// journaled sends, each a record committed as Send does after the server's reply.
func BenchmarkOutboxClose(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				box, err := openOutbox(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if err := box.commit(benchRecord(i)); err != nil {
						b.Fatal(err)
					}
				}
				var c syncCounter
				box.hook = c.hook
				b.StartTimer()
				if err := box.close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(c.n.Load()), "syncs/close")
			}
		})
	}
}

// BenchmarkOutboxReopen: open then Close after N journaled sends: the whole fold (run in
// the background from the open; Close waits for it).
func BenchmarkOutboxReopen(b *testing.B) {
	const n = 1000
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		box, err := openOutbox(dir)
		if err != nil {
			b.Fatal(err)
		}
		journalMany(b, box, 0, n, StatusSubmitted)
		box.close()
		b.StartTimer()
		if box, err = openOutbox(dir); err != nil {
			b.Fatal(err)
		}
		if err := box.close(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRecord(i int) *Record {
	id := fmt.Sprintf("m%d@test.example", i)
	return &Record{MessageID: id, EnvelopeID: envelopeID(id), Created: time.Unix(0, 0).UTC(),
		Recipients: []RecipientState{{Address: "a@other.example", Status: StatusSubmitted, Code: 250}}}
}

// journalMany journals n records (statuses submitted) with one group-commit fsync.
func journalMany(t testing.TB, b *outbox, from, n int, st Status) {
	t.Helper()
	b.mu.Lock()
	var seq int64
	for i := from; i < from+n; i++ {
		r := benchRecord(i)
		r.Recipients[0].Status = st
		var err error
		if seq, err = b.appendRecord(r); err != nil {
			b.mu.Unlock()
			t.Fatal(err)
		}
	}
	b.mu.Unlock()
	if err := b.sync(seq); err != nil {
		t.Fatal(err)
	}
}

// checkAll opens stateDir afresh and checks that records from..from+n are there with st.
func checkAll(t *testing.T, stateDir string, from, n int, st Status) {
	t.Helper()
	b, err := openOutbox(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("m%d@test.example", i)
		b.mu.Lock()
		r, err := b.load(envelopeID(id))
		b.mu.Unlock()
		if err != nil || r.MessageID != id || r.Recipients[0].Status != st {
			t.Fatalf("record %d after reopen: %+v, %v", i, r, err)
		}
	}
}

type syncCounter struct{ n atomic.Int64 }

func (c *syncCounter) hook(step string) error {
	if step == "fsync" {
		c.n.Add(1)
	}
	return nil
}

// Close after thousands of journaled records costs one fsync (the journal's), whatever their
// number; the open that folds them (in the background) one per record file written and a
// few more (the folder, the journal), not two per record; Close waits for a background fold.
func TestOutboxFoldBoundedSyncs(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	var c syncCounter
	b, err := openOutboxHook(dir, c.hook)
	if err != nil {
		t.Fatal(err)
	}
	journalMany(t, b, 0, n, StatusSubmitted)
	c.n.Store(0)
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got > 1 {
		t.Fatalf("close after %d journaled records: %d fsync, want at most 1", n, got)
	}
	c.n.Store(0)
	if b, err = openOutboxHook(dir, c.hook); err != nil {
		t.Fatal(err)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got > n+3 {
		t.Fatalf("open (fold of %d records) and close: %d fsync, want at most %d", n, got, n+3)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "outbox")); len(ents) != n+1 {
		t.Fatalf("%d files in the outbox, want %d records and the journal", len(ents), n)
	}

	// A crash with n changes journaled: the next open folds them, as cheaply.
	if b, err = openOutboxHook(dir, nil); err != nil {
		t.Fatal(err)
	}
	journalMany(t, b, 0, n, StatusDelivered)
	c.n.Store(0)
	b2, err := openOutboxHook(dir, c.hook) // no close of b
	if err != nil {
		t.Fatal(err)
	}
	b2.close()
	if got := c.n.Load(); got > n+3 {
		t.Fatalf("open after a crash over %d journaled records, and close: %d fsync, want at most %d", n, got, n+3)
	}
	checkAll(t, dir, 0, n, StatusDelivered)
}

// A crash (an injected failure) at any step of a fold loses no record: a journal segment is
// removed only once the record files are durable; the next open folds what is left.
// "fold:fsync" is the fsync of one record file failing (a writeback error).
func TestOutboxFoldCrash(t *testing.T) {
	for _, step := range []string{"fold:written", "fold:sync", "fold:fsync", "fold:synced"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			b, err := openOutbox(dir)
			if err != nil {
				t.Fatal(err)
			}
			journalMany(t, b, 0, 50, StatusSubmitted)
			b.close()
			checkAll(t, dir, 0, 50, StatusSubmitted) // folded at this open: 50 record files
			if b, err = openOutbox(dir); err != nil {
				t.Fatal(err)
			}
			journalMany(t, b, 0, 200, StatusDelivered) // 50 updated, 150 new
			b.close()

			failed := errors.New("injected crash")
			var hits atomic.Int64
			var syncing atomic.Bool
			b, err = openOutboxHook(dir, func(s string) error {
				switch {
				case s == "fold:sync":
					syncing.Store(true)
				case s == "fsync" && syncing.Load():
					s = "fold:fsync"
					if step == s && !hits.CompareAndSwap(0, 1) {
						return nil // the other files' fsyncs succeed
					}
				}
				if s == step {
					if s != "fold:fsync" {
						hits.Add(1)
					}
					return failed
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.close(); err != nil { // waits for the failed background fold
				t.Fatal(err)
			}
			if hits.Load() != 1 {
				t.Fatalf("step %s reached %d times", step, hits.Load())
			}
			if _, err := os.Stat(filepath.Join(dir, "outbox", oldJournalName)); err != nil {
				t.Fatalf("journal segment gone after a failed fold: %v", err)
			}
			checkAll(t, dir, 0, 200, StatusDelivered)
		})
	}
}

// Past maxJournal the journal is rotated and folded in the background: Sends go on while
// the fold is held, and a crash during it (the folder as it is then) loses no record.
func TestOutboxBackgroundFold(t *testing.T) {
	dir := t.TempDir()
	held, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	b, err := openOutboxHook(dir, func(s string) error {
		if s == "fold:written" && once.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.maxJournal = 8 << 10
	i := 0
	for ; ; i++ { // Sends until the fold starts
		if err := b.commit(benchRecord(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-held:
		default:
			continue
		}
		break
	}
	// While the fold is held: more Sends, each durable, none waiting for the fold.
	for j := i + 1; j <= i+50; j++ {
		if err := b.commit(benchRecord(j)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "outbox", oldJournalName)); err != nil {
		t.Fatalf("no rotated journal during the fold: %v", err)
	}
	// The crash: a copy of the folder as it is mid-fold.
	crash := t.TempDir()
	if err := os.CopyFS(filepath.Join(crash, "outbox"), os.DirFS(filepath.Join(dir, "outbox"))); err != nil {
		t.Fatal(err)
	}
	checkAll(t, crash, 0, i+51, StatusSubmitted)

	close(release)
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outbox", oldJournalName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rotated journal left after close: %v", err)
	}
	checkAll(t, dir, 0, i+51, StatusSubmitted)
}
