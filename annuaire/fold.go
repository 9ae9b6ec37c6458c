package annuaire

import "unicode/utf8"

// foldString returns the search key of s: letters upper-cased and stripped of their accents,
// digits kept, every other run of characters (spaces, hyphens, apostrophes…) one space, no
// leading or trailing space. "Lefèvre-d'Ornano" and "LEFEVRE D ORNANO" have the same key.
func foldString(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return string(appendFold(make([]byte, 0, len(s)), s))
		}
	}
	return s // already a key: no copy
}

// appendFold appends the search key of s to dst.
func appendFold(dst []byte, s string) []byte {
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

// foldRune maps the accented Latin letters French names use to their base letters ("" for
// anything else, which then separates words).
func foldRune(r rune) string {
	if r >= 0xC0 && r <= 0x17F {
		return latin[r-0xC0]
	}
	return ""
}

// latin covers U+00C0–U+017F (Latin-1 Supplement letters and Latin Extended-A).
var latin = func() (t [0x17F - 0xC0 + 1]string) {
	set := func(base string, runes string) {
		for _, r := range runes {
			t[r-0xC0] = base
		}
	}
	set("A", "ÀÁÂÃÄÅàáâãäåĀāĂăĄą")
	set("AE", "Ææ")
	set("C", "ÇçĆćĈĉĊċČč")
	set("D", "ĎďĐđÐð")
	set("E", "ÈÉÊËèéêëĒēĔĕĖėĘęĚě")
	set("G", "ĜĝĞğĠġĢģ")
	set("H", "ĤĥĦħ")
	set("I", "ÌÍÎÏìíîïĨĩĪīĬĭĮįİı")
	set("IJ", "Ĳĳ")
	set("J", "Ĵĵ")
	set("K", "Ķķĸ")
	set("L", "ĹĺĻļĽľĿŀŁł")
	set("N", "ÑñŃńŅņŇňŉŊŋ")
	set("O", "ÒÓÔÕÖØòóôõöøŌōŎŏŐő")
	set("OE", "Œœ")
	set("R", "ŔŕŖŗŘř")
	set("S", "ŚśŜŝŞşŠšſ")
	set("SS", "ß")
	set("T", "ŢţŤťŦŧ")
	set("TH", "Þþ")
	set("U", "ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų")
	set("W", "Ŵŵ")
	set("Y", "ÝýÿŶŷŸ")
	set("Z", "ŹźŻżŽž")
	return t
}()

// appendNameKey appends the key of a person's name: the folded last name, then the folded
// first name after one space when there is one.
func appendNameKey(dst []byte, last, first string) []byte {
	start := len(dst)
	dst = appendFold(dst, last)
	n := len(dst)
	if n > start {
		dst = append(dst, ' ')
	}
	dst = appendFold(dst, first)
	if len(dst) == n+1 && n > start {
		dst = dst[:n]
	}
	return dst
}
