package annuaire

import "github.com/mssante-go/sdk/mssante"

// Identifier types and codes. The ANS does not document the codes of the extraction file's
// "Type Identifiant PP" and "Type identifiant structure" columns: we read the codes of the national
// identifier convention (package mssante: idNat_PS = "8" + RPPS, "0" + ADELI; idNat_Struct =
// "1" + FINESS, "2" + SIREN, "3" + SIRET, "4" + RPPS-rang), also accept the names themselves,
// and keep an unknown code as it is.

// rppsPrefix and adeliPrefix begin a person's national identifier (idNat_PS).
var (
	rppsPrefix  = mssante.NationalID{Kind: mssante.KindRPPS}.String()
	adeliPrefix = mssante.NationalID{Kind: mssante.KindADELI}.String()
)

// ppIDTypes pairs the code and the name of each type of person identifier.
var ppIDTypes = [][2]string{{adeliPrefix, "ADELI"}, {rppsPrefix, "RPPS"}}

// structureIDTypes pairs the idNat_Struct prefix and the name of each type of structure
// identifier ("1" FINESS, "2" SIREN, "3" SIRET, "4" RPPS-rang).
var structureIDTypes = func() (t [][2]string) {
	for _, k := range []mssante.IDKind{mssante.KindFINESS, mssante.KindSIREN, mssante.KindSIRET, mssante.KindRPPSRang} {
		t = append(t, [2]string{mssante.NationalID{Structure: true, Kind: k}.String(), k.String()})
	}
	return t
}()

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
