package annuaire

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/mssante-go/sdk/internal/fold"
)

// Column is a column of the extraction file, in file order.
type Column int

// The 31 columns of Extraction_Correspondance_MSSante, in order.
const (
	ColType Column = iota
	ColAddress
	ColPPIDType
	ColPPID
	ColNationalID
	ColStructureIDType
	ColStructureID
	ColService
	ColCivility
	ColLastName
	ColFirstName
	ColProfessionCategory
	ColProfessionCategoryLabel
	ColProfessionCode
	ColProfessionLabel
	ColSpecialtyCode
	ColSpecialtyLabel
	ColDematerialisation
	ColStructureName
	ColTradeName
	ColL2Complement
	ColL3Distribution
	ColL4Number
	ColL4NumberComplement
	ColL4StreetType
	ColL4Street
	ColL5Locality
	ColL6CityLine
	ColPostalCode
	ColDepartement
	ColCountry
	NumColumns // the number of columns: 31
)

// Header returns the column names of the extraction file's header line, in order.
func Header() [NumColumns]string { return header }

var header = [NumColumns]string{
	"Type de BAL", "Adresse BAL", "Type Identifiant PP", "Identifiant PP",
	"Identification nationale PP", "Type identifiant structure", "Identification Structure",
	"Service de rattachement", "Civilité d'exercice", "Nom d'exercice", "Prénom d'exercice",
	"Catégorie profession", "Libellé de catégorie profession", "Code Profession",
	"Libellé Profession", "Code savoir-faire", "Libellé savoir-faire", "Dématérialisation",
	"Raison Sociale structure BAL", "Enseigne commerciale structure BAL",
	"L2COMPLEMENTLOCALISATION", "L3COMPLEMENTDISTRIBUTION", "L4NUMEROVOIE",
	"L4COMPLEMENTNUMEROVOIE", "NL4TYPEVOIE", "L4LIBELLEVOIE", "L5LIEUDITMENTION",
	"L6LIGNEACHEMINEMENT", "Code postal", "Département", "Pays",
}

// HeaderLine returns the header line of the extraction file, without its line end.
func HeaderLine() string { return headerLine }

var headerLine = strings.Join(header[:], "|")

// MaxLineSize bounds one line of the extraction file (the real lines are under 1 kB).
const MaxLineSize = 64 << 10

// Fields holds the values of one line, indexed by Column.
type Fields [NumColumns]string

// checkHeader compares a header line with [Header], ignoring case, accents, spacing and a
// UTF-8 byte order mark, and names the first column that differs.
func checkHeader(line string) error {
	line = strings.TrimPrefix(strings.TrimRight(line, "\r\n"), "\uFEFF")
	cols := strings.Split(line, "|")
	if len(cols) == int(NumColumns)+1 && cols[NumColumns] == "" {
		cols = cols[:NumColumns] // a trailing '|'
	}
	if len(cols) != int(NumColumns) {
		return fmt.Errorf("%w: the header has %d columns, want %d (%s…)", ErrFormat, len(cols), NumColumns, truncate(line, 60))
	}
	f := cols
	for i := range f {
		if fold.Key(f[i]) != fold.Key(header[i]) {
			return fmt.Errorf("%w: header column %d is %q, want %q", ErrFormat, i+1, truncate(f[i], 60), header[i])
		}
	}
	return nil
}

// ParseLine splits one data line (without its line end) into its 31 fields. A trailing '|'
// (an empty 32nd field) is accepted; any other count is an error.
func ParseLine(line string) (Fields, error) {
	var f Fields
	_, err := splitInto(&f, line)
	return f, err
}

func splitInto(f *Fields, line string) (int, error) {
	if len(line) > MaxLineSize {
		return 0, fmt.Errorf("%w: line longer than %d bytes", ErrFormat, MaxLineSize)
	}
	if !utf8.ValidString(line) {
		return 0, fmt.Errorf("%w: line is not UTF-8", ErrFormat)
	}
	return split(f, line)
}

// split cuts a line into f without validating its text (the index does so once, at load).
// It finds the separators eight bytes at a time.
func split(f *Fields, line string) (int, error) {
	n, start, i := 0, 0, 0
	for ; i+8 <= len(line); i += 8 {
		for m := pipes(binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(line[i:]), 8))); m != 0; m &= m - 1 {
			at := i + bits.TrailingZeros64(m)/8
			if n == int(NumColumns)-1 {
				return tooMany(line, at, f, n)
			}
			f[n] = line[start:at]
			n++
			start = at + 1
		}
	}
	for ; i < len(line); i++ {
		if line[i] != '|' {
			continue
		}
		if n == int(NumColumns)-1 {
			return tooMany(line, i, f, n)
		}
		f[n] = line[start:i]
		n++
		start = i + 1
	}
	if n != int(NumColumns)-1 {
		return 0, fmt.Errorf("%w: %d fields, want %d", ErrFormat, n+1, NumColumns)
	}
	f[n] = line[start:]
	return int(NumColumns), nil
}

