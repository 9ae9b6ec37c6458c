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
	if err := flockExclusive(f); err != nil {
		f.Close()
		if !errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("statelock: %s: %w", path, err)
		}
		le := &LockedError{Dir: dir}
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				le.PID = pid
			}
		}
		return nil, le
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		f.Close() // releases the lock
	}, nil
}
