package imapd

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// FuzzUIDList drives a uidList and a plain sorted list of the same UIDs through the same
// appends and removals (the gaps and the removals come from the input, the UIDs up to the
// greatest uint32) and checks after each step that the list answers as the plain one does:
// length, last UID, the UID at each index, the index of each UID, and the walk from each index.
func FuzzUIDList(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 0, 1}, []byte{2, 1, 0}, false)
	f.Add([]byte{5, 0, 0, 0, 9}, []byte{0, 0, 3, 7}, true)
	f.Add([]byte{}, []byte{1}, false)
	f.Fuzz(func(t *testing.T, gaps, drops []byte, high bool) {
		if len(gaps) > 300 || len(drops) > 100 {
			return
		}
		var l uidList
		var plain []uint32
		u := uint32(0)
		if high { // runs that end at the greatest UID
			u = math.MaxUint32 - uint32(len(gaps))*3
		}
		for _, g := range gaps {
			if u >= math.MaxUint32-uint32(g%3) {
				break
			}
			u += uint32(g%3) + 1
			l.add(u)
			plain = append(plain, u)
		}
		check := func(step string) {
			t.Helper()
			if l.len() != uint32(len(plain)) {
				t.Fatalf("%s: len %d, want %d (%v)", step, l.len(), len(plain), plain)
			}
			want := uint32(0)
			if len(plain) > 0 {
				want = plain[len(plain)-1]
			}
			if l.last() != want {
				t.Fatalf("%s: last %d, want %d", step, l.last(), want)
			}
			for i, u := range plain {
				if got := l.at(uint32(i)); got != u {
					t.Fatalf("%s: at(%d) = %d, want %d", step, i, got, u)
				}
				for _, v := range []uint32{u, u - 1, u + 1} {
					wi, wok := slices.BinarySearch(plain, v)
					if gi, gok := l.search(v); gi != uint32(wi) || gok != wok {
						t.Fatalf("%s: search(%d) = %d %v, want %d %v", step, v, gi, gok, wi, wok)
					}
				}
			}
			for from := range uint32(len(plain)) + 1 {
				var walked []uint32
				for i, u := range l.all(from) {
					if i != from+uint32(len(walked)) {
						t.Fatalf("%s: all(%d) yields index %d", step, from, i)
					}
					walked = append(walked, u)
				}
				if !slices.Equal(walked, plain[from:]) {
					t.Fatalf("%s: all(%d) = %v, want %v", step, from, walked, plain[from:])
				}
			}
			for i := 1; i < len(l.runs); i++ {
				if l.runs[i].First <= l.runs[i-1].Last+1 {
					t.Fatalf("%s: runs %v touch", step, l.runs)
				}
			}
		}
		check("built")
		for k := 0; k < len(drops) && len(plain) > 0; k += 2 {
			var gone []uint32
			n := int(drops[k]%4) + 1
			for j := range n {
				gone = append(gone, plain[(int(drops[k])*7+j*int(drops[min(k+1, len(drops)-1)]+1))%len(plain)]+uint32(j%2))
			}
			slices.Sort(gone)
			gone = slices.Compact(gone)
			l.remove(gone)
			plain = slices.DeleteFunc(plain, func(u uint32) bool { _, ok := slices.BinarySearch(gone, u); return ok })
			check("after remove")
		}
		if l2 := newUIDList(slices.Clone(l.runs)); l2.len() != l.len() || !slices.Equal(l2.ends, l.ends) {
			t.Fatalf("newUIDList(%v): ends %v, want %v", l.runs, l2.ends, l.ends)
		}
	})
}

// TestUIDListForget: expunges reported from a view of 100,000 UIDs in two runs carry the
// sequence numbers the client has at each EXPUNGE (RFC 3501 §7.4.1), leave the runs split
// where they were, and a write that fails keeps the UIDs not yet reported.
func TestUIDListForget(t *testing.T) {
	sel := &selected{uids: newUIDList([]mailbox.UIDRun{{First: 1, Last: 50_000}, {First: 50_010, Last: 100_009}}), recent: map[uint32]bool{}}
	s := &session{sel: sel}
	var seqs []uint32
	if err := s.forget([]uint32{100_009, 1, 50_005, 50_010, 2}, func(seq uint32) error { seqs = append(seqs, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	// UIDs 1, 2 are seqs 1, 1 after the first; 50,010 was seq 50,001, now 49,999; 100,009 was
	// 100,000, now 99,997
	if want := []uint32{1, 1, 49_999, 99_997}; !slices.Equal(seqs, want) {
		t.Fatalf("EXPUNGE seqs %v, want %v", seqs, want)
	}
	if want := []mailbox.UIDRun{{First: 3, Last: 50_000}, {First: 50_011, Last: 100_008}}; !slices.Equal(sel.uids.runs, want) || sel.uids.len() != 99_996 {
		t.Fatalf("runs %v (%d UIDs), want %v", sel.uids.runs, sel.uids.len(), want)
	}
	broken := errors.New("connection lost")
	calls := 0
	err := s.forget([]uint32{3, 4, 5}, func(uint32) error {
		if calls++; calls == 2 {
			return broken
		}
		return nil
	})
	if !errors.Is(err, broken) || sel.uids.at(0) != 4 || sel.uids.len() != 99_995 {
		t.Fatalf("failed write: %v, first UID %d, %d UIDs; want UID 3 alone forgotten", err, sel.uids.at(0), sel.uids.len())
	}
}
