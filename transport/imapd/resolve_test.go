package imapd

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// FuzzResolve checks the message sets of a command (client input: ranges in any order,
// overlapping, reversed, with "*" as 0) against a plain reading of RFC 3501 §6.4.8 and
// §9 seq-range: every message of the view whose sequence number (or UID) falls in a range,
// once, in order. The view's UIDs and the ranges come from the fuzz input.
func FuzzResolve(f *testing.F) {
	f.Add([]byte{1, 2, 3, 5, 8, 13}, []byte{1, 3, 2, 2, 0, 4}, false)
	f.Add([]byte{1, 2, 3, 5, 8, 13}, []byte{6, 100, 1, 1, 100, 0}, true)
	f.Add([]byte{}, []byte{1, 0}, true)
	f.Add([]byte{7}, []byte{0, 0, 9, 12}, false)
	f.Fuzz(func(t *testing.T, gaps, ranges []byte, uid bool) {
		if len(gaps) > 200 || len(ranges) > 40 {
			return
		}
		sel := &selected{}
		u := uint32(0)
		var plain []uint32
		for _, g := range gaps {
			u += uint32(g%8) + 1
			sel.uids.add(u)
			plain = append(plain, u)
		}
		var set imap.NumSet
		var seqs imap.SeqSet
		var uids imap.UIDSet
		for i := 0; i+1 < len(ranges); i += 2 {
			a, b := uint32(ranges[i]), uint32(ranges[i+1])
			seqs = append(seqs, imap.SeqRange{Start: a, Stop: b})
			uids = append(uids, imap.UIDRange{Start: imap.UID(a), Stop: imap.UID(b)})
		}
		if uid {
			set = uids
		} else {
			set = seqs
		}
		var want []target
		n := uint32(len(plain))
		for i, u := range plain {
			seq := uint32(i + 1)
			if (!uid && seqIn(seqs, seq, n)) || (uid && uidIn(uids, u, plain[n-1])) {
				want = append(want, target{seq, u})
			}
		}
		if got := sel.resolve(set); !slices.Equal(got, want) {
			t.Fatalf("resolve(%v) over %v = %v, want %v", set, plain, got, want)
		}
	})
}
