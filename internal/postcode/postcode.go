// Package postcode maps French postal codes to départements, the one rule the Annuaire Santé
// backends and the test extraction files share.
package postcode

import "strings"

// Departement derives the département code from a French postal code: its first two
// digits, three overseas (97x, 98x), 2A or 2B in Corsica (20000–20199 and 20200–20999, the
// usual rule; some communes are exceptions). "" when the code is not five digits.
func Departement(postalCode string) string {
	cp := postalCode
	if len(cp) != 5 || strings.Trim(cp, "0123456789") != "" {
		return ""
	}
	switch {
	case cp[:2] == "97" || cp[:2] == "98":
		return cp[:3]
	case cp[:2] == "20" && cp[2] <= '1':
		return "2A"
	case cp[:2] == "20":
		return "2B"
	}
	return cp[:2]
}
