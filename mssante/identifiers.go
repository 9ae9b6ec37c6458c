package mssante

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mssante-go/sdk/internal/luhn"
)

// Identifier errors. Every parse error wraps one of these.
var (
	ErrINS        = errors.New("mssante: invalid INS")
	ErrINSOID     = errors.New("mssante: unknown INS OID")
	ErrRPPS       = errors.New("mssante: invalid RPPS")
	ErrADELI      = errors.New("mssante: invalid ADELI")
	ErrFINESS     = errors.New("mssante: invalid FINESS")
	ErrSIREN      = errors.New("mssante: invalid SIREN")
	ErrSIRET      = errors.New("mssante: invalid SIRET")
	ErrNationalID = errors.New("mssante: invalid national identifier")
)

// OIDs of the INS (identifiant national de santé), CI-SIS "Structuration minimale" and its
// schematron. OIDINSNIA and OIDINSNIATest are the two other OIDs the schematron accepts; the
// schematron does not say what they mean, and they are named for their conventional meaning
// (INS-NIA, a waiting number).
const (
	OIDINSNIR     = "1.2.250.1.213.1.4.8"  // INS-NIR, production
	OIDINSNIA     = "1.2.250.1.213.1.4.9"  // INS-NIA, production (conventional meaning)
	OIDINSNIRTest = "1.2.250.1.213.1.4.10" // INS-NIR de test
	OIDINSNIATest = "1.2.250.1.213.1.4.11" // INS-NIA de test (conventional meaning)
)

// OIDs of the national identifiers of professionals (idNat_PS) and structures (idNat_Struct).
const (
	OIDIdNatPS     = "1.2.250.1.71.4.2.1"
	OIDIdNatStruct = "1.2.250.1.71.4.2.2"
)

// INS is a patient's identifiant national de santé: the matricule INS (15 characters: the
// 13-character NIR or NIA, whose department may be 2A or 2B, followed by its 2-digit key) and
// the OID of the assigning authority.
type INS struct {
	Value string `json:"value"`
	OID   string `json:"oid"`
}

// ParseINS checks a matricule INS and its OID. Spaces are removed and the Corsican
// department letters upper-cased; the key (97 − NIR mod 97, with 2A read as 19 and 2B as 18)
// must match.
func ParseINS(value, oid string) (INS, error) {
	switch oid {
	case OIDINSNIR, OIDINSNIA, OIDINSNIRTest, OIDINSNIATest:
	default:
		return INS{}, fmt.Errorf("%w %q", ErrINSOID, oid)
	}
	v := strings.ToUpper(strings.ReplaceAll(value, " ", ""))
	if len(v) != 15 {
		return INS{}, fmt.Errorf("%w: want 15 characters, got %d", ErrINS, len(v))
	}
	body := []byte(v[:13])
	for i, c := range body {
		if i == 6 && (body[5] == '2' && (c == 'A' || c == 'B')) {
			continue
		}
		if c < '0' || c > '9' {
			return INS{}, fmt.Errorf("%w: character %d is not a digit", ErrINS, i+1)
		}
	}
	if body[0] == '0' || body[0] == '5' || body[0] == '6' || body[0] == '9' {
		return INS{}, fmt.Errorf("%w: first digit (sex) must be 1, 2, 3, 4, 7 or 8", ErrINS)
	}
	if !allDigits(v[13:]) {
		return INS{}, fmt.Errorf("%w: key is not two digits", ErrINS)
	}
	if want := nirKey(body); want != atoi(v[13:]) {
		return INS{}, fmt.Errorf("%w: key %s does not match", ErrINS, v[13:])
	}
	return INS{Value: v, OID: oid}, nil
}

// NIRKey returns the 2-digit key of a 13-character NIR (Corsica 2A/2B accepted).
func NIRKey(nir string) (string, error) {
	nir = strings.ToUpper(nir)
	if len(nir) != 13 {
		return "", fmt.Errorf("%w: want 13 characters", ErrINS)
	}
	for i := 0; i < 13; i++ {
		c := nir[i]
		if c >= '0' && c <= '9' || i == 6 && nir[5] == '2' && (c == 'A' || c == 'B') {
			continue
		}
		return "", fmt.Errorf("%w: character %d is not a digit", ErrINS, i+1)
	}
	return fmt.Sprintf("%02d", nirKey([]byte(nir))), nil
}

