package whitelist

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Entry is one Domaine element of the list: a mail domain and the operator certificate DN(s)
// allowed to relay for it. The ANS writes one Domaine per (domain, operator certificate), so a
// domain served by several MTAs has several entries.
type Entry struct {
	Domain      string    // Nom, as written in the list
	Description string    // Description
	OperatorDNs []string  // DNCertificatOperateur (one in every observed entry)
	Responsable string    // ResponsableContact: "phone, e-mail"
	Support     string    // SupportContact: "phone, e-mail"
	Updated     time.Time // DateMAJ (zero when absent)
}

// List is a liste blanche: its generation date and its entries indexed by domain. It is
// immutable once built and safe for concurrent use; the slices it returns must not be modified.
// A nil *List is an empty list that is not held: its lookups find nothing and its checks fail
// with ErrNoList (temporary), never a pass.
type List struct {
	generated time.Time
	entries   int
	byDomain  map[string][]Entry
	// dns holds the canonical forms (CanonicalDN) of the operator DNs of each domain.
	dns map[string][]string
	// operators holds the canonical forms of every operator DN of the list.
	operators map[string]struct{}
}

var (
	_ Policy = (*List)(nil)
	_ Policy = (*Store)(nil)
)

// Policy is what the connector and the BAL enforce before exchanging mail with a domain.
type Policy interface {
	// CheckDomain returns nil when domain is listed, else an error wrapping ErrDomainNotListed,
	// or ErrNoList / ErrListTooOld when no usable list is held (temporary).
	CheckDomain(domain string) error
	// CheckOperator returns nil when operatorDN (a certificate subject DN) is one of the
	// operators listed for domain (compared with CanonicalDN), else an error wrapping
	// ErrOperatorNotListed or ErrDomainNotListed, or ErrNoList / ErrListTooOld.
	CheckOperator(domain, operatorDN string) error
}

// NewList builds a list from entries, for tests and the dev sandbox. Verify is the way to get
// the real list. Entries whose domain is not a valid name are indexed under their lower-cased
// name; a DN that CanonicalDN refuses matches nothing.
func NewList(generated time.Time, entries []Entry) *List {
	cp := make([]Entry, len(entries))
	for i, e := range entries {
		e.OperatorDNs = append([]string(nil), e.OperatorDNs...)
		cp[i] = e
	}
	l, _ := buildList(generated, cp, false)
	return l
}

// Generated returns the DateDeGeneration of the list (zero for a nil list).
func (l *List) Generated() time.Time {
	if l == nil {
		return time.Time{}
	}
	return l.generated
}

// Len returns the number of entries and of distinct domains.
func (l *List) Len() (entries, domains int) {
	if l == nil {
		return 0, 0
	}
	return l.entries, len(l.byDomain)
}

// Lookup returns the entries of domain (compared as NormalizeDomain does). It does not allocate
// when domain is already lower-case ASCII without a trailing dot.
func (l *List) Lookup(domain string) ([]Entry, bool) {
	key, ok := lookupKey(domain)
	if !ok || l == nil {
		return nil, false
	}
	es, ok := l.byDomain[key]
	return es, ok
}

// Domains calls fn for every domain of the list with its entries, in no particular order, until
// fn returns false.
func (l *List) Domains(fn func(domain string, entries []Entry) bool) {
	if l == nil {
		return
	}
	for d, es := range l.byDomain {
		if !fn(d, es) {
			return
		}
	}
}

// CheckDomain implements Policy.
func (l *List) CheckDomain(domain string) error {
	if l == nil {
		return ErrNoList
	}
	if _, ok := l.Lookup(domain); !ok {
		return ErrDomainNotListed
	}
	return nil
}

// CheckOperator implements Policy.
func (l *List) CheckOperator(domain, operatorDN string) error {
	if l == nil {
		return ErrNoList
	}
	key, ok := lookupKey(domain)
	if !ok {
		return ErrDomainNotListed
	}
	dns, ok := l.dns[key]
	if !ok {
		if _, listed := l.byDomain[key]; !listed {
			return ErrDomainNotListed
		}
		return ErrOperatorNotListed
	}
	c, err := CanonicalDN(operatorDN)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOperatorNotListed, err)
	}
	for _, d := range dns {
		if d == c {
			return nil
		}
	}
	return ErrOperatorNotListed
}

