package annuaire

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"unsafe"
)

// The address index of an [Extraction] is an open-addressing table of uint64 slots, a power of
// two of them, at most three quarters full: each slot holds the high 11 bits of the address's
// hash, the index of its line (for its record of field offsets, see lineRecord) and where the
// line starts in the text (or, with the addrMany bit, which list of lines in dups when the
// address is on several lines; 0 is an empty slot, as no data line starts at byte 0). Probing
// compares the stored hash bits before reading a line (a false match, one probe in 2,048, costs
// one line read), so a lookup reads one slot (one cache line, nearly always) and the one line it
// names: two memory accesses where a map of strings takes four or five at this size, in 8 bytes
// a slot.
//
// Addresses are compared ASCII case-insensitively, and hashed lower-cased.

const (
	addrMany  = 1 << 31      // in a slot: the address is on several lines, listed in dups
	addrRef   = addrMany - 1 // the line start, or the index in dups
	lineShift = 32           // the line index, above
	lineBits  = 21
	noLine    = 1<<lineBits - 1                      // a line index too large for a slot: no record
	addrHash  = ^uint64(1<<(lineShift+lineBits) - 1) // the hash bits of a slot
	maxFold   = 320                                  // longest address hashed lower-cased on the stack
)

// indexAddresses fills addrSlots and dups from starts.
func (x *Extraction) indexAddresses() {
	size := 8
	for size*3 < len(x.starts)*4 { // at most 3/4 full
		size <<= 1
	}
	x.addrSlots = hugeSlice[uint64](size)
	x.addrSeed = maphash.MakeSeed()
	for i, at := range x.starts {
		a := lineAddress(x.data, at)
		h := x.hashAddress(a)
		j, found := x.findSlot(a, h)
		if !found {
			x.addrSlots[j] = h&addrHash | uint64(min(i, noLine))<<lineShift | uint64(at)
			continue
		}
		s := x.addrSlots[j]
		if s&addrMany == 0 { // the second line of this address: start its list
			first, _ := slices.BinarySearch(x.starts, uint32(s))
			x.dups = append(x.dups, []int32{int32(first)})
			s = s&addrHash | noLine<<lineShift | addrMany | uint64(len(x.dups)-1)
			x.addrSlots[j] = s
		}
		d := s & addrRef
		x.dups[d] = append(x.dups[d], int32(i))
	}
}

// findSlot returns the slot of address a, whose hash is h, or the empty slot where it goes.
func (x *Extraction) findSlot(a string, h uint64) (int, bool) {
	mask := uint64(len(x.addrSlots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.addrSlots[i]
		if s == 0 {
			return int(i), false
		}
		if s&addrHash == h&addrHash && x.addressIs(x.slotStart(s), a) {
			return int(i), true
		}
	}
}

// lookupSlot is findSlot for Lookup: it returns the slot itself and the flags of its line's
// record (see recordFlags), which it reads before comparing the line with a, so that the two
// cache misses, line and record, overlap instead of following each other (about 90 ns a lookup
// when the index is not in cache).
func (x *Extraction) lookupSlot(a string, h uint64) (s uint64, flags byte, ok bool) {
	mask := uint64(len(x.addrSlots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s = x.addrSlots[i]
		if s == 0 {
			return 0, 0, false
		}
		if s&addrHash != h&addrHash {
			continue
		}
		flags = x.recordFlags(int(s >> lineShift & noLine))
		if x.addressIs(x.slotStart(s), a) {
			return s, flags, true
		}
	}
}

// addressIs reports whether the line that starts at byte at has address a (ASCII
// case-insensitive). It compares a with the bytes after the first '|' in place, and only when
// they differ, or when a might have spaces around it, cuts and trims the column to compare.
func (x *Extraction) addressIs(at uint32, a string) bool {
	line := x.data[at:]
	p := 0
	for p < len(line) && line[p] != '|' { // the type column: a few bytes
		p++
	}
	p++
	visible := func(c byte) bool { return '!' <= c && c <= '~' } // then no trimming applies
	if a != "" && visible(a[0]) && visible(a[len(a)-1]) && p+len(a) < len(line) && line[p+len(a)] == '|' &&
		equalFoldASCII(line[p:p+len(a)], a) {
		return true
	}
	return equalFoldASCII(lineAddress(x.data, at), a)
}

// slotStart returns where the (first) line of a non-empty slot starts.
func (x *Extraction) slotStart(s uint64) uint32 {
	if s&addrMany != 0 {
		return x.starts[x.dups[s&addrRef][0]]
	}
	return uint32(s & addrRef)
}

// hashAddress hashes a lower-cased (ASCII only), without allocating for an address of usual
// length.
func (x *Extraction) hashAddress(a string) uint64 {
	if !hasUpperASCII(a) {
		return maphash.String(x.addrSeed, a)
	}
	var buf [maxFold]byte
	b := buf[:0]
	if len(a) > len(buf) {
		b = make([]byte, 0, len(a))
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return maphash.Bytes(x.addrSeed, b)
}

// lineAddress returns the address (second column, trimmed) of the line that starts at byte at
// of data, a line validated at load (its separators are there).
func lineAddress(data string, at uint32) string {
	line := data[at:]
	line = line[strings.IndexByte(line, '|')+1:]
	return strings.TrimSpace(line[:strings.IndexByte(line, '|')])
}

// equalFoldASCII reports whether a and b are equal, ignoring the case of ASCII letters. It
// compares eight bytes at a time, lower-casing a word only when it differs.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	i := 0
	for ; i+8 <= len(a); i += 8 {
		if v, w := word(a, i), word(b, i); v != w && lowerWord(v) != lowerWord(w) {
			return false
		}
	}
	for ; i < len(a); i++ {
		c, d := a[i], b[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// hasUpperASCII reports whether s has an ASCII capital letter, eight bytes at a time and with
// no branch but the loop's: an address of 8 bytes or more ends with a word that overlaps the
// one before.
func hasUpperASCII(s string) bool {
	if len(s) < 8 {
		for i := 0; i < len(s); i++ {
			if 'A' <= s[i] && s[i] <= 'Z' {
				return true
			}
		}
		return false
	}
	upper := upperBytes(word(s, len(s)-8))
	for i := 0; i+8 <= len(s); i += 8 {
		upper |= upperBytes(word(s, i))
	}
	return upper != 0
}

// word returns the eight bytes of s from i, little-endian: i+8 <= len(s).
func word(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
}

// upperBytes returns the high bit of each byte of w that is an ASCII capital letter. The bytes
// are added to with their high bit cleared, so no carry crosses a byte.
func upperBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := w &^ highs
	ge := low + (0x80-'A')*ones  // high bit: the byte is >= 'A'
	gt := low + (0x7F-'Z')*ones  // high bit: the byte is > 'Z'
	return ge &^ gt &^ w & highs // and the byte is ASCII
}

// lowerWord lower-cases the ASCII capital letters of w ('A' + 0x20 is 'a'; 0x80 >> 2 is 0x20).
func lowerWord(w uint64) uint64 { return w | upperBytes(w)>>2 }
