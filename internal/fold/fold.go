// Package fold removes accents from French names, once for the whole module: the subjects and
// PDF names of mssante (Réf. #2 ECO.2.1.3 and ECO.2.1.6 ask for them without accents) and the
// name search keys of annuaire.
package fold

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Accents removes accents (and the œ/æ ligatures) from s, keeping the base letters and their
// case: the canonical decomposition (NFD) of s without its nonspacing marks. Letters that have
// no decomposition, such as Ø or Ł, are kept as they are.
func Accents(s string) string {
	s = strings.NewReplacer("œ", "oe", "Œ", "OE", "æ", "ae", "Æ", "AE", "ß", "ss").Replace(s)
	out, _, err := transform.String(transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC), s)
	if err != nil {
		return s
	}
	return out
}

// Key returns the search key of s: letters upper-cased and stripped of their accents,
// digits kept, every other run of characters (spaces, hyphens, apostrophes…) one space, no
// leading or trailing space. "Lefèvre-d'Ornano" and "LEFEVRE D ORNANO" have the same key.
func Key(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return string(AppendKey(make([]byte, 0, len(s)), s))
		}
	}
	return s // already a key: no copy
}

// AppendKey appends the search key of s to dst.
func AppendKey(dst []byte, s string) []byte {
	space := false // a separator is pending
	start := len(dst)
	for i := 0; i < len(s); {
		c := s[i]
		var folded string
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
				fallthrough
			case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
				if space && len(dst) > start {
					dst = append(dst, ' ')
				}
				space = false
				dst = append(dst, c)
			default:
				space = true
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		folded = foldRune(r)
		if folded == "" {
			space = true
			continue
		}
		if space && len(dst) > start {
			dst = append(dst, ' ')
		}
		space = false
		dst = append(dst, folded...)
	}
	return dst
}

// AppendNameKey appends the key of a person's name: the folded last name, then the folded
// first name after one space when there is one.
func AppendNameKey(dst []byte, last, first string) []byte {
	start := len(dst)
	dst = AppendKey(dst, last)
	n := len(dst)
	if n > start {
		dst = append(dst, ' ')
	}
	dst = AppendKey(dst, first)
	if len(dst) == n+1 && n > start {
		dst = dst[:n]
	}
	return dst
}

// foldRune maps the accented Latin letters French names use to their base letters, upper
// case ("" for anything else, which then separates words).
func foldRune(r rune) string {
	if r >= 0xC0 && r <= 0x17F {
		return latin[r-0xC0]
	}
	return ""
}

// latin covers U+00C0–U+017F (Latin-1 Supplement letters and Latin Extended-A): the upper
// case of Accents, and for the letters Accents keeps, the base letters of undecomposed.
var latin = func() (t [0x17F - 0xC0 + 1]string) {
	for r := rune(0xC0); r <= 0x17F; r++ {
		if base := strings.ToUpper(Accents(string(r))); strings.Trim(base, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" {
			t[r-0xC0] = base
		}
	}
	for base, letters := range undecomposed {
		for _, r := range letters {
			t[r-0xC0] = base
		}
	}
	return t
}()

// undecomposed holds, by base letters, the letters of U+00C0–U+017F that Unicode does not
// decompose into a base letter and marks.
var undecomposed = map[string]string{
	"D":  "ĐđÐð",
	"H":  "Ħħ",
	"IJ": "Ĳĳ",
	"K":  "ĸ",
	"L":  "ĿŀŁł",
	"N":  "ŉŊŋ",
	"O":  "Øø",
	"T":  "Ŧŧ",
	"TH": "Þþ",
}
