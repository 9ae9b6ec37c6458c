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

// plain reports whether no value of the line at byte at of data, as cut found its fields,
// needs trimming: the first and last byte of each is plain (see [plainByte]; a value that ends
// with an accented letter, or a space, sends the line through trim).
func (s *fieldStarts) plain(data string, at uint32) bool {
	var odd byte
	for k := range NumColumns {
		if from, end := at+s[k], at+s[k+1]-1; end > from {
			odd |= notPlain[data[from]] | notPlain[data[end-1]]
		}
	}
	return odd == 0
}

// lineRecord is what the index keeps of a line so that Lookup builds its entry without reading
// the line (the strings of the entry point into it): where its fields start, [k] for field k
// from 1 to 31 as in [fieldStarts], relative to the line's start, when they all fit in a byte
// (the real lines are about 165 bytes long), and in [0] flags: recordLong when they do not,
// recordTrim when a value has spaces to trim, and what [Entry.finish] would read of the line
// (the Dématérialisation flag, the two identifier types as indexes in their tables). 32 bytes a
// line: 17 MB for the real file.
type lineRecord [32]byte

const (
	recordLong  = 1 << iota // a field starts past byte 255 of the line: cut the line instead
	recordTrim              // some value has spaces to trim
	recordDemat             // the Dématérialisation column says yes

	recordPPShift     = 3 // 2 bits: 0 empty, 1+i ppIDTypes[i], 3 another value (read it)
	recordStructShift = 5 // 3 bits: 0 empty, 1+i structureIDTypes[i], 7 another value
)

// recordOf builds the record of a line whose fields are f, as split cut them: consecutive
// substrings of the line, one separator apart.
func recordOf(f *Fields) (r lineRecord) {
	start := 0
	for k, v := range f {
		if len(trim(v)) != len(v) { // exact, unlike plain: the load can afford trim
			r[0] = recordTrim
		}
		if start += len(v) + 1; start > 255 { // the start of the next field
			return lineRecord{recordLong}
		}
		r[k+1] = byte(start)
	}
	if parseFlag(trim(f[ColDematerialisation])) {
		r[0] |= recordDemat
	}
	r[0] |= typeIndex(ppIDTypes, trim(f[ColPPIDType]), 3)<<recordPPShift |
		typeIndex(structureIDTypes, trim(f[ColStructureIDType]), 7)<<recordStructShift
	return r
}

// typeIndex is 0 for an empty s, 1+i when s is the code or name of table[i] (and i+1 < other),
// else other: the identifier type of a lineRecord.
func typeIndex(table [][2]string, s string, other byte) byte {
	if s == "" {
		return 0
	}
	for i, p := range table {
		if (s == p[0] || s == p[1]) && byte(i+1) < other {
			return byte(i + 1)
		}
	}
	return other
}

// finishFrom is [Entry.finish] for an entry set from a line record with flags: what finish reads
// of the line comes from the flags, but for an identifier type outside the tables and a
// national identifier to derive.
func (e *Entry) finishFrom(flags byte) {
	if i := flags >> recordPPShift & 3; i == 3 {
		e.Person.IDType = typeName(ppIDTypes, e.Person.IDType)
	} else if i > 0 {
		e.Person.IDType = ppIDTypes[i-1][1]
	}
	if i := flags >> recordStructShift & 7; i == 7 {
		e.Structure.IDType = typeName(structureIDTypes, e.Structure.IDType)
	} else if i > 0 {
		e.Structure.IDType = structureIDTypes[i-1][1]
	}
	e.Dematerialisation = flags&recordDemat != 0
	e.Description = ""
	if e.Person.NationalID == "" && e.Person.ID != "" {
		e.Person.NationalID = nationalIDOf(e.Person.IDType, e.Person.ID)
	}
}

// setEntry sets the strings of *e (see [Entry.column]) from the line at line, whose fields start
// at starts[1:32] (field 0 at 0): the offsets of a [fieldStarts] or of a [lineRecord]. It reads
// nothing of the line. It is written out field by field rather than looped over entryColumns:
// the straight-line stores share one write-barrier check (Lookup of a cached entry: 86 -> 77 ns).
// checkIndex (FuzzIndex, the load tests) checks it against [Fields.Entry], which goes through
// entryColumns.
func setEntry[T uint8 | uint32](starts *[32]T, line unsafe.Pointer, e *Entry) {
	col := func(k Column) string {
		from := uint32(starts[k])
		return unsafe.String((*byte)(unsafe.Add(line, from)), uint32(starts[k+1])-from-1)
	}
	p, st, pa := &e.Person, &e.Structure, &e.Postal
	e.Type = BALType(unsafe.String((*byte)(line), uint32(starts[1])-1))
	e.Address = col(ColAddress)
	p.IDType, p.ID, p.NationalID = col(ColPPIDType), col(ColPPID), col(ColNationalID)
	st.IDType, st.ID, st.Service = col(ColStructureIDType), col(ColStructureID), col(ColService)
	p.Civility, p.LastName, p.FirstName = col(ColCivility), col(ColLastName), col(ColFirstName)
	p.ProfessionCategory, p.ProfessionCategoryLabel = col(ColProfessionCategory), col(ColProfessionCategoryLabel)
	p.ProfessionCode, p.ProfessionLabel = col(ColProfessionCode), col(ColProfessionLabel)
	p.SpecialtyCode, p.SpecialtyLabel = col(ColSpecialtyCode), col(ColSpecialtyLabel)
	e.Description = col(ColDematerialisation)
	st.Name, st.TradeName = col(ColStructureName), col(ColTradeName)
	pa.Complement, pa.Distribution = col(ColL2Complement), col(ColL3Distribution)
	pa.Number, pa.NumberComplement = col(ColL4Number), col(ColL4NumberComplement)
	pa.StreetType, pa.Street = col(ColL4StreetType), col(ColL4Street)
	pa.Locality, pa.CityLine = col(ColL5Locality), col(ColL6CityLine)
	pa.PostalCode, pa.Departement, pa.Country = col(ColPostalCode), col(ColDepartement), col(ColCountry)
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
