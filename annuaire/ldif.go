package annuaire

import (
	"bufio"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Schema returns the default LDAP schema (OpenLDAP "include" format) of [DefaultProfile]: the
// attribute names of the MSSanté LDAP schema seen in public code, plus attributes of our own
// for the other columns of the extraction file. See the file's comments for its OIDs.
func Schema() string { return schema }

//go:embed schema/mssante.schema
var schema string

// Profile maps the columns of an extraction line onto the attributes of an LDAP directory.
type Profile struct {
	// BaseDN is where BALs are searched (and where export-ldif puts them).
	BaseDN string
	// ObjectClass, when not empty, is required of every entry searched and written.
	ObjectClass string
	// RDN is the attribute naming an entry: the address, with "#2", "#3"… for the second and
	// later lines of an address that appears on several.
	RDN string
	// Columns holds the attribute of each column ("" = not in the directory).
	Columns [NumColumns]string
	// NameKey is the attribute holding the name's search key ([NameKey]); when empty, name
	// searches use the last-name and structure-name attributes with the directory's own
	// matching rules (case-insensitive, not accent-insensitive).
	NameKey string
	// City is written by export-ldif with the city of the L6 line (Jeebox's "l").
	City string
	// Description, when set, is read into Entry.Description (the extraction file has none).
	Description string
}

// DefaultProfile returns the profile of the schema in [Schema], base dc=mssante,dc=fr.
func DefaultProfile() *Profile {
	p := &Profile{BaseDN: "dc=mssante,dc=fr", ObjectClass: "mssanteBAL", RDN: "uid", NameKey: "mssanteNomRecherche",
		City: "l", Description: "description"}
	p.Columns = [NumColumns]string{
		ColType: "TypeBAL", ColAddress: "mail", ColPPIDType: "TypeIdentifiantPP", ColPPID: "IdentifiantPP",
		ColNationalID: "mssanteIdNat", ColStructureIDType: "TypeIdentifiantPM", ColStructureID: "IdentifiantPM",
		ColService: "mssanteService", ColCivility: "mssanteCivilite", ColLastName: "sn", ColFirstName: "givenName",
		ColProfessionCategory: "mssanteCategorieProfession", ColProfessionCategoryLabel: "mssanteLibelleCategorieProfession",
		ColProfessionCode: "profession", ColProfessionLabel: "mssanteLibelleProfession",
		ColSpecialtyCode: "mssanteCodeSavoirFaire", ColSpecialtyLabel: "mssanteLibelleSavoirFaire",
		ColDematerialisation: "mssanteDematerialisation", ColStructureName: "o", ColTradeName: "mssanteEnseigne",
		ColL2Complement: "mssanteL2Complement", ColL3Distribution: "mssanteL3Distribution",
		ColL4Number: "mssanteL4Numero", ColL4NumberComplement: "mssanteL4ComplementNumero",
		ColL4StreetType: "mssanteL4TypeVoie", ColL4Street: "mssanteL4LibelleVoie", ColL5Locality: "mssanteL5LieuDit",
		ColL6CityLine: "mssanteL6Acheminement", ColPostalCode: "postalCode", ColDepartement: "mssanteDepartement",
		ColCountry: "mssantePays",
	}
	return p
}

// ldapValues returns the attribute values of e's columns: the extraction's form, except the
// structure identifier type, written as a name (FINESS, SIRET…), and the boolean flag.
func ldapValues(e *Entry) Fields {
	f := e.Fields()
	f[ColStructureIDType] = e.Structure.IDType
	f[ColDematerialisation] = "FALSE"
	if e.Dematerialisation {
		f[ColDematerialisation] = "TRUE"
	}
	return f
}

// LDIFOptions tune [WriteLDIF].
type LDIFOptions struct {
	// Profile is the schema written (nil = DefaultProfile()).
	Profile *Profile
	// BaseEntry also writes the entry of the base DN (a dcObject), for an empty directory.
	BaseEntry bool
}

// WriteLDIF reads an extraction file (TXT) from r and writes one LDIF (RFC 2849) entry per
// line to w, for the profile's schema: the local annuaire a structure can load into its own
// OpenLDAP every night (slapadd or ldapadd). It streams, and returns the number of entries.
func WriteLDIF(w io.Writer, r io.Reader, opts *LDIFOptions) (int, error) {
	p := DefaultProfile()
	if opts != nil && opts.Profile != nil {
		p = opts.Profile
	}
	if p.RDN == "" || p.BaseDN == "" {
		return 0, fmt.Errorf("annuaire: the LDAP profile needs a base DN and an RDN attribute")
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineSize+2)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("annuaire: %w", err)
		}
		return 0, fmt.Errorf("%w: empty file, no header", ErrFormat)
	}
	if err := checkHeader(sc.Text()); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	if opts != nil && opts.BaseEntry {
		writeBaseEntry(bw, p.BaseDN)
	}
	seen := make(map[string]int)
	n := 0
	for lineNo := 2; sc.Scan(); lineNo++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			continue
		}
		f, err := ParseLine(line)
		if err != nil {
			return n, fmt.Errorf("%w (line %d)", err, lineNo)
		}
		e := f.Entry()
		if e.Address == "" {
			continue // no BAL without an address (the index skips these lines too)
		}
		key := strings.ToLower(e.Address)
		seen[key]++
		rdn := e.Address
		if k := seen[key]; k > 1 {
			rdn += "#" + strconv.Itoa(k)
		}
		writeEntry(bw, p, rdn, &e)
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("annuaire: reading the extraction: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("annuaire: %w", err)
	}
	return n, nil
}