func nirKey(body []byte) int {
	b := append([]byte(nil), body...)
	switch string(b[5:7]) {
	case "2A":
		b[5], b[6] = '1', '9'
	case "2B":
		b[5], b[6] = '1', '8'
	}
	var n uint64
	for _, c := range b {
		n = n*10 + uint64(c-'0')
	}
	return 97 - int(n%97)
}

// IsTest reports whether the INS uses a test OID (1.2.250.1.213.1.4.10 or .11).
func (i INS) IsTest() bool { return i.OID == OIDINSNIRTest || i.OID == OIDINSNIATest }

// IsZero reports whether no INS is set.
func (i INS) IsZero() bool { return i.Value == "" && i.OID == "" }

// Valid reports whether the INS passes [ParseINS].
func (i INS) Valid() bool {
	_, err := ParseINS(i.Value, i.OID)
	return err == nil
}

// String returns the matricule only (no OID).
func (i INS) String() string { return i.Value }

// Sex is the administrative sex of the INS traits (HL7 administrativeGenderCode).
type Sex string

// The values of [Sex].
const (
	SexMale    Sex = "M"
	SexFemale  Sex = "F"
	SexUnknown Sex = "U"
)

// Traits are the "traits INS" of a patient identity, as returned by the INSi service: birth
// name, first given name of the birth certificate, the list of birth given names, birth date,
// sex and the COG code of the birthplace.
type Traits struct {
	BirthName      string    `json:"birthName"`            // nom de naissance
	FirstGivenName string    `json:"firstGivenName"`       // premier prénom de l'acte de naissance
	GivenNames     []string  `json:"givenNames,omitempty"` // liste des prénoms de naissance
	BirthDate      time.Time `json:"birthDate"`            // date only; zero when unknown
	Sex            Sex       `json:"sex"`
	BirthPlace     string    `json:"birthPlace,omitempty"`    // code officiel géographique (5 characters), optional
	UsedName       string    `json:"usedName,omitempty"`      // nom utilisé, optional
	UsedGivenName  string    `json:"usedGivenName,omitempty"` // prénom utilisé, optional
}

// Patient is the one patient a message is about.
type Patient struct {
	INS INS `json:"ins"`
	Traits
	FileNumber string `json:"fileNumber,omitempty"` // numéro de dossier, optional (used in PDF names)
}

// Qualified reports whether the patient carries a qualified INS in the sense of X-MSS-INS
// (Réf. #2 ECO.2.4.2): a valid matricule with a known OID and the four traits birth name, first
// given name, birth date and sex (M or F). That the identity was verified (INSi call plus an
// identity document, the RNIV "identité qualifiée" status) is the caller's responsibility:
// set the INS only for such identities.
func (p *Patient) Qualified() bool {
	return p != nil && p.INS.Valid() &&
		strings.TrimSpace(p.BirthName) != "" && strings.TrimSpace(p.FirstGivenName) != "" &&
		!p.BirthDate.IsZero() && (p.Sex == SexMale || p.Sex == SexFemale)
}

// ParseRPPS checks an RPPS number: 11 digits with a Luhn check digit.
func ParseRPPS(s string) (string, error) {
	if len(s) != 11 || !allDigits(s) {
		return "", fmt.Errorf("%w: want 11 digits", ErrRPPS)
	}
	if !luhn.Valid(s) {
		return "", fmt.Errorf("%w: Luhn check digit does not match", ErrRPPS)
	}
	return s, nil
}

// ParseADELI checks an ADELI number: 9 characters, digits except a Corsican department 2A/2B in
// the first two. No public text gives the ADELI key algorithm, so the key is not checked.
func ParseADELI(s string) (string, error) {
	s = strings.ToUpper(s)
	if len(s) != 9 || !deptDigits(s) {
		return "", fmt.Errorf("%w: want 9 digits (2A/2B allowed as department)", ErrADELI)
	}
	return s, nil
}

