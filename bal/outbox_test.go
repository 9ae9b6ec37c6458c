package bal

import (
	"os"
	"path/filepath"
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
