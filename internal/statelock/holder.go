package statelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Holder reports whether a live process holds dir through the lock file dir/name, and its PID
// when the file tells it (0 otherwise). Unlike Lock it creates nothing and never keeps the
// lock: a tool that signals the holder uses it.
func Holder(dir, name string) (pid int, held bool, err error) {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close() // releases the lock if it was taken below
	switch err := flockExclusive(f); {
	case err == nil:
		return 0, false, nil
	case !errors.Is(err, ErrLocked):
		return 0, false, err
	}
	b, err := os.ReadFile(path)
	if err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return max(pid, 0), true, nil
}
