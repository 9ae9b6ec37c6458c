package whitelist

import (
	"errors"
	"sort"
	"strings"
	"unicode/utf8"
)

var errDN = errors.New("whitelist: invalid DN")

// CanonicalDN returns the comparison form of a certificate subject DN written as a string
// (RFC 4514, as the liste blanche writes DNCertificatOperateur and as pkix.Name.String writes a
// certificate subject). Two DNs are the same operator when their canonical forms are equal.
//
// It ignores case (of attribute types and values), spaces around the ',', '+' and '='
// separators, and the order of the attributes; nothing else: attribute types are not mapped to
// aliases or OIDs, spaces inside a value count, and RFC 4514 escapes (\, and \2C) are decoded
// before comparing. A multi-valued RDN (a+b) compares as its attributes.
func CanonicalDN(dn string) (string, error) {
	if len(dn) > 4096 {
		return "", errDN
	}
	var (
		atvs []string
		cur  []byte // current attribute value, decoded
		typ  string
		// inValue: the '=' of the current attribute was seen; escTail is the length of cur that
		// ends with an escaped character, which trailing-space trimming must keep.
		inValue bool
		escTail int
		start   int
	)
	flush := func(end int) error {
		if !inValue {
			return errDN
		}
		v := cur
		for len(v) > escTail && v[len(v)-1] == ' ' {
			v = v[:len(v)-1]
		}
		if len(v) == 0 || !utf8.Valid(v) {
			return errDN
		}
		atvs = append(atvs, typ+"="+escapeDNValue(strings.ToLower(string(v))))
		cur, typ, inValue, escTail, start = cur[:0], "", false, 0, end+1
		return nil
	}
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if !inValue {
			switch c {
			case '=':
				t := strings.ToLower(strings.TrimSpace(dn[start:i]))
				if !validDNType(t) {
					return "", errDN
				}
				typ, inValue = t, true
				for i+1 < len(dn) && dn[i+1] == ' ' {
					i++
				}
			case ',', '+', '\\':
				return "", errDN
			}
			continue
		}
		switch c {
		case ',', '+':
			if err := flush(i); err != nil {
				return "", err
			}
		case '\\':
			if i+1 >= len(dn) {
				return "", errDN
			}
			if h, ok := unhex2(dn[i+1:]); ok {
				cur = append(cur, h)
				i += 2
			} else {
				cur = append(cur, dn[i+1])
				i++
			}
			escTail = len(cur)
		default:
			cur = append(cur, c)
		}
	}
	if err := flush(len(dn)); err != nil {
		return "", err
	}
	sort.Strings(atvs)
	return strings.Join(atvs, ","), nil
}

func validDNType(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func unhex2(s string) (byte, bool) {
	if len(s) < 2 {
		return 0, false
	}
	hi, ok1 := unhex(s[0])
	lo, ok2 := unhex(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// escapeDNValue escapes what would make the canonical form ambiguous: the separators, the
// backslash, and spaces at either end.
func escapeDNValue(v string) string {
	if !strings.ContainsAny(v, ",+\\") && v[0] != ' ' && v[len(v)-1] != ' ' {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ',' || c == '+' || c == '\\' || (c == ' ' && (i == 0 || i == len(v)-1)) {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
