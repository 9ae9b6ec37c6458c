package annuaire

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/mssante-go/sdk/internal/fold"
	"github.com/mssante-go/sdk/mssante"
)

// Directory finds BALs. Every implementation returns the same [Entry] values for the same data
// and honours ctx for every network call.
type Directory interface {
	Search(ctx context.Context, q Query) (*Result, error)
}

// BALType is the type of a BAL (TRE_R257-TypeBAL), that of package mssante.
type BALType = mssante.BALType

// The BAL types (TRE_R257), short names for those of package mssante.
const (
	PER = mssante.BALPersonal       // personal, of a health professional
	ORG = mssante.BALOrganisational // organisational, of a service
	APP = mssante.BALApplicative    // applicative, read by software
	CAB = mssante.BALCabinet        // a liberal practice (cabinet)
)

// Entry is one BAL as a directory describes it.
type Entry struct {
	Address   string        `json:"address"`
	Type      BALType       `json:"type"`
	Person    Person        `json:"person,omitzero"`
	Structure Structure     `json:"structure,omitzero"`
	Postal    PostalAddress `json:"postal,omitzero"`
	// Dematerialisation is the "Dématérialisation" flag: the holder accepts documents by
	// MSSanté in place of paper.
	Dematerialisation bool `json:"dematerialisation"`
	// Description is the free description of the BAL (LDAP and FHIR only).
	Description string `json:"description,omitempty"`
}

// Person is the health professional who holds a PER or CAB BAL.
type Person struct {
	// NationalID is the national identifier (idNat): "8" + RPPS or "0" + ADELI.
	NationalID string `json:"nationalId,omitempty"`
	// IDType is "RPPS" or "ADELI" (or the raw code when unknown), ID the identifier itself.
	IDType                  string `json:"idType,omitempty"`
	ID                      string `json:"id,omitempty"`
	Civility                string `json:"civility,omitempty"`
	LastName                string `json:"lastName,omitempty"`
	FirstName               string `json:"firstName,omitempty"`
	ProfessionCategory      string `json:"professionCategory,omitempty"`
	ProfessionCategoryLabel string `json:"professionCategoryLabel,omitempty"`
	ProfessionCode          string `json:"professionCode,omitempty"`
	ProfessionLabel         string `json:"professionLabel,omitempty"`
	SpecialtyCode           string `json:"specialtyCode,omitempty"`
	SpecialtyLabel          string `json:"specialtyLabel,omitempty"`
}

// RPPS returns the person's RPPS number, or "" when the person is not identified by RPPS.
func (p Person) RPPS() string {
	if p.IDType == "RPPS" {
		return p.ID
	}
	return ""
}

// Structure is the organisation a BAL belongs to.
type Structure struct {
	// IDType is "FINESS", "SIRET", "SIREN", "RPPS" or "ADELI" (the raw code when unknown), ID
	// the identifier as the source gives it (for the extraction file, the national structure
	// identifier, prefixed by its type code).
	IDType    string `json:"idType,omitempty"`
	ID        string `json:"id,omitempty"`
	Name      string `json:"name,omitempty"`
	TradeName string `json:"tradeName,omitempty"`
	Service   string `json:"service,omitempty"`
}

// PostalAddress is the structure's address, in the lines of the AFNOR NF Z10-011 standard the
// extraction file uses.
type PostalAddress struct {
	Complement       string `json:"complement,omitempty"`       // L2
	Distribution     string `json:"distribution,omitempty"`     // L3
	Number           string `json:"number,omitempty"`           // L4
	NumberComplement string `json:"numberComplement,omitempty"` // L4
	StreetType       string `json:"streetType,omitempty"`       // L4
	Street           string `json:"street,omitempty"`           // L4
	Locality         string `json:"locality,omitempty"`         // L5 (lieu-dit)
	CityLine         string `json:"cityLine,omitempty"`         // L6: postal code and city
	PostalCode       string `json:"postalCode,omitempty"`
	Departement      string `json:"departement,omitempty"`
	Country          string `json:"country,omitempty"`
}

// Query selects BALs: every non-empty field must match. A Query with no criterion lists
// everything, Limit entries at a time.
type Query struct {
	// Address matches the BAL address exactly (ASCII case-insensitive).
	Address string
	// Name is a prefix of the holder's name, case- and accent-insensitive: the last name then
	// the first name for a person, the structure's name otherwise.
	Name string
	// NationalID is an idNat ("8" + RPPS, "0" + ADELI); RPPS an 11-digit RPPS number.
	NationalID string
	RPPS       string
	// StructureID is a structure identifier (FINESS, SIRET…), with or without its national
	// prefix; StructureIDType restricts it to one type ("FINESS", "SIRET"…).
	StructureID     string
	StructureIDType string
	PostalCode      string
	Departement     string
	// Profession is a profession code (e.g. "10" for médecin).
	Profession string
	Type       BALType
	// Limit is the most entries returned (0 = 100, at most MaxLimit).
	Limit int
	// Cursor continues a previous search: pass the Next of its Result.
	Cursor string

	nameKey string // the search key of Name, set by check
}

