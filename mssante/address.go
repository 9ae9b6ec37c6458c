package mssante

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// Address errors.
var (
	ErrAddress = errors.New("mssante: invalid address")
	// ErrNotQualified is returned when a patient address is asked for an INS that is not qualified.
	ErrNotQualified = errors.New("mssante: INS not qualified")
)

// PatientDomain is the domain of the patients' mailboxes (Mon espace santé).
const PatientDomain = "patient.mssante.fr"

// BALType is the type of an MSSanté mailbox (TRE_R257-TypeBAL).
type BALType string

// The BAL types.
const (
	BALPersonal       BALType = "PER" // nominative, attached to a professional (RPPS)
	BALOrganisational BALType = "ORG" // a service or team of a legal entity
	BALApplicative    BALType = "APP" // business software or a machine (automated sending/receiving)
	BALCabinet        BALType = "CAB" // a shared liberal practice
)

// ParseBALType checks a BAL type code.
func ParseBALType(s string) (BALType, error) {
	switch t := BALType(strings.ToUpper(strings.TrimSpace(s))); t {
	case BALPersonal, BALOrganisational, BALApplicative, BALCabinet:
		return t, nil
	}
	return "", fmt.Errorf("mssante: unknown BAL type %q", s)
}

// Address is a mailbox address with an optional display name. Addr is normalised: no angle
// brackets, lower case (MSSanté addresses are published in lower case and compared without
// regard to case), ASCII only.
type Address struct {
	Name string
	Addr string
}

// ParseAddress parses "addr@domain" or "Display Name <addr@domain>" and normalises it.
func ParseAddress(s string) (Address, error) {
	if hasCtl(s) {
		return Address{}, fmt.Errorf("%w: control character", ErrAddress)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		// Not the parser's text: it may quote the address, and a patient address holds an INS.
		return Address{}, fmt.Errorf("%w: not an RFC 5322 address", ErrAddress)
	}
	return NewAddress(a.Name, a.Address)
}

// NewAddress checks addr (a bare addr-spec) and returns the normalised address.
func NewAddress(name, addr string) (Address, error) {
	if hasCtl(name) || hasCtl(addr) {
		return Address{}, fmt.Errorf("%w: control character", ErrAddress)
	}
	addr = strings.ToLower(strings.TrimSpace(addr))
	if len(addr) > 254 {
		return Address{}, fmt.Errorf("%w: longer than 254 characters", ErrAddress)
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return Address{}, fmt.Errorf("%w: want local@domain", ErrAddress)
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > 64 || !dotAtom(local) {
		return Address{}, fmt.Errorf("%w: bad local part", ErrAddress)
	}
	if err := checkDomain(domain); err != nil {
		return Address{}, err
	}
	return Address{Name: strings.TrimSpace(name), Addr: addr}, nil
}

// MustAddress is NewAddress for constants in tests and examples; it panics on error.
func MustAddress(name, addr string) Address {
	a, err := NewAddress(name, addr)
	if err != nil {
		panic(err)
	}
	return a
}

// Domain returns the domain part.
func (a Address) Domain() string { return a.Addr[strings.LastIndexByte(a.Addr, '@')+1:] }

// LocalPart returns the part before the @.
func (a Address) LocalPart() string { return a.Addr[:strings.LastIndexByte(a.Addr, '@')] }

// IsZero reports whether the address is unset.
func (a Address) IsZero() bool { return a.Addr == "" }

// IsPatient reports whether the address is a patient's mailbox (…@patient.mssante.fr).
func (a Address) IsPatient() bool { return a.Domain() == PatientDomain }

// String formats the address for a header, with its display name (RFC 2047 encoded if needed).
func (a Address) String() string { return (&mail.Address{Name: a.Name, Address: a.Addr}).String() }

// PatientAddress returns <matricule INS>@patient.mssante.fr for a patient whose INS is
// qualified (Réf. #2 ECO.2.2.6); any other patient gives ErrNotQualified.
func PatientAddress(p *Patient) (Address, error) {
	if !p.Qualified() {
		return Address{}, fmt.Errorf("%w: a patient address needs a qualified INS", ErrNotQualified)
	}
	if p.INS.OID == OIDINSNIA || p.INS.OID == OIDINSNIATest {
		return Address{}, fmt.Errorf("%w: a patient address needs an INS-NIR, not an NIA", ErrNotQualified)
	}
	return Address{Addr: p.INS.Value + "@" + PatientDomain}, nil
}

// PatientINS returns the matricule of a patient address (its local part, checked as an INS-NIR;
// the OID is set to production).
func PatientINS(a Address) (INS, error) {
	if !a.IsPatient() {
		return INS{}, fmt.Errorf("%w: not a patient address", ErrAddress)
	}
	return ParseINS(a.LocalPart(), OIDINSNIR)
}

func checkDomain(d string) error {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return fmt.Errorf("%w: bad domain", ErrAddress)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: bad domain label %q", ErrAddress, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: bad domain label %q", ErrAddress, label)
			}
		}
	}
	return nil
}

// dotAtom: RFC 5322 dot-atom of ASCII atext.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || strings.IndexByte("!#$%&'*+/=?^_`{|}~-", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// hasCtl reports a control character (CR, LF, NUL, …): such strings are refused everywhere a
// header is written, so no header can be injected.
func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 && s[i] != '\t' || s[i] == 0x7f {
			return true
		}
	}
	return false
}
