package webhook

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
)

func readJournal(r io.Reader, fn func(*record)) (int64, error) {
	good, err := journal.Read(r, decode(fn))
	return good, journalErr(err)
}

func journalBytes(t testing.TB, recs ...*record) []byte {
	var b []byte
	for _, r := range recs {
		f, err := frame(r)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, f...)
	}
	return b
}

// FuzzJournalRead: any bytes are read without panic or unbounded allocation, and the part
// reported good reads back alone to the same records without error.
func FuzzJournalRead(f *testing.F) {
	valid := journalBytes(f,
		&record{Op: opAdd, Seq: 1, EP: "0011223344556677", Pending: &pending{Event: Event{ID: "evt_1", Type: EventAccepted,
			BAL: "a@b.fr", MessageID: "m@x", Time: time.Unix(1800000000, 0).UTC()}, First: time.Unix(1800000000, 0).UTC()}},
		&record{Op: opRetry, Seq: 1, Attempts: 1, Next: time.Unix(1800000010, 0).UTC()},
		&record{Op: opDone, Seq: 1})
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		good, _ := readJournal(bytes.NewReader(b), func(r *record) {
			if !r.valid() {
				t.Fatalf("invalid record handed over: %+v", r)
			}
			n++
		})
		if good < 0 || good > int64(len(b)) {
			t.Fatalf("good %d of %d bytes", good, len(b))
		}
		var again int
		good2, err := readJournal(bytes.NewReader(b[:good]), func(*record) { again++ })
		if err != nil || good2 != good || again != n {
			t.Fatalf("the good part reads back as %d bytes, %d records, %v; want %d, %d", good2, again, err, good, n)
		}
	})
}
