package annuaire

import (
	"slices"
	"sync"
)

// lineSet is a set of the data lines of an [Extraction], by index: what a reconciliation has
// judged already, one bit a line.
type lineSet []uint64

func newLineSet(x *Extraction) lineSet { return make(lineSet, (len(x.starts)+63)/64) }

func (s lineSet) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

func (s lineSet) add(i int) { s[i/64] |= 1 << (i % 64) }

// lookupMarked is [Extraction.Lookup] that also adds the lines of address to s (nil: none),
// with one probe of the index.
func (x *Extraction) lookupMarked(dst []Entry, address string, s lineSet) []Entry {
	slot, flags, ok := x.lookupSlot(address, x.hashAddress(address))
	if !ok {
		return dst
	}
	if s != nil {
		x.markSlot(s, slot)
	}
	return x.entriesOf(dst, slot, flags)
}

// markSlot adds the lines of the address of an index slot to s.
func (x *Extraction) markSlot(s lineSet, slot uint64) {
	if slot&addrMany != 0 {
		for _, i := range x.dups[slot&addrRef] {
			s.add(int(i))
		}
		return
	}
	i := int(slot >> lineShift & noLine)
	if i == noLine { // an index too large for a slot: found by the line's start
		i, _ = slices.BinarySearch(x.starts, uint32(slot&addrRef))
	}
	s.add(i)
}

// staleLines returns the start of the first line of each address of the domains that judged
// does not hold, in file order: the published BALs the registry does not have. Two workers scan
// a half of the file each, reading judged and the index only.
func (x *Extraction) staleLines(judged lineSet, domains *domainSet) []uint32 {
	const workers = 2
	parts := make([][]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		from, to := len(x.starts)*w/workers, len(x.starts)*(w+1)/workers
		wg.Go(func() {
			for i := from; i < to; i++ {
				if judged.has(i) {
					continue
				}
				at := x.starts[i]
				addr := lineAddress(x.data, at)
				if domains.has(addr) && x.firstLine(addr, i) {
					parts[w] = append(parts[w], at)
				}
			}
		})
	}
	wg.Wait()
	return slices.Concat(parts...)
}

// firstLine reports whether data line i is the first line of its address, so that an address
// on several lines is reported once.
func (x *Extraction) firstLine(addr string, i int) bool {
	j, ok := x.findSlot(addr, x.hashAddress(addr))
	if !ok {
		return false
	}
	slot := x.addrSlots[j]
	return slot&addrMany == 0 || int(x.dups[slot&addrRef][0]) == i
}
