package xdm

import (
	"archive/zip"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// Layout of the archive (IHE ITI-32, Gazelle assertions ITI32-004..008; ISO 9660 level-1 8.3 names).
const (
	ReadmeName   = "README.TXT"
	IndexName    = "INDEX.HTM"
	RootDir      = "IHE_XDM"
	SubsetName   = "SUBSET01"
	MetadataName = "METADATA.XML"
	// FileName is the attachment name of the archive on an MSSanté mail.
	FileName = "IHE_XDM.ZIP"
	// MaxDocuments is the largest number of documents Pack names DOC0001.XML … DOC9999.XML.
	MaxDocuments = 9999
)

// ErrPack is wrapped by every Pack error.
var ErrPack = errors.New("xdm: cannot pack")

// PackOptions tune [Pack]. Nil means the defaults.
type PackOptions struct {
	// Now is the clock for submissionTime and the ZIP timestamps (nil = time.Now). Packing the
	// same documents at the same instant gives the same bytes.
	Now func() time.Time
	// SourceID is the OID of the sending system (default: 1.2.250.1.71.4.2.2.<idNat_Struct of
	// the custodian>, as the ANS packages do).
	SourceID string
	// Application, Version and Editor are written in README.TXT (defaults: mssante-go, -, -).
	Application, Version, Editor string
	// KeepAccents keeps non-ASCII letters in README.TXT; by default they are folded to ASCII
	// (CI-SIS EDS as Portabilité LGC quotes it asks for 7-bit ASCII, the ANS XDM examples
	// use UTF-8: the strict reading is the default).
	KeepAccents bool
}

// PackedDocument is one document of a written package.
type PackedDocument struct {
	Entry *DocumentEntry
	Path  string // path in the archive, e.g. IHE_XDM/SUBSET01/DOC0001.XML
}

// Packed describes what Pack wrote.
type Packed struct {
	SubmissionSet *SubmissionSet
	Documents     []PackedDocument
}

// Pack writes an IHE_XDM.ZIP holding the CDA documents (each given as the exact bytes to
// store) in one submission set. All documents must concern the same patient (one patient per
// mail, Réf. #2 ECO.2.1.1). The metadata are derived from each CDA header through the mapping
// table; hash and size are those of the stored bytes.
func Pack(w io.Writer, docs [][]byte, opts *PackOptions) (*Packed, error) {
	var o PackOptions
	if opts != nil {
		o = *opts
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	at := now()
	if len(docs) == 0 || len(docs) > MaxDocuments {
		return nil, fmt.Errorf("%w: want 1 to %d documents, got %d", ErrPack, MaxDocuments, len(docs))
	}
	var entries []*DocumentEntry
	var first *cda.Document
	for i, data := range docs {
		d, err := cda.ParseBytes(data, &cda.ParseOptions{Strict: true})
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrPack, i+1, err)
		}
		e, err := EntryFromCDA(d)
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrPack, i+1, err)
		}
		if i == 0 {
			first = d
		} else if e.PatientID != entries[0].PatientID {
			return nil, fmt.Errorf("%w: document %d concerns another patient (one patient per package)", ErrPack, i+1)
		}
		for _, prev := range entries {
			if prev.UniqueID == e.UniqueID {
				return nil, fmt.Errorf("%w: document %d repeats the id of another document", ErrPack, i+1)
			}
		}
		sum := sha1.Sum(data)
		e.Hash = hex.EncodeToString(sum[:])
		e.Size = int64(len(data))
		e.URI = fmt.Sprintf("DOC%04d.XML", i+1)
		entries = append(entries, e)
	}
	// Submission set (CI-SIS CDA-XDS, filled as the ANS XDM examples fill it).
	cust := first.Custodian.AssignedCustodian.Organization
	custID := ""
	for _, id := range cust.IDs {
		if id.Root == mssante.OIDIdNatStruct {
			custID = id.Extension
		}
	}
	ss := &SubmissionSet{SubmissionTime: dtmNow(at), PatientID: entries[0].PatientID,
		Author: entries[0].Authors[0], ContentType: entries[0].FacilityType, SourceID: o.SourceID}
	if len(entries) == 1 {
		ss.Title = entries[0].Title
	}
	if ss.SourceID == "" {
		if custID == "" {
			return nil, fmt.Errorf("%w: custodian has no idNat_Struct: set PackOptions.SourceID", ErrPack)
		}
		ss.SourceID = mssante.OIDIdNatStruct + "." + custID
	}
	var seed strings.Builder
	seed.WriteString(ss.SubmissionTime)
	for _, e := range entries {
		seed.WriteString("\x00" + e.UniqueID + "\x00" + e.Hash)
	}
	ss.EntryUUID = uuidURN("submissionset\x00" + seed.String())
	ss.UniqueID = uuidOID(ss.EntryUUID)

	var meta bytes.Buffer
	meta.WriteString(xml.Header)
	enc := xml.NewEncoder(&meta)
	enc.Indent("", " ")
	if err := enc.Encode(toRIM(ss, entries)); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrPack, err)
	}
	meta.WriteString("\n")

	zw := zip.NewWriter(w)
	mod := at.UTC().Truncate(2 * time.Second)
	put := func(name string, data []byte, method uint16) error {
		hdr := &zip.FileHeader{Name: name, Method: method, Modified: mod}
		hdr.SetMode(0o644)
		if strings.HasSuffix(name, "/") {
			hdr.SetMode(0o755 | 1<<31) // os.ModeDir
		}
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		_, err = fw.Write(data)
		return err
	}
	subset := RootDir + "/" + SubsetName + "/"
	packed := &Packed{SubmissionSet: ss}
	files := []struct {
		name   string
		data   []byte
		method uint16
	}{
		{IndexName, indexHTM(cust.Name, custID, entries), zip.Deflate},
		{ReadmeName, readmeTXT(first, custID, entries, &o), zip.Deflate},
		{RootDir + "/", nil, zip.Store},
		{subset, nil, zip.Store},
	}
	for i, e := range entries {
		files = append(files, struct {
			name   string
			data   []byte
			method uint16
		}{subset + e.URI, docs[i], zip.Deflate})
		packed.Documents = append(packed.Documents, PackedDocument{Entry: e, Path: subset + e.URI})
	}
	files = append(files, struct {
		name   string
		data   []byte
		method uint16
	}{subset + MetadataName, meta.Bytes(), zip.Deflate})
	for _, f := range files {
		if err := put(f.name, f.data, f.method); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPack, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPack, err)
	}
	return packed, nil
}