// ParseFINESS checks a FINESS number: 9 characters with a Luhn check digit. Corsican numbers
// (2A/2B as department) are accepted on their format only: no public text says how their key
// is computed.
func ParseFINESS(s string) (string, error) {
	s = strings.ToUpper(s)
	if len(s) != 9 || !deptDigits(s) {
		return "", fmt.Errorf("%w: want 9 digits (2A/2B allowed as department)", ErrFINESS)
	}
	if allDigits(s) && !luhn.Valid(s) {
		return "", fmt.Errorf("%w: Luhn check digit does not match", ErrFINESS)
	}
	return s, nil
}

// ParseSIREN checks a SIREN: 9 digits with a Luhn check digit.
func ParseSIREN(s string) (string, error) {
	if len(s) != 9 || !allDigits(s) || !luhn.Valid(s) {
		return "", fmt.Errorf("%w: want 9 digits with a Luhn check digit", ErrSIREN)
	}
	return s, nil
}

// ParseSIRET checks a SIRET: 14 digits, a valid SIREN, and a Luhn check over the 14 digits
// (for La Poste, SIREN 356000000, the digit sum is a multiple of 5 instead).
func ParseSIRET(s string) (string, error) {
	if len(s) != 14 || !allDigits(s) {
		return "", fmt.Errorf("%w: want 14 digits", ErrSIRET)
	}
	if s[:9] == "356000000" {
		sum := 0
		for i := 0; i < len(s); i++ {
			sum += int(s[i] - '0')
		}
		if sum%5 != 0 {
			return "", fmt.Errorf("%w: La Poste digit sum is not a multiple of 5", ErrSIRET)
		}
		return s, nil
	}
	if !luhn.Valid(s[:9]) {
		return "", fmt.Errorf("%w: SIREN part fails its Luhn check", ErrSIRET)
	}
	if !luhn.Valid(s) {
		return "", fmt.Errorf("%w: Luhn check digit does not match", ErrSIRET)
	}
	return s, nil
}

// IDKind is the scheme behind a national identifier.
type IDKind int

// The kinds of national identifiers. The *Internal kinds are "structure id / local id" pairs.
const (
	KindUnknown IDKind = iota
	KindRPPS
	KindADELI
	KindFINESS
	KindSIREN
	KindSIRET
	KindRPPSRang            // structure: RPPS + rang (cabinet)
	KindCabinetADELI        // structure: cabinet ADELI; PS: cabinet ADELI / internal id
	KindFINESSInternal      // PS: FINESS / internal id
	KindSIRENInternal       // PS: SIREN / internal id
	KindSIRETInternal       // PS: SIRET / internal id
	KindCabinetRPPSInternal // PS: cabinet RPPS / internal id
)

var kindNames = [...]string{"unknown", "RPPS", "ADELI", "FINESS", "SIREN", "SIRET", "RPPS-rang",
	"cabinet ADELI", "FINESS/internal", "SIREN/internal", "SIRET/internal", "cabinet RPPS/internal"}