func writeBaseEntry(w *bufio.Writer, baseDN string) {
	writeAttr(w, "dn", baseDN)
	writeAttr(w, "objectClass", "top")
	writeAttr(w, "objectClass", "dcObject")
	writeAttr(w, "objectClass", "organization")
	first, _, _ := strings.Cut(baseDN, ",")
	if k, v, ok := strings.Cut(first, "="); ok && strings.EqualFold(k, "dc") {
		writeAttr(w, "dc", v)
	}
	writeAttr(w, "o", "MSSante")
	w.WriteByte('\n')
}

func writeEntry(w *bufio.Writer, p *Profile, rdn string, e *Entry) {
	writeAttr(w, "dn", p.RDN+"="+escapeDN(rdn)+","+p.BaseDN)
	if p.ObjectClass != "" {
		writeAttr(w, "objectClass", p.ObjectClass)
	}
	writeAttr(w, p.RDN, rdn)
	f := ldapValues(e)
	for c, attr := range p.Columns {
		if attr != "" && f[c] != "" && attr != p.RDN {
			writeAttr(w, attr, f[c])
		}
	}
	if p.NameKey != "" {
		if k := NameKey(e); k != "" {
			writeAttr(w, p.NameKey, k)
		}
	}
	if p.City != "" {
		if city := cityOf(e.Postal.CityLine, e.Postal.PostalCode); city != "" {
			writeAttr(w, p.City, city)
		}
	}
	w.WriteByte('\n')
}

// cityOf takes the city out of an L6 line ("40107 DAX CEDEX" → "DAX").
func cityOf(line, postalCode string) string {
	line = strings.TrimSpace(strings.TrimPrefix(line, postalCode))
	line = strings.TrimSuffix(line, " CEDEX")
	return strings.TrimSpace(line)
}

// writeAttr writes "name: value", or "name:: base64" when the value is not a SAFE-STRING of
// RFC 2849 (non-ASCII, a line break, a leading space, colon or '<', a trailing space).
func writeAttr(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	if ldifSafe(value) {
		w.WriteString(": ")
		w.WriteString(value)
	} else {
		w.WriteString(":: ")
		w.WriteString(base64.StdEncoding.EncodeToString([]byte(value)))
	}
	w.WriteByte('\n')
}

func ldifSafe(s string) bool {
	if s == "" {
		return true
	}
	if c := s[0]; c == ' ' || c == ':' || c == '<' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\n' || c == '\r' || c >= 0x80 {
			return false
		}
	}
	return true
}

// escapeDN escapes an attribute value for a DN (RFC 4514).
func escapeDN(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(`,+"\<>;=`, c) >= 0,
			c == '#' && i == 0, c == ' ' && (i == 0 || i == len(s)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == 0:
			b.WriteString(`\00`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// SchemaLDIF returns [Schema] as an LDIF entry for an OpenLDAP configured through cn=config
// (ldapadd -Y EXTERNAL -H ldapi:/// -f mssante.ldif, or slapadd -n0 before first start).
func SchemaLDIF() string {
	var b strings.Builder
	b.WriteString("dn: cn=mssante,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: mssante\n")
	var def []string
	flush := func() {
		if len(def) == 0 {
			return
		}
		kind := "olcAttributeTypes"
		if strings.HasPrefix(def[0], "objectclass") {
			kind = "olcObjectClasses"
		}
		_, first, _ := strings.Cut(def[0], " ")
		b.WriteString(kind + ": " + first + "\n")
		for _, l := range def[1:] {
			b.WriteString("  " + l + "\n") // an LDIF continuation: one space, then the text
		}
		def = nil
	}
	for _, line := range strings.Split(schema, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			flush()
		case strings.HasPrefix(t, "attributetype") || strings.HasPrefix(t, "objectclass"):
			flush()
			def = append(def, t)
		default:
			def = append(def, t)
		}
	}
	flush()
	return b.String()
}
