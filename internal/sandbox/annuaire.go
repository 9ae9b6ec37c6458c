package sandbox

import (
	"bytes"
	"strings"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
	"github.com/mssante-go/sdk/internal/luhn"
	"github.com/mssante-go/sdk/mssante"
)

// syntheticLines is the number of synthetic entries written after the sandbox's own BALs.
const syntheticLines = 200

// withKey appends the Luhn key to digits (RPPS, FINESS).
func withKey(digits string) string {
	k, err := luhn.Digit(digits)
	if err != nil {
		return digits
	}
	return digits + string(k)
}

// annuaireEntries are the PER and ORG BALs of the sandbox as the Annuaire Santé extraction
// describes them (the public file carries no APP BAL).
func annuaireEntries() []annuaire.Entry {
	people := map[string][3]string{ // address → civility, last name, first name
		"jean.dupont@" + Hopital:  {"M", "DUPONT", "Jean"},
		"marie.durand@" + Cabinet: {"MME", "DURAND", "Marie"},
	}
	var out []annuaire.Entry
	for i, sp := range specs {
		finess := withKey("3100000" + string(rune('1'+i)))
		postal := annuaire.PostalAddress{Number: "1", StreetType: "R", Street: "DE LA SANTE",
			CityLine: "31000 TOULOUSE", PostalCode: "31000", Departement: "31", Country: "FRANCE"}
		st := annuaire.Structure{IDType: "FINESS", ID: "1" + finess, Name: sp.org}
		for _, b := range sp.bals {
			addr := b.local + "@" + sp.domains[0]
			e := annuaire.Entry{Address: addr, Type: b.typ, Structure: st, Postal: postal, Dematerialisation: true}
			switch b.typ {
			case mssante.BALPersonal:
				p := people[addr]
				rpps := withKey("100000000" + string(rune('1'+i)))
				e.Person = annuaire.Person{NationalID: "8" + rpps, IDType: "RPPS", ID: rpps, Civility: p[0],
					LastName: p[1], FirstName: p[2], ProfessionCode: "10", ProfessionLabel: "Médecin"}
			case mssante.BALOrganisational:
				e.Structure.Service = b.desc
			default:
				continue
			}
			out = append(out, e)
		}
	}
	return out
}

// writeAnnuaire writes the sample extraction file: the sandbox's BALs, then synthetic ones.
func writeAnnuaire(info *Info) error {
	var b bytes.Buffer
	b.WriteString(annuaire.HeaderLine() + "\n")
	for _, e := range annuaireEntries() {
		f := e.Fields()
		b.WriteString(strings.Join(f[:], "|") + "\n")
	}
	var syn bytes.Buffer
	if err := annuairetest.WriteExtraction(&syn, syntheticLines, 2026); err != nil {
		return err
	}
	if _, rest, ok := bytes.Cut(syn.Bytes(), []byte("\n")); ok { // drop its header line
		b.Write(rest)
	}
	return writeAtomic(info.Annuaire, b.Bytes())
}
