package annuaire

// Identifier types and codes. The codes of the extraction file's "Type Identifiant PP" and
// "Type identifiant structure" columns are UNCONFIRMED: we read the codes of the national
// identifier convention (idNat = "8" + RPPS, "0" + ADELI; TRE_G07 for structures: "1" FINESS,
// "2" SIREN, "3" SIRET, "4" RPPS of a cabinet) and also accept the names themselves, and keep
// an unknown code as it is.

// rppsPrefix and adeliPrefix begin a person's national identifier (idNat).
const (
	rppsPrefix  = "8"
	adeliPrefix = "0"
)

var ppIDTypes = [][2]string{{adeliPrefix, "ADELI"}, {rppsPrefix, "RPPS"}}

var structureIDTypes = [][2]string{{"1", "FINESS"}, {"2", "SIREN"}, {"3", "SIRET"}, {"4", "RPPS"}}

func codeToName(table [][2]string, s string) string {
	for _, p := range table {
		if s == p[0] || s == p[1] {
			return p[1]
		}
	}
	return s
}

func nameToCode(table [][2]string, s string) string {
	for _, p := range table {
		if s == p[1] {
			return p[0]
		}
	}
	return s
}

func ppIDTypeName(s string) string        { return codeToName(ppIDTypes, s) }
func ppIDTypeCode(s string) string        { return nameToCode(ppIDTypes, s) }
func structureIDTypeName(s string) string { return codeToName(structureIDTypes, s) }
func structureIDTypeCode(s string) string { return nameToCode(structureIDTypes, s) }

// nationalIDOf builds the idNat of a person from the type and value of its identifier.
func nationalIDOf(idType, id string) string {
	switch idType {
	case "RPPS":
		return rppsPrefix + id
	case "ADELI":
		return adeliPrefix + id
	}
	return ""
}
