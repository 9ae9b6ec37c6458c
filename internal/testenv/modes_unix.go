//go:build unix

package testenv

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// Umask0 sets the process umask to 0 until the test ends, so that a test sees the modes the
// code asks for and not what a umask happened to remove. The umask is per process: the test
// must not run in parallel (no t.Parallel, and none of its subtests either).
func Umask0(t testing.TB) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

// PrivateModes fails the test for each directory under root (root included) whose mode is not
// 0700 and each file whose mode is not 0600, except the paths public reports as public
// (certificates, a CA chain), which may be readable by others. It returns the number of
// files checked.
func PrivateModes(t testing.TB, root string, public func(path string) bool) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			n++
		}
		if public != nil && public(p) {
			if info.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s: mode %v, writable by others", p, info.Mode().Perm())
			}
			return nil
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
