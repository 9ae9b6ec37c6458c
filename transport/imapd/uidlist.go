package imapd

import (
	"iter"
	"sort"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// uidList is a session's view of the UIDs of the selected folder, in sequence-number order,
// kept as runs of consecutive UIDs: a folder that seldom expunges is a few runs whatever its
// size, so SELECT and the sequence-number look-ups cost the gaps, not the messages.
type uidList struct {
	runs []mailbox.UIDRun // ascending, never touching
	ends []uint32         // ends[i]: how many UIDs runs[:i+1] hold
}

func newUIDList(runs []mailbox.UIDRun) uidList {
	l := uidList{runs: runs}
	l.count()
	return l
}

func (l *uidList) count() {
	l.ends = l.ends[:0]
	n := uint32(0)
	for _, r := range l.runs {
		n += r.Last - r.First + 1
		l.ends = append(l.ends, n)
	}
}

// len is the number of messages.
func (l *uidList) len() uint32 {
	if len(l.ends) == 0 {
		return 0
	}
	return l.ends[len(l.ends)-1]
}

// last is the greatest UID, 0 when there is none.
func (l *uidList) last() uint32 {
	if len(l.runs) == 0 {
		return 0
	}
	return l.runs[len(l.runs)-1].Last
}

// start is how many UIDs come before runs[r].
func (l *uidList) start(r int) uint32 {
	if r == 0 {
		return 0
	}
	return l.ends[r-1]
}

// at returns the UID at index i (sequence number i+1); i < len.
func (l *uidList) at(i uint32) uint32 {
	r := sort.Search(len(l.ends), func(k int) bool { return l.ends[k] > i })
	return l.runs[r].First + (i - l.start(r))
}

// search returns the index of uid, or where it would be, and whether it is there (as
// slices.BinarySearch over the plain list).
func (l *uidList) search(uid uint32) (uint32, bool) {
	r := sort.Search(len(l.runs), func(k int) bool { return l.runs[k].Last >= uid })
	if r == len(l.runs) {
		return l.len(), false
	}
	if uid < l.runs[r].First {
		return l.start(r), false
	}
	return l.start(r) + uid - l.runs[r].First, true
}

// add appends uid, greater than every UID of the list.
func (l *uidList) add(uid uint32) {
	n, total := len(l.runs), l.len()
	if n > 0 && l.runs[n-1].Last+1 == uid {
		l.runs[n-1].Last = uid
		l.ends[n-1]++
		return
	}
	l.runs = append(l.runs, mailbox.UIDRun{First: uid, Last: uid})
	l.ends = append(l.ends, total+1)
}

// all yields the index and UID of each message, in order, from index from.
func (l *uidList) all(from uint32) iter.Seq2[uint32, uint32] {
	return func(yield func(uint32, uint32) bool) {
		if from >= l.len() {
			return
		}
		r := sort.Search(len(l.ends), func(k int) bool { return l.ends[k] > from })
		i := from
		for ; r < len(l.runs); r++ {
			for u := l.runs[r].First + (i - l.start(r)); ; u++ {
				if !yield(i, u) {
					return
				}
				i++
				if u == l.runs[r].Last {
					break
				}
			}
		}
	}
}

// remove takes out the UIDs of gone, sorted ascending; those absent are ignored.
func (l *uidList) remove(gone []uint32) {
	if len(gone) == 0 {
		return
	}
	out := make([]mailbox.UIDRun, 0, len(l.runs)+len(gone))
	j := 0
	for _, r := range l.runs {
		first, open := r.First, true // the part of r not yet emitted starts at first
		for ; j < len(gone) && gone[j] <= r.Last; j++ {
			u := gone[j]
			if !open || u < first {
				continue
			}
			if u > first {
				out = append(out, mailbox.UIDRun{First: first, Last: u - 1})
			}
			if u == r.Last {
				open = false
			} else {
				first = u + 1
			}
		}
		if open {
			out = append(out, mailbox.UIDRun{First: first, Last: r.Last})
		}
	}
	l.runs = out
	l.count()
}
