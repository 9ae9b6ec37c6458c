package annuaire

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks Linux to back b with huge pages (MADV_HUGEPAGE; transparent huge pages
// are often enabled "madvise" only). The index is read at random places over some 100 MB: with
// 4 kB pages nearly every lookup also misses the TLB, and a page walk costs as much as the
// lookup. Best effort: an error (an old kernel, THP disabled) changes nothing but speed.
func adviseHugePages(b []byte) {
	const page = 4096
	if cap(b) < 2<<20 {
		return
	}
	b = b[:cap(b)]
	start := (page - int(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%page) % page
	end := len(b) - (len(b)-start)%page
	if start < end {
		syscall.Madvise(b[start:end], syscall.MADV_HUGEPAGE)
	}
}