func (k IDKind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// NationalID is a national identifier of a professional (idNat_PS, OID [OIDIdNatPS]) or of a
// structure (idNat_Struct, OID [OIDIdNatStruct]): a one-digit prefix naming the scheme followed
// by the identifier, e.g. "8" + RPPS or "1" + FINESS.
type NationalID struct {
	Structure bool // false: idNat_PS; true: idNat_Struct
	Kind      IDKind
	Value     string // without the prefix
}

// Prefixes, from the ANS draft IG (PSIdNat.fsh and StructIdNat.fsh).
var (
	psPrefix = map[byte]IDKind{'0': KindADELI, '1': KindCabinetADELI, '3': KindFINESSInternal,
		'4': KindSIRENInternal, '5': KindSIRETInternal, '6': KindCabinetRPPSInternal, '8': KindRPPS}
	structPrefix = map[byte]IDKind{'0': KindCabinetADELI, '1': KindFINESS, '2': KindSIREN,
		'3': KindSIRET, '4': KindRPPSRang}
)

// OID returns the OID (root) of the identifier.
func (n NationalID) OID() string {
	if n.Structure {
		return OIDIdNatStruct
	}
	return OIDIdNatPS
}

// String returns the prefixed form, the CDA extension (e.g. "801234567897").
func (n NationalID) String() string {
	table := psPrefix
	if n.Structure {
		table = structPrefix
	}
	for p, k := range table {
		if k == n.Kind {
			return string(p) + n.Value
		}
	}
	return n.Value
}

// ParsePSNationalID parses an idNat_PS extension ("8" + RPPS, "0" + ADELI, …).
func ParsePSNationalID(s string) (NationalID, error) { return parseNationalID(s, false) }

// ParseStructNationalID parses an idNat_Struct extension ("1" + FINESS, "3" + SIRET, …).
func ParseStructNationalID(s string) (NationalID, error) { return parseNationalID(s, true) }

// ParseNationalID parses an extension given with its OID root.
func ParseNationalID(oid, s string) (NationalID, error) {
	switch oid {
	case OIDIdNatPS:
		return ParsePSNationalID(s)
	case OIDIdNatStruct:
		return ParseStructNationalID(s)
	}
	return NationalID{}, fmt.Errorf("%w: unknown OID %q", ErrNationalID, oid)
}

// NewNationalID checks value against its kind and returns the identifier; structure selects
// idNat_Struct over idNat_PS.
func NewNationalID(structure bool, kind IDKind, value string) (NationalID, error) {
	n := NationalID{Structure: structure, Kind: kind, Value: value}
	s := n.String()
	if s == value {
		return NationalID{}, fmt.Errorf("%w: kind %v has no prefix here", ErrNationalID, kind)
	}
	return parseNationalID(s, structure)
}

func parseNationalID(s string, structure bool) (NationalID, error) {
	if len(s) < 2 {
		return NationalID{}, fmt.Errorf("%w: too short", ErrNationalID)
	}
	table := psPrefix
	if structure {
		table = structPrefix
	}
	kind, ok := table[s[0]]
	if !ok {
		return NationalID{}, fmt.Errorf("%w: unknown prefix %q", ErrNationalID, s[:1])
	}
	v := s[1:]
	var err error
	switch kind {
	case KindRPPS:
		_, err = ParseRPPS(v)
	case KindADELI:
		v = strings.ToUpper(v)
		_, err = ParseADELI(v)
	case KindFINESS:
		v = strings.ToUpper(v)
		_, err = ParseFINESS(v)
	case KindSIREN:
		_, err = ParseSIREN(v)
	case KindSIRET:
		_, err = ParseSIRET(v)
	case KindRPPSRang:
		// RPPS followed by a rank; no text gives the rank's format: digits are accepted.
		if len(v) <= 11 || !allDigits(v) {
			err = fmt.Errorf("%w: want RPPS + rank digits", ErrRPPS)
		} else {
			_, err = ParseRPPS(v[:11])
		}
	case KindCabinetADELI:
		if structure {
			_, err = ParseADELI(strings.ToUpper(v))
		} else {
			err = checkInternal(v, ParseADELI)
		}
	case KindFINESSInternal:
		err = checkInternal(v, ParseFINESS)
	case KindSIRENInternal:
		err = checkInternal(v, ParseSIREN)
	case KindSIRETInternal:
		err = checkInternal(v, ParseSIRET)
	case KindCabinetRPPSInternal:
		err = checkInternal(v, ParseRPPS)
	}
	if err != nil {
		return NationalID{}, fmt.Errorf("%w (%v): %w", ErrNationalID, kind, err)
	}
	return NationalID{Structure: structure, Kind: kind, Value: v}, nil
}

// checkInternal checks "<structure id>/<internal id>": the structure id against parse and a
// non-empty printable internal id.
func checkInternal(v string, parse func(string) (string, error)) error {
	id, local, ok := strings.Cut(v, "/")
	if !ok || local == "" {
		return errors.New("want <id>/<internal id>")
	}
	for i := 0; i < len(local); i++ {
		if local[i] <= ' ' || local[i] > '~' {
			return errors.New("internal id is not printable ASCII")
		}
	}
	_, err := parse(id)
	return err
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// deptDigits: all digits, except that the first two may be 2A or 2B.
func deptDigits(s string) bool {
	if len(s) >= 2 && (s[:2] == "2A" || s[:2] == "2B") {
		return allDigits(s[2:])
	}
	return allDigits(s)
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
