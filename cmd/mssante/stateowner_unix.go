//go:build unix

package main

import (
	"os"
	"syscall"
)

// fileUID returns the owner of the file fi describes.
func fileUID(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// writable reports whether this process may create entries in the folder path.
func writable(path string) bool {
	return syscall.Access(path, 0x2 /* W_OK */) == nil
}
