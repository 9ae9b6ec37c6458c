package annuaire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Column is a column of the extraction file, in file order.
type Column int

// The 31 columns of Extraction_Correspondance_MSSante (MSSanté digest §2.2).
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

// Header holds the column names of the extraction file's header line, in order.
var Header = [NumColumns]string{
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

// HeaderLine is the header line of the extraction file, without its line end.
var HeaderLine = strings.Join(Header[:], "|")

// MaxLineSize bounds one line of the extraction file (the real lines are under 1 kB).
const MaxLineSize = 64 << 10

// Fields holds the values of one line, indexed by Column.
type Fields [NumColumns]string

// checkHeader compares a header line with [Header], ignoring case, accents, spacing and a
// UTF-8 byte order mark, and names the first column that differs.
func checkHeader(line string) error {
	line = strings.TrimPrefix(strings.TrimRight(line, "\r\n"), "\uFEFF")
	var f Fields
	n, err := splitInto(&f, line)
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	for i := range n {
		if foldString(f[i]) != foldString(Header[i]) {
			return fmt.Errorf("%w: header column %d is %q, want %q", ErrFormat, i+1, truncate(f[i], 60), Header[i])
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
func split(f *Fields, line string) (int, error) {
	n, start := 0, 0
	for i := 0; i < len(line); i++ {
		if line[i] != '|' {
			continue
		}
		if n == int(NumColumns)-1 {
			// A 32nd field is only allowed empty, after a trailing '|'.
			if i+1 != len(line) {
				return 0, fmt.Errorf("%w: more than %d fields", ErrFormat, NumColumns)
			}
			f[n] = line[start:i]
			return int(NumColumns), nil
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

// Entry builds the [Entry] a line describes. Values are trimmed of surrounding spaces.
func (f *Fields) Entry() Entry {
	v := func(c Column) string { return strings.TrimSpace(f[c]) }
	e := Entry{
		Address: v(ColAddress),
		Type:    BALType(v(ColType)),
		Person: Person{
			NationalID:              v(ColNationalID),
			IDType:                  ppIDTypeName(v(ColPPIDType)),
			ID:                      v(ColPPID),
			Civility:                v(ColCivility),
			LastName:                v(ColLastName),
			FirstName:               v(ColFirstName),
			ProfessionCategory:      v(ColProfessionCategory),
			ProfessionCategoryLabel: v(ColProfessionCategoryLabel),
			ProfessionCode:          v(ColProfessionCode),
			ProfessionLabel:         v(ColProfessionLabel),
			SpecialtyCode:           v(ColSpecialtyCode),
			SpecialtyLabel:          v(ColSpecialtyLabel),
		},
		Structure: Structure{
			IDType:    structureIDTypeName(v(ColStructureIDType)),
			ID:        v(ColStructureID),
			Name:      v(ColStructureName),
			TradeName: v(ColTradeName),
			Service:   v(ColService),
		},
		Postal: PostalAddress{
			Complement:       v(ColL2Complement),
			Distribution:     v(ColL3Distribution),
			Number:           v(ColL4Number),
			NumberComplement: v(ColL4NumberComplement),
			StreetType:       v(ColL4StreetType),
			Street:           v(ColL4Street),
			Locality:         v(ColL5Locality),
			CityLine:         v(ColL6CityLine),
			PostalCode:       v(ColPostalCode),
			Departement:      v(ColDepartement),
			Country:          v(ColCountry),
		},
		Dematerialisation: parseFlag(v(ColDematerialisation)),
	}
	if e.Person.NationalID == "" && e.Person.ID != "" {
		e.Person.NationalID = nationalIDOf(e.Person.IDType, e.Person.ID)
	}
	return e
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

// parseFlag reads the Dématérialisation column. Its values are UNCONFIRMED: "O"/"N",
// "oui"/"non", "true"/"false" and "1"/"0" are all read; anything else is false (the safe
// reading: do not assume a paperless holder).
func parseFlag(s string) bool {
	switch strings.ToLower(s) {
	case "o", "oui", "true", "1", "y", "yes", "t":
		return true
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
