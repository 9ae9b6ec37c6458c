package bal

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFolded makes the folded record files (written and renamed into the folder) durable
// with one syncfs(2) of the folder's file system instead of an fsync per file and per
// rename: one system call, whatever the number of records. It also flushes other dirty data
// of that file system, a cost that does not grow with the outbox. Since Linux 5.8 syncfs
// reports a writeback error of any file of the file system since dir was opened (before the files were written)
// (errseq on the superblock), which is what makes trusting it sound; on older kernels it
// returns 0 even then, as a lost fsync error would — UNCONFIRMED that no supported
// deployment runs such a kernel, so the error path is the same as fsync's.
func (b *outbox) syncFolded(dir *os.File, _ []string) error {
	if err := b.step("syncfs"); err != nil {
		return err
	}
	return unix.Syncfs(int(dir.Fd()))
}