// CheckOperatorAny returns nil when operatorDN is listed for at least one domain (a relay may
// accept a null-sender DSN from any listed operator), else an error wrapping
// ErrOperatorNotListed.
func (l *List) CheckOperatorAny(operatorDN string) error {
	if l == nil {
		return ErrNoList
	}
	c, err := CanonicalDN(operatorDN)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOperatorNotListed, err)
	}
	if _, ok := l.operators[c]; !ok {
		return ErrOperatorNotListed
	}
	return nil
}

// lookupKey is NormalizeDomain with a fast path that does not allocate.
func lookupKey(domain string) (string, bool) {
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') || (c == '.' && i == len(domain)-1) {
			k, err := NormalizeDomain(domain)
			return k, err == nil
		}
	}
	return domain, domain != ""
}

// NormalizeDomain returns the form of a mail domain the list is indexed by: lower case, without
// a trailing dot, non-ASCII labels converted to A-labels (xn--). It refuses names that are not
// valid host names (empty labels, labels over 63 bytes, names over 253 bytes, characters other
// than letters, digits, '-' and '_').
func NormalizeDomain(domain string) (string, error) {
	if isNormalASCII(domain) {
		return domain, nil
	}
	d := strings.TrimSuffix(domain, ".")
	if d == "" || len(d) > 1024 {
		return "", fmt.Errorf("whitelist: invalid domain name")
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("whitelist: domain name is not UTF-8")
	}
	labels := strings.Split(d, ".")
	for i, lab := range labels {
		if lab == "" {
			return "", fmt.Errorf("whitelist: empty label in domain name")
		}
		ascii := true
		for j := 0; j < len(lab); j++ {
			if lab[j] >= utf8.RuneSelf {
				ascii = false
				break
			}
		}
		if ascii {
			lab = strings.ToLower(lab)
		} else {
			enc, err := punycodeEncode(strings.ToLower(lab))
			if err != nil {
				return "", err
			}
			lab = "xn--" + enc
		}
		if len(lab) > 63 {
			return "", fmt.Errorf("whitelist: domain label too long")
		}
		for j := 0; j < len(lab); j++ {
			c := lab[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("whitelist: invalid character in domain name")
			}
		}
		labels[i] = lab
	}
	out := strings.Join(labels, ".")
	if len(out) > 253 {
		return "", fmt.Errorf("whitelist: domain name too long")
	}
	return out, nil
}

// isNormalASCII reports whether d is already a valid normalised name: lower-case ASCII labels of
// 1 to 63 allowed characters, no trailing dot, at most 253 bytes.
func isNormalASCII(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			if label++; label > 63 {
				return false
			}
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
	}
	return label > 0
}

// punycodeEncode is the Punycode encoder of RFC 3492 §6.3 (bootstring parameters of §5).
func punycodeEncode(s string) (string, error) {
	const (
		base, tmin, tmax, skew, damp = 36, 1, 26, 38, 700
		initialBias, initialN        = 72, 128
	)
	runes := []rune(s)
	var out []byte
	for _, r := range runes {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	b := len(out)
	h := b
	if b > 0 {
		out = append(out, '-')
	}
	adapt := func(delta, numPoints int, first bool) int {
		if first {
			delta /= damp
		} else {
			delta /= 2
		}
		delta += delta / numPoints
		k := 0
		for delta > ((base-tmin)*tmax)/2 {
			delta /= base - tmin
			k += base
		}
		return k + (base-tmin+1)*delta/(delta+skew)
	}
	digit := func(d int) byte {
		if d < 26 {
			return byte('a' + d)
		}
		return byte('0' + d - 26)
	}
	n, delta, bias := initialN, 0, initialBias
	for h < len(runes) {
		m := int(^uint(0) >> 1)
		for _, r := range runes {
			if int(r) >= n && int(r) < m {
				m = int(r)
			}
		}
		if (m - n) > (1<<30)/(h+1) {
			return "", fmt.Errorf("whitelist: domain label overflows punycode")
		}
		delta += (m - n) * (h + 1)
		n = m
		for _, r := range runes {
			if int(r) < n {
				delta++
			}
			if int(r) == n {
				q := delta
				for k := base; ; k += base {
					t := k - bias
					if t < tmin {
						t = tmin
					} else if t > tmax {
						t = tmax
					}
					if q < t {
						break
					}
					out = append(out, digit(t+(q-t)%(base-t)))
					q = (q - t) / (base - t)
				}
				out = append(out, digit(q))
				bias = adapt(delta, h+1, h == b)
				delta = 0
				h++
			}
		}
		delta++
		n++
	}
	return string(out), nil
}