// pipes returns the high bit of each byte of w that is a '|' (0x7C). Unlike the shorter
// (x-0x01…)&^x&0x80… it has no false positive: no carry crosses a byte, so a '}' (0x7D) after a
// '|' is not taken for one.
func pipes(w uint64) uint64 {
	const lows, highs = 0x7F7F7F7F7F7F7F7F, 0x8080808080808080
	x := w ^ 0x7C7C7C7C7C7C7C7C // the '|' bytes become 0
	return ^((x&lows + lows) | x) & highs
}

// tooMany handles a 32nd field: allowed only empty, after a trailing '|' at position at.
func tooMany(line string, at int, f *Fields, n int) (int, error) {
	if at+1 != len(line) {
		return 0, fmt.Errorf("%w: more than %d fields", ErrFormat, NumColumns)
	}
	start := strings.LastIndexByte(line[:at], '|') + 1
	f[n] = line[start:at]
	return int(NumColumns), nil
}

// Entry builds the [Entry] a line describes. Values are trimmed of surrounding spaces.
func (f *Fields) Entry() Entry {
	var e Entry
	f.entryInto(&e)
	return e
}

// entryInto fills *e from f, field by field (no temporary Entry).
func (f *Fields) entryInto(e *Entry) {
	for k := range f {
		*e.column(Column(k)) = f[k]
	}
	e.trimStrings()
	e.finish()
}

// trimStrings trims the strings of e that the columns set.
func (e *Entry) trimStrings() {
	for k := range NumColumns {
		*e.column(k) = trim(*e.column(k))
	}
}

// column returns the string of e that column c sets, before [Entry.finish] completes it (the
// identifier types hold their codes, Description the Dématérialisation column).
func (e *Entry) column(c Column) *string {
	return (*string)(unsafe.Add(unsafe.Pointer(e), entryColumns[c]))
}

// entryColumns holds the offset in an Entry of the string of each column: the one mapping of
// columns to an Entry, for [Fields.Entry] and the index's line parser.
var entryColumns = func() (offsets [NumColumns]uintptr) {
	var e Entry
	p, st, pa := &e.Person, &e.Structure, &e.Postal
	for c, s := range [NumColumns]*string{
		ColType:                    (*string)(&e.Type),
		ColAddress:                 &e.Address,
		ColPPIDType:                &p.IDType,
		ColPPID:                    &p.ID,
		ColNationalID:              &p.NationalID,
		ColStructureIDType:         &st.IDType,
		ColStructureID:             &st.ID,
		ColService:                 &st.Service,
		ColCivility:                &p.Civility,
		ColLastName:                &p.LastName,
		ColFirstName:               &p.FirstName,
		ColProfessionCategory:      &p.ProfessionCategory,
		ColProfessionCategoryLabel: &p.ProfessionCategoryLabel,
		ColProfessionCode:          &p.ProfessionCode,
		ColProfessionLabel:         &p.ProfessionLabel,
		ColSpecialtyCode:           &p.SpecialtyCode,
		ColSpecialtyLabel:          &p.SpecialtyLabel,
		ColDematerialisation:       &e.Description,
		ColStructureName:           &st.Name,
		ColTradeName:               &st.TradeName,
		ColL2Complement:            &pa.Complement,
		ColL3Distribution:          &pa.Distribution,
		ColL4Number:                &pa.Number,
		ColL4NumberComplement:      &pa.NumberComplement,
		ColL4StreetType:            &pa.StreetType,
		ColL4Street:                &pa.Street,
		ColL5Locality:              &pa.Locality,
		ColL6CityLine:              &pa.CityLine,
		ColPostalCode:              &pa.PostalCode,
		ColDepartement:             &pa.Departement,
		ColCountry:                 &pa.Country,
	} {
		offsets[c] = uintptr(unsafe.Pointer(s)) - uintptr(unsafe.Pointer(&e))
	}
	return offsets
}()

// finish completes an Entry whose strings were set from the columns of a line (trimmed):
// identifier types from codes to names, the Dématérialisation flag from its column, a national
// identifier derived when the line has none.
func (e *Entry) finish() {
	flags := byte(3<<recordPPShift | 7<<recordStructShift) // both types read from their strings
	if parseFlag(e.Description) {
		flags |= recordDemat
	}
	e.finishFrom(flags)
}

