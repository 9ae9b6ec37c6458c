package annuaire

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// fieldStarts holds where the fields of a line start, relative to the line's start: field k
// runs from [k] to [k+1]-1 (the byte before the next field is its separator, or for the last
// field its end: '\n', a trailing '|', a '\r' before them, or the end of the text). Its size,
// a power of two, spares cut the bounds checks.
type fieldStarts [64]uint32

// cut finds the fields of the line that starts at byte at of data, a line validated at load
// (30 separators at least, then its end): the separators eight bytes at a time, then the end of
// the last field. It only records where each field starts: building the strings here would
// double its work (branch-free variants that record four separators a word unconditionally
// proved slower: most words have one or two).
func cut(data string, at uint32, s *fieldStarts) {
	const seps = int(NumColumns) - 1
	text := unsafe.Pointer(unsafe.StringData(data))
	s[0] = 0
	n, i := 1, int(at) // n: the fields whose start is known
	for ; i+8 <= len(data); i += 8 {
		off := uint32(i) - at + 1 // the start of a field after a separator at byte 0 of the word
		for m := pipes(binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(text, i)), 8))); m != 0; m &= m - 1 {
			s[n&63] = off + uint32(bits.TrailingZeros64(m)>>3)
			if n++; n > seps {
				goto last
			}
		}
	}
	for ; n <= seps; i++ { // the last bytes of the text
		if data[i] == '|' {
			s[n] = uint32(i) - at + 1
			n++
		}
	}
last:
	// The last field ends at the first '|' or '\n' after its start, or with the text; a '\r'
	// before a '\n' or the end of the text is not part of it.
	from := int(at + s[seps])
	end := len(data)
	for j := from; j < len(data); j++ {
		if c := data[j]; c == '|' || c == '\n' {
			end = j
			break
		}
	}
	s[NumColumns] = uint32(end) - at + 1
	if end > from && data[end-1] == '\r' && (end == len(data) || data[end] == '\n') {
		s[NumColumns]--
	}
}

// fields sets f to the fields of the line at byte at of data, as cut found them.
func (s *fieldStarts) fields(data string, at uint32, f *Fields) {
	line := unsafe.Add(unsafe.Pointer(unsafe.StringData(data)), at)
	for k := range f {
		f[k] = unsafe.String((*byte)(unsafe.Add(line, s[k])), s[k+1]-s[k]-1)
	}
}

// entry fills *e from the line at byte at of data, as cut found its fields, with no
// intermediate [Fields]. Values are trimmed only when one of them might need it: when the first
// or last byte of a value is not plain (see [plainByte]; a value that ends with an accented
// letter, or a space, sends the line through trim).
func (s *fieldStarts) entry(data string, at uint32, e *Entry) {
	line := unsafe.Add(unsafe.Pointer(unsafe.StringData(data)), at)
	byteAt := func(i uint32) byte { return *(*byte)(unsafe.Add(line, i)) }
	var odd byte
	for k := range ColCountry {
		from, end := s[k], s[k+1]-1
		*e.column(k) = unsafe.String((*byte)(unsafe.Add(line, from)), end-from)
		odd |= notPlain[byteAt(from)] | notPlain[byteAt(end-1)] // an empty value reads its separators, '|'
	}
	from, end := s[ColCountry], s[NumColumns]-1 // the last one may end the text
	if e.Postal.Country = unsafe.String((*byte)(unsafe.Add(line, from)), end-from); end > from {
		odd |= notPlain[byteAt(from)] | notPlain[byteAt(end-1)]
	}
	if odd != 0 {
		for k := range NumColumns {
			*e.column(k) = trim(*e.column(k))
		}
	}
	e.finish()
}

// notPlain is 1 for the bytes that do not make plainByte true.
var notPlain = func() (t [256]byte) {
	for c := range t {
		if !plainByte(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()
