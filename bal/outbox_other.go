//go:build !linux

package bal

import "os"

// syncFolded makes the folded record files durable: without syncfs, one fsync per file
// (after all were written, so the writes overlap), then one of the folder for the renames.
func (b *outbox) syncFolded(dir *os.File, paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = b.fsync(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return b.fsync(dir)
}