// typeName is codeToName, with fast paths for the usual values: empty, or a one-byte code.
func typeName(table [][2]string, s string) string {
	switch len(s) {
	case 0:
		return s
	case 1:
		for _, p := range table {
			if len(p[0]) == 1 && p[0][0] == s[0] {
				return p[1]
			}
		}
	}
	return codeToName(table, s)
}

// Fields returns the extraction columns of e, the inverse of [Fields.Entry] for the values
// that survive it (codes are written in the form the extraction file uses).
func (e *Entry) Fields() Fields {
	var f Fields
	f[ColType] = string(e.Type)
	f[ColAddress] = e.Address
	f[ColPPIDType] = ppIDTypeCode(e.Person.IDType)
	f[ColPPID] = e.Person.ID
	f[ColNationalID] = e.Person.NationalID
	f[ColStructureIDType] = structureIDTypeCode(e.Structure.IDType)
	f[ColStructureID] = e.Structure.ID
	f[ColService] = e.Structure.Service
	f[ColCivility] = e.Person.Civility
	f[ColLastName] = e.Person.LastName
	f[ColFirstName] = e.Person.FirstName
	f[ColProfessionCategory] = e.Person.ProfessionCategory
	f[ColProfessionCategoryLabel] = e.Person.ProfessionCategoryLabel
	f[ColProfessionCode] = e.Person.ProfessionCode
	f[ColProfessionLabel] = e.Person.ProfessionLabel
	f[ColSpecialtyCode] = e.Person.SpecialtyCode
	f[ColSpecialtyLabel] = e.Person.SpecialtyLabel
	if e.Dematerialisation {
		f[ColDematerialisation] = "O"
	} else {
		f[ColDematerialisation] = "N"
	}
	f[ColStructureName] = e.Structure.Name
	f[ColTradeName] = e.Structure.TradeName
	f[ColL2Complement] = e.Postal.Complement
	f[ColL3Distribution] = e.Postal.Distribution
	f[ColL4Number] = e.Postal.Number
	f[ColL4NumberComplement] = e.Postal.NumberComplement
	f[ColL4StreetType] = e.Postal.StreetType
	f[ColL4Street] = e.Postal.Street
	f[ColL5Locality] = e.Postal.Locality
	f[ColL6CityLine] = e.Postal.CityLine
	f[ColPostalCode] = e.Postal.PostalCode
	f[ColDepartement] = e.Postal.Departement
	f[ColCountry] = e.Postal.Country
	return f
}

// trim is strings.TrimSpace with a fast path for the usual value: empty, or starting and
// ending with a visible ASCII character or the lead byte of a two-byte rune from U+00C0 to
// U+07FF (accented Latin letters: é is C3 A9), none of which is a space. The fast path is small
// enough to be inlined: a line has 31 values.
func trim(s string) string {
	if s == "" || plainByte(s[0]) && plainByte(s[len(s)-1]) {
		return s
	}
	return trimSlow(s)
}

// trimSlow is trim past its fast path: a value that ends with such a two-byte rune is kept as
// it is too. The Unicode spaces beyond ASCII are U+0085 and U+00A0 (lead byte C2) and
// three-byte runes (E1, E2, E3): those values, and any other, go to strings.TrimSpace.
func trimSlow(s string) string {
	if plainByte(s[0]) && s[len(s)-1] >= 0x80 && len(s) >= 2 && latinLead(s[len(s)-2]) {
		return s
	}
	return strings.TrimSpace(s)
}

// plainByte reports whether c is a visible ASCII character or the lead byte of a rune from
// U+00C0 to U+07FF: the start of a value without a leading space.
func plainByte(c byte) bool { return c-'!' <= '~'-'!' || latinLead(c) }

// latinLead reports whether c leads a two-byte rune from U+00C0 to U+07FF (no space among them).
func latinLead(c byte) bool { return c-0xC3 <= 0xDF-0xC3 }

// parseFlag reads the Dématérialisation column. The ANS does not document its values: "O"/"N",
// "oui"/"non", "true"/"false" and "1"/"0" are all read; anything else is false (the safe
// reading: do not assume a paperless holder).
func parseFlag(s string) bool {
	switch s { // the usual values first
	case "O":
		return true
	case "N", "":
		return false
	}
	for _, yes := range []string{"o", "oui", "true", "1", "y", "yes", "t"} {
		if strings.EqualFold(s, yes) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
