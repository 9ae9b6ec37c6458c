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
	if step == "fsync" || step == "syncfs" {
		c.n.Add(1)
	}
	return nil
}

// Folding thousands of records at close and at open costs a bounded number of durability
// system calls (fsync, syncfs), not one or two per record.
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
	if got := c.n.Load(); got > 2 {
		t.Fatalf("close of %d journaled records: %d fsync/syncfs, want at most 2", n, got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "outbox")); len(ents) != n+1 {
		t.Fatalf("%d files in the outbox, want %d records and the journal", len(ents), n)
	}

	// A crash with n changes journaled: the open folds them, as cheaply.
	b, err = openOutboxHook(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	journalMany(t, b, 0, n, StatusDelivered)
	c.n.Store(0)
	b2, err := openOutboxHook(dir, c.hook) // no close of b
	if err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got > 2 {
		t.Fatalf("open over %d journaled records: %d fsync/syncfs, want at most 2", n, got)
	}
	b2.close()
	checkAll(t, dir, 0, n, StatusDelivered)
}

// A crash (an injected failure) at any step of the fold at close loses no record: the
// journal is emptied only once the record files are durable.
func TestOutboxFoldCrash(t *testing.T) {
	for _, step := range []string{"fold:written", "syncfs", "fold:synced"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			b, err := openOutbox(dir)
			if err != nil {
				t.Fatal(err)
			}
			journalMany(t, b, 0, 50, StatusSubmitted)
			if err := b.close(); err != nil { // 50 records in their files
				t.Fatal(err)
			}
			failed := errors.New("injected crash")
			var armed atomic.Bool // at close, not at open
			b, err = openOutboxHook(dir, func(s string) error {
				if s == step && armed.Load() {
					return failed
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			journalMany(t, b, 0, 200, StatusDelivered) // 50 updated, 150 new
			armed.Store(true)
			if err := b.close(); !errors.Is(err, failed) {
				t.Fatalf("close: %v, want the injected failure", err)
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
