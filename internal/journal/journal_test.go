package journal_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
)

const magic = "MSTEST1\n"

func open(t *testing.T, path string) (*journal.Journal, []string, error) {
	t.Helper()
	var got []string
	j, err := journal.Open(path, magic, time.Unix(1800000000, 0), func(p []byte) error {
		if bytes.HasPrefix(p, []byte("bad")) {
			return errors.New("refused")
		}
		got = append(got, string(p))
		return nil
	})
	return j, got, err
}

func appendAll(t *testing.T, j *journal.Journal, recs ...string) int64 {
	t.Helper()
	var mark int64
	for _, r := range recs {
		b, err := journal.Frame([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		if mark, err = j.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return mark
}

// Records appended and synced read back in order after a reopen; the file is 0600.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, got, err := open(t, path)
	if err != nil || len(got) != 0 {
		t.Fatal(got, err)
	}
	if err := j.Sync(appendAll(t, j, "one", "two", "three")); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := j.Append([]byte("x")); err == nil {
		t.Fatal("append after Close accepted")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	j, got, err = open(t, path)
	if err != nil || fmt.Sprint(got) != "[one two three]" {
		t.Fatal(got, err)
	}
	j.Close()
}

// Concurrent writers share fsyncs, and each Sync returns with its record durable.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, err := open(t, path)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				b, _ := journal.Frame(fmt.Appendf(nil, "%d-%d", w, i))
				mark, err := j.Append(b)
				if err == nil {
					err = j.Sync(mark)
				}
				if err != nil || !j.Durable(mark) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d records, %d fsyncs", workers*each, j.Syncs())
	if j.Syncs() >= workers*each {
		t.Errorf("%d fsyncs for %d records: no group commit", j.Syncs(), workers*each)
	}
	j.Close()
	_, got, err := open(t, path)
	if err != nil || len(got) != workers*each {
		t.Fatalf("%d records back, %v", len(got), err)
	}
}

// A record cut short at the end (a killed write) is dropped, and appends go on after the last
// whole record.
func TestTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	appendAll(t, j, "one", "two")
	j.Close()
	st, _ := os.Stat(path)
	os.Truncate(path, st.Size()-2)
	j, got, err := open(t, path)
	if err != nil || fmt.Sprint(got) != "[one]" {
		t.Fatal(got, err)
	}
	appendAll(t, j, "three")
	j.Close()
	if _, got, err = open(t, path); err != nil || fmt.Sprint(got) != "[one three]" {
		t.Fatal(got, err)
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 0 {
		t.Fatalf("a torn tail set aside: %v", m)
	}
}

// Damage before the end (a bad checksum, a record the reader refuses) keeps the records
// before it, copies the file aside and says so with ErrDamaged.
func TestDamage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(path string, off int64)
	}{
		{"checksum", func(path string, off int64) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte{'X'}, off+8)
			f.Close()
		}},
		{"refused", nil},
		{"length", func(path string, off int64) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, off)
			f.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j")
			j, _, _ := open(t, path)
			appendAll(t, j, "one")
			off := j.Size()
			if tc.spoil == nil {
				appendAll(t, j, "bad", "three")
			} else {
				appendAll(t, j, "two", "three")
			}
			j.Close()
			if tc.spoil != nil {
				tc.spoil(path, off)
			}
			j, got, err := open(t, path)
			if !errors.Is(err, journal.ErrDamaged) || j == nil || fmt.Sprint(got) != "[one]" {
				t.Fatalf("%v %v, want [one] and ErrDamaged", got, err)
			}
			if j.Size() != off {
				t.Fatalf("size %d after the cut, want %d", j.Size(), off)
			}
			j.Close()
			if m, _ := filepath.Glob(path + ".damaged-1800000000"); len(m) != 1 {
				t.Fatal("the damaged file was not set aside")
			}
		})
	}
}

// A file of another kind is refused whole and left as it is.
func TestNotAJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	os.WriteFile(path, []byte("something else entirely"), 0o600)
	if j, _, err := open(t, path); j != nil || !errors.Is(err, journal.ErrDamaged) {
		t.Fatalf("%v, want ErrDamaged", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "something else entirely" {
		t.Fatal("the file was changed")
	}
}

// Rewrite keeps only the frames given, and appends go on after them.
func TestRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	mark := appendAll(t, j, "one", "two", "three")
	keep, _ := journal.Frame([]byte("two"))
	if err := j.Rewrite([][]byte{keep}); err != nil {
		t.Fatal(err)
	}
	if !j.Durable(mark) || j.Size() != int64(len(magic)+len(keep)) {
		t.Fatalf("size %d, durable %v", j.Size(), j.Durable(mark))
	}
	appendAll(t, j, "four")
	j.Close()
	if _, got, err := open(t, path); err != nil || fmt.Sprint(got) != "[two four]" {
		t.Fatal(got, err)
	}
}

func TestTooLarge(t *testing.T) {
	if _, err := journal.Frame(make([]byte, journal.MaxRecord+1)); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("%v, want ErrTooLarge", err)
	}
}

// FuzzRead: any bytes are read without panic or unbounded allocation, and the part reported
// good reads back alone to the same records without error.
func FuzzRead(f *testing.F) {
	var valid []byte
	for _, r := range []string{"one", "two", `{"k":"v"}`} {
		b, _ := journal.Frame([]byte(r))
		valid = append(valid, b...)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		good, _ := journal.Read(bytes.NewReader(b), func(p []byte) error {
			if len(p) == 0 || len(p) > journal.MaxRecord {
				t.Fatalf("payload of %d bytes handed over", len(p))
			}
			n++
			return nil
		})
		if good < 0 || good > int64(len(b)) {
			t.Fatalf("good %d of %d bytes", good, len(b))
		}
		var again int
		good2, err := journal.Read(bytes.NewReader(b[:good]), func([]byte) error { again++; return nil })
		if err != nil || good2 != good || again != n {
			t.Fatalf("the good part reads back as %d bytes, %d records, %v; want %d, %d", good2, again, err, good, n)
		}
	})
}
