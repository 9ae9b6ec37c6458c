//go:build unix

package statelock

import (
	"errors"
	"os"
	"syscall"
)

// Flock takes a shared or exclusive flock(2) on f without waiting: ErrLocked when another
// open file description holds a conflicting lock. The lock lasts until f is closed.
func Flock(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrLocked
		default:
			return err
		}
	}
}

// flockProbe reports ErrLocked when another open file description holds an exclusive flock(2)
// on f's file; the shared lock it takes to find out is released before it returns.
func flockProbe(f *os.File) error {
	if err := Flock(f, false); err != nil {
		return err
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
