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

// Held sees the lock of a holder, creates nothing when there is none, and leaves the lock
// free for the next Lock.
func TestHeld(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := Held(dir, "x.lock"); err != nil {
		t.Fatalf("missing folder: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Held created the folder: %v", err)
	}
	unlock, err := Lock(dir, "x.lock")
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if err := Held(dir, "x.lock"); !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("held: %v, want a LockedError naming PID %d", err, os.Getpid())
	}
	unlock()
	if err := Held(dir, "x.lock"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock, err = Lock(dir, "x.lock")
	if err != nil {
		t.Fatalf("Lock after Held: %v", err)
	}
	unlock()
}