// Limits of a query.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Result is one page of answers. Entries are sorted by name key then address when the query
// has a Name, by address otherwise (the FHIR backend keeps the server's order).
type Result struct {
	Entries []Entry
	// Next is the cursor of the next page, "" after the last one.
	Next string
}

// Errors.
var (
	// ErrInvalidQuery reports a query the backend cannot run (bad cursor, bad type…).
	ErrInvalidQuery = errors.New("annuaire: invalid query")
	// ErrUnsupported reports a criterion the backend cannot search on.
	ErrUnsupported = errors.New("annuaire: criterion not supported by this source")
	// ErrFormat reports an extraction file whose format is not the one this package knows.
	ErrFormat = errors.New("annuaire: unexpected extraction format")
)

func (q *Query) limit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// check validates q and computes the key of its name.
func (q *Query) check() error {
	if _, err := mssante.ParseBALType(string(q.Type)); q.Type != "" && (err != nil || q.Type != PER && q.Type != ORG && q.Type != APP && q.Type != CAB) {
		return fmt.Errorf("%w: BAL type %q", ErrInvalidQuery, q.Type)
	}
	q.nameKey = fold.Key(q.Name)
	if q.Name != "" && q.nameKey == "" {
		return fmt.Errorf("%w: a name needs a letter or a digit", ErrInvalidQuery)
	}
	if q.RPPS != "" {
		if _, err := mssante.ParseRPPS(q.RPPS); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidQuery, err)
		}
	}
	return nil
}

// checkOffset is check for the backends whose cursor is an offset, which it returns.
func (q *Query) checkOffset() (offset int, err error) {
	if err := q.check(); err != nil {
		return 0, err
	}
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: bad cursor", ErrInvalidQuery)
		}
		offset = n
	}
	return offset, nil
}

// nationalIDs returns the idNat values the query's person criteria designate ("" = none).
func (q *Query) nationalID() (string, bool) {
	switch {
	case q.NationalID != "" && q.RPPS != "":
		if q.NationalID != rppsPrefix+q.RPPS {
			return "", false // contradictory: nothing matches
		}
		return q.NationalID, true
	case q.RPPS != "":
		return rppsPrefix + q.RPPS, true
	}
	return q.NationalID, true
}

// matches reports whether e satisfies every criterion of q, which check has validated. Name
// is compared on nameKey, the entry's.
func (q *Query) matches(e *Entry, nameKey string) bool {
	if q.Address != "" && !asciiEqualFold(q.Address, e.Address) {
		return false
	}
	if q.Type != "" && e.Type != q.Type {
		return false
	}
	if q.Name != "" && !hasPrefix(nameKey, q.nameKey) {
		return false
	}
	if id, ok := q.nationalID(); !ok || id != "" && e.Person.NationalID != id {
		return false
	}
	if q.StructureID != "" && !structureIDMatches(q.StructureID, e.Structure.ID) {
		return false
	}
	if q.StructureIDType != "" && e.Structure.IDType != q.StructureIDType {
		return false
	}
	if q.PostalCode != "" && e.Postal.PostalCode != q.PostalCode {
		return false
	}
	if q.Departement != "" && e.Postal.Departement != q.Departement {
		return false
	}
	if q.Profession != "" && e.Person.ProfessionCode != q.Profession {
		return false
	}
	return true
}

// structureIDMatches compares a queried structure identifier with the stored one, which may
// carry the one-digit national prefix of its type (idNat_Struct: "1" + FINESS, "3" + SIRET).
func structureIDMatches(q, stored string) bool {
	return q == stored || len(stored) == len(q)+1 && stored[1:] == q
}

// sortEntries puts entries in the order a Result documents: by name key when byName, then by
// address, then (the same address on several lines) by all their columns.
func sortEntries(entries []Entry, byName bool) {
	keys := make([]string, len(entries))
	idx := make([]int, len(entries))
	for i := range entries {
		idx[i] = i
		if byName {
			keys[i] = NameKey(&entries[i])
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		if c := cmp.Compare(entries[a].Address, entries[b].Address); c != 0 {
			return c
		}
		fa, fb := entries[a].Fields(), entries[b].Fields() // rare: one address, several lines
		return compareFields(&fa, &fb)
	})
	sorted := make([]Entry, len(entries))
	for i, j := range idx {
		sorted[i] = entries[j]
	}
	copy(entries, sorted)
}

func compareFields(a, b *Fields) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// page cuts the page [offset, offset+limit) out of sorted entries and sets its cursor.
func page(all []Entry, offset, limit int) *Result {
	if offset > len(all) {
		offset = len(all)
	}
	end := min(offset+limit, len(all))
	r := &Result{Entries: all[offset:end]}
	if end < len(all) {
		r.Next = strconv.Itoa(end)
	}
	return r
}

// NameKey is the key name searches compare with: for a person, the last name then the first
// name, otherwise the structure's name, upper-cased, without accents, punctuation collapsed to
// single spaces.
func NameKey(e *Entry) string {
	if e.Person.LastName != "" {
		return string(fold.AppendNameKey(nil, e.Person.LastName, e.Person.FirstName))
	}
	return fold.Key(e.Structure.Name)
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
