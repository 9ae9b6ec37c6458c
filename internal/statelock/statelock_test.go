package statelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// flock(2) locks belong to an open file description, so a second Lock in the same process is
// refused exactly as another process would be.
func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	unlock, err := Lock(dir, "x.lock")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("folder mode: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "x.lock"))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our PID", b)
	}
	_, err = Lock(dir, "x.lock")
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != os.Getpid() || le.Dir != dir {
		t.Fatalf("second Lock: %v, want a LockedError naming PID %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("message %q does not name the holder", err)
	}
	unlock()
	unlock2, err := Lock(dir, "x.lock")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}

func TestHolder(t *testing.T) {
	dir := t.TempDir()
	if pid, held, err := Holder(dir, "x.lock"); pid != 0 || held || err != nil {
		t.Fatalf("no lock file: %d %v %v", pid, held, err)
	}
	unlock, err := Lock(dir, "x.lock")
	if err != nil {
		t.Fatal(err)
	}
	if pid, held, err := Holder(dir, "x.lock"); pid != os.Getpid() || !held || err != nil {
		t.Fatalf("held: %d %v %v", pid, held, err)
	}
	// Asking did not take the lock from its holder.
	if _, err := Lock(dir, "x.lock"); !errors.Is(err, ErrLocked) {
		t.Fatalf("after Holder: %v", err)
	}
	unlock()
	if _, held, err := Holder(dir, "x.lock"); held || err != nil {
		t.Fatalf("released: %v %v", held, err)
	}
}