// indexHTM is a valid XHTML 1.0 Strict page naming the sender (StructNom and StructIdNat,
// as Portabilité LGC names them), linking README.TXT and listing the documents.
func indexHTM(org, idNat string, entries []*DocumentEntry) []byte {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n")
	b.WriteString("<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n")
	b.WriteString("<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"fr\" lang=\"fr\">\r\n<head><title>IHE XDM</title></head>\r\n<body>\r\n")
	fmt.Fprintf(&b, "<p>Emetteur : %s (%s)</p>\r\n", html.EscapeString(org), html.EscapeString(idNat))
	b.WriteString("<p>Voir le fichier <a href=\"README.TXT\">README.TXT</a></p>\r\n<ul>\r\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "<li><a href=\"IHE_XDM/SUBSET01/%s\">%s</a></li>\r\n", e.URI, html.EscapeString(e.Title))
	}
	b.WriteString("</ul>\r\n</body>\r\n</html>\r\n")
	return []byte(b.String())
}

// readmeTXT follows the layout of the ANS XDM examples: sender, application,
// instructions, tree; CRLF line ends.
func readmeTXT(d *cda.Document, idNat string, entries []*DocumentEntry, o *PackOptions) []byte {
	app, ver, ed := o.Application, o.Version, o.Editor
	if app == "" {
		app = "mssante-go"
	}
	if ver == "" {
		ver = "-"
	}
	if ed == "" {
		ed = "-"
	}
	family, given := "", ""
	if len(d.Authors) > 0 {
		family, given = d.Authors[0].AssignedAuthor.Name()
	}
	org := d.Custodian.AssignedCustodian.Organization
	lines := []string{
		"Emetteur :", "=============",
		"    . Nom : " + strings.TrimSpace(family+" "+given),
		"    . Organisme : " + org.Name + " (" + idNat + ")",
		"",
		"Application de l'emetteur :", "=========================",
		"    . Nom : " + app, "    . Version : " + ver, "    . Editeur : " + ed,
		"",
		"Instructions :", "=============",
		". Consultez les fichiers recus par messagerie securisee de sante dans votre logiciel de professionnel de sante.",
		"",
		"Arborescence :", "============",
		"     README.TXT", "     INDEX.HTM", "     + IHE_XDM", "           +SUBSET01", "                METADATA.XML",
	}
	for _, e := range entries {
		lines = append(lines, "                "+e.URI)
	}
	s := strings.Join(lines, "\r\n") + "\r\n"
	if !o.KeepAccents {
		s = asciiFold(s)
	}
	return []byte(s)
}

// asciiFold removes diacritics and replaces any other non-ASCII rune by '?'.
func asciiFold(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r >= 0x300 && r <= 0x36f: // combining marks
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}
