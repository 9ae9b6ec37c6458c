// Package statelock gives a state folder to one process at a time, so that two connectors
// (or two sandboxes) never recover, deliver and append over the same spool and mailboxes. The
// lock is an flock(2) on a file in the folder, which the kernel releases when the process ends
// however it ends: a lock left by a killed process is free again. The file holds the holder's
// PID, for the message of the process that is refused.
package statelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrLocked reports that another process holds the folder.
var ErrLocked = errors.New("statelock: folder in use by another process")

// LockedError names the folder and, when the lock file tells it, the process holding it.
type LockedError struct {
	Dir string
	PID int // 0 when the holder's PID could not be read
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is in use by process %d", e.Dir, e.PID)
	}
	return e.Dir + " is in use by another process"
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock takes dir for this process through the lock file dir/name, creating dir (0700) and the
// file (0600) when missing. It does not wait: a folder held by a live process gives a
// *LockedError. The returned function releases the lock.
func Lock(dir, name string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := Flock(f, true); err != nil {
		f.Close()
		if !errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("statelock: %s: %w", path, err)
		}
		return nil, &LockedError{Dir: dir, PID: holderPID(path)}
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		f.Close() // releases the lock
	}, nil
}

// holderPID is the PID written in the lock file at path, 0 when it cannot be read.
func holderPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		return pid
	}
	return 0
}

// Held reports, as a *LockedError, whether a process holds dir through the lock file
// dir/name, without taking the lock for longer than the test and without creating the folder
// or the file: a dry run beside a running process uses it to tell "in use by that process"
// from a real conflict. A missing folder or file is free (nil).
func Held(dir, name string) error {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("statelock: %w", err)
	}
	defer f.Close()
	if err := flockProbe(f); err != nil {
		if !errors.Is(err, ErrLocked) {
			return fmt.Errorf("statelock: %s: %w", path, err)
		}
		return &LockedError{Dir: dir, PID: holderPID(path)}
	}
	return nil
}
