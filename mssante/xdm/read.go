package xdm

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// Errors of Read. Each failure wraps exactly one of them.
var (
	ErrFormat    = errors.New("xdm: not a readable ZIP archive")
	ErrLimit     = errors.New("xdm: archive exceeds a limit")
	ErrUnsafe    = errors.New("xdm: unsafe archive entry")
	ErrMetadata  = errors.New("xdm: invalid METADATA.XML")
	ErrIntegrity = errors.New("xdm: document does not match its metadata")
)

// ReadOptions bound what [Read] accepts. Zero fields take the defaults in brackets.
type ReadOptions struct {
	MaxArchiveSize  int64 // size of the ZIP itself [256 MiB]
	MaxEntries      int   // entries in the central directory [1000]
	MaxEntrySize    int64 // uncompressed bytes of one entry [64 MiB]
	MaxTotalSize    int64 // uncompressed bytes read in all [256 MiB]
	MaxRatio        int64 // uncompressed/compressed of an entry, above 64 KiB [200]
	MaxMetadataSize int64 // METADATA.XML [8 MiB]
	// CDA is passed to cda.ParseBytes for each document (nil = tolerant).
	CDA *cda.ParseOptions
}

func (o *ReadOptions) withDefaults() ReadOptions {
	var r ReadOptions
	if o != nil {
		r = *o
	}
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&r.MaxArchiveSize, 256<<20)
	def(&r.MaxEntrySize, 64<<20)
	def(&r.MaxTotalSize, 256<<20)
	def(&r.MaxRatio, 200)
	def(&r.MaxMetadataSize, 8<<20)
	if r.MaxEntries <= 0 {
		r.MaxEntries = 1000
	}
	return r
}

// Package is an opened IHE_XDM.ZIP.
type Package struct {
	Subsets []Subset
	// Warnings are deviations that do not prevent using the documents, e.g. the known defects
	// of the ANS reference packages (ansforge/interop-exemples-xdm).
	Warnings []string
}

// Subset is one submission set folder.
type Subset struct {
	Name          string // e.g. SUBSET01
	SubmissionSet SubmissionSet
	Documents     []Document
}

// Document is one document of a subset: its metadata, its bytes (hash and size checked) and
// the parsed CDA.
type Document struct {
	Entry DocumentEntry
	Path  string
	Data  []byte
	CDA   *cda.Document
}

// Read opens an IHE_XDM.ZIP safely: it refuses oversized archives, too many entries, absolute
// or "..", duplicate and symlink entries, encrypted entries, compression bombs (per entry size,
// ratio and total), metadata pointing outside its subset, and documents whose SHA-1, size or
// patient do not match the metadata. Only METADATA.XML files and the documents they name are
// decompressed.
func Read(r io.ReaderAt, size int64, opts *ReadOptions) (*Package, error) {
	o := opts.withDefaults()
	if size > o.MaxArchiveSize {
		return nil, fmt.Errorf("%w: archive is %d bytes (limit %d)", ErrLimit, size, o.MaxArchiveSize)
	}
	if n, err := directoryEntries(r, size); err != nil {
		return nil, err
	} else if n > o.MaxEntries {
		return nil, fmt.Errorf("%w: %d entries (limit %d)", ErrLimit, n, o.MaxEntries)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if len(zr.File) > o.MaxEntries {
		return nil, fmt.Errorf("%w: %d entries (limit %d)", ErrLimit, len(zr.File), o.MaxEntries)
	}
	rd := &reader{opts: o, files: map[string]*zip.File{}}
	pkg := &Package{}
	var subsets []string
	for _, f := range zr.File {
		name, err := safeName(f)
		if err != nil {
			return nil, err
		}
		key := strings.ToUpper(strings.TrimSuffix(name, "/"))
		if _, dup := rd.files[key]; dup {
			return nil, fmt.Errorf("%w: duplicate entry %q", ErrUnsafe, name)
		}
		rd.files[key] = f
		parts := strings.Split(key, "/")
		if len(parts) == 3 && parts[0] == RootDir && parts[2] == MetadataName {
			subsets = append(subsets, strings.Split(name, "/")[1])
		}
	}
	for _, n := range []string{ReadmeName, IndexName} {
		if rd.files[n] == nil {
			pkg.Warnings = append(pkg.Warnings, n+" missing at the root (ITI32-003)")
		}
	}
	if len(subsets) == 0 {
		return nil, fmt.Errorf("%w: no IHE_XDM/<subset>/METADATA.XML", ErrMetadata)
	}
	for _, sub := range subsets {
		s, err := rd.subset(sub, pkg)
		if err != nil {
			return nil, err
		}
		pkg.Subsets = append(pkg.Subsets, *s)
	}
	return pkg, nil
}

// directoryEntries reads the entry count of the end-of-central-directory record, so that an
// archive announcing too many entries is refused before its directory is loaded.
func directoryEntries(r io.ReaderAt, size int64) (int, error) {
	const eocdLen = 22
	if size < eocdLen {
		return 0, fmt.Errorf("%w: too short", ErrFormat)
	}
	n := min(size, eocdLen+65535)
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return 0, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	i := bytes.LastIndex(buf, []byte("PK\x05\x06"))
	if i < 0 || len(buf)-i < eocdLen {
		return 0, fmt.Errorf("%w: no end of central directory", ErrFormat)
	}
	count := int(binary.LittleEndian.Uint16(buf[i+10:]))
	if count == 0xFFFF {
		count = 1 << 30 // ZIP64: more than the 16-bit field holds
	}
	return count, nil
}

// safeName checks an entry and returns its name with / separators.
func safeName(f *zip.File) (string, error) {
	name := strings.ReplaceAll(f.Name, `\`, "/")
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: empty or NUL in name", ErrUnsafe)
	case strings.HasPrefix(name, "/") || len(name) > 1 && name[1] == ':':
		return "", fmt.Errorf("%w: absolute name %q", ErrUnsafe, name)
	case f.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("%w: symbolic link %q", ErrUnsafe, name)
	case f.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeCharDevice) != 0:
		return "", fmt.Errorf("%w: special file %q", ErrUnsafe, name)
	case f.Flags&0x1 != 0:
		return "", fmt.Errorf("%w: encrypted entry %q", ErrUnsafe, name)
	case f.Method != zip.Store && f.Method != zip.Deflate:
		return "", fmt.Errorf("%w: unsupported compression method %d for %q", ErrUnsafe, f.Method, name)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if seg == ".." || seg == "." || seg == "" {
			return "", fmt.Errorf("%w: path %q leaves or confuses the archive tree", ErrUnsafe, name)
		}
	}
	return name, nil
}

type reader struct {
	opts  ReadOptions
	files map[string]*zip.File
	total int64
}

// read decompresses an entry within the limits.
func (rd *reader) read(f *zip.File, limit int64) ([]byte, error) {
	if f.Mode().IsDir() {
		return nil, fmt.Errorf("%w: %q is a directory", ErrIntegrity, f.Name)
	}
	limit = min(limit, max(rd.opts.MaxRatio*int64(f.CompressedSize64), 64<<10), rd.opts.MaxTotalSize-rd.total)
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%w: entry %q declares %d bytes (allowed %d)", ErrLimit, f.Name, f.UncompressedSize64, limit)
	}
	// The compressed bytes are read whole and inflated from memory: archive/zip's reader feeds
	// flate through a bufio layer byte by byte, which made reading a 10 MB document a third
	// slower than inflating it. Size and CRC-32 are checked here as archive/zip would.
	if f.CompressedSize64 > uint64(rd.opts.MaxArchiveSize) {
		return nil, fmt.Errorf("%w: %q: compressed size beyond the archive", ErrFormat, f.Name)
	}
	raw, err := f.OpenRaw()
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrFormat, f.Name, err)
	}
	compressed := make([]byte, f.CompressedSize64)
	if _, err := io.ReadFull(raw, compressed); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrFormat, f.Name, err)
	}
	var src io.Reader = bytes.NewReader(compressed)
	if f.Method == zip.Deflate {
		fr := flate.NewReader(src)
		defer fr.Close()
		src = fr
	}
	// Inflation stops one byte past the declared size, already checked against the limits: a
	// header that understates its entry costs no more memory than an honest one. The spare
	// MinRead bytes let ReadFrom see the end without growing the buffer.
	declared := int64(f.UncompressedSize64)
	var buf bytes.Buffer
	buf.Grow(int(declared) + bytes.MinRead)
	n, err := buf.ReadFrom(io.LimitReader(src, declared+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrFormat, f.Name, err)
	}
	if n > declared {
		return nil, fmt.Errorf("%w: entry %q inflates beyond its declared %d bytes", ErrLimit, f.Name, declared)
	}
	if n != declared || crc32.ChecksumIEEE(buf.Bytes()) != f.CRC32 {
		return nil, fmt.Errorf("%w: %q: size or CRC-32 does not match its header", ErrFormat, f.Name)
	}
	rd.total += n
	return buf.Bytes(), nil
}

func (rd *reader) subset(name string, pkg *Package) (*Subset, error) {
	dir := RootDir + "/" + name + "/"
	mf := rd.files[strings.ToUpper(dir+MetadataName)]
	data, err := rd.read(mf, rd.opts.MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	ss, entries, warnings, err := ParseMetadata(data)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		pkg.Warnings = append(pkg.Warnings, name+": "+w)
	}
	s := &Subset{Name: name, SubmissionSet: *ss}
	if len(entries) > rd.opts.MaxEntries {
		return nil, fmt.Errorf("%w: %s lists %d documents (limit %d)", ErrLimit, name, len(entries), rd.opts.MaxEntries)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[strings.ToUpper(e.URI)] {
			return nil, fmt.Errorf("%w: %s names %s twice", ErrMetadata, name, e.URI)
		}
		seen[strings.ToUpper(e.URI)] = true
		if e.URI == "" || strings.ContainsAny(e.URI, `/\`) || e.URI == "." || e.URI == ".." {
			return nil, fmt.Errorf("%w: METADATA URI %q points outside subset %s", ErrUnsafe, e.URI, name)
		}
		f := rd.files[strings.ToUpper(dir+e.URI)]
		if f == nil {
			return nil, fmt.Errorf("%w: %s names %s, which the archive lacks", ErrIntegrity, name, e.URI)
		}
		doc, err := rd.read(f, rd.opts.MaxEntrySize)
		if err != nil {
			return nil, err
		}
		sum := sha1.Sum(doc)
		if !strings.EqualFold(e.Hash, hex.EncodeToString(sum[:])) {
			return nil, fmt.Errorf("%w: %s: SHA-1 differs from the hash slot", ErrIntegrity, e.URI)
		}
		if e.Hash != strings.ToLower(e.Hash) {
			pkg.Warnings = append(pkg.Warnings, name+": "+e.URI+": hash slot in upper-case hex")
		}
		if e.Size != int64(len(doc)) {
			return nil, fmt.Errorf("%w: %s: %d bytes, size slot says %d", ErrIntegrity, e.URI, len(doc), e.Size)
		}
		d, err := cda.ParseBytes(doc, rd.opts.CDA)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrIntegrity, e.URI, err)
		}
		if ins, ok := d.INS(); ok && ins != e.PatientID {
			return nil, fmt.Errorf("%w: %s: the CDA patient INS differs from the metadata patientId", ErrIntegrity, e.URI)
		}
		s.Documents = append(s.Documents, Document{Entry: *e, Path: f.Name, Data: doc, CDA: d})
	}
	if len(s.Documents) == 0 {
		return nil, fmt.Errorf("%w: %s holds no document entry", ErrMetadata, name)
	}
	return s, nil
}

// ParseMetadata parses a METADATA.XML (ebRIM SubmitObjectsRequest) into the submission set and
// its document entries. Deviations that leave the meaning clear (the ANS package defects) are
// returned as warnings.
func ParseMetadata(data []byte) (*SubmissionSet, []*DocumentEntry, []string, error) {
	var req submitObjectsRequest
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") {
			return in, nil
		}
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	if err := dec.Decode(&req); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	var warnings []string
	warn := func(format string, args ...any) {
		w := fmt.Sprintf(format, args...)
		for _, x := range warnings {
			if x == w {
				return
			}
		}
		warnings = append(warnings, w)
	}
	l := &req.List
	if len(l.RegistryPackages) != 1 {
		return nil, nil, nil, fmt.Errorf("%w: want one RegistryPackage (submission set), got %d", ErrMetadata, len(l.RegistryPackages))
	}
	if len(l.ExtrinsicObjects) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: no ExtrinsicObject (document entry)", ErrMetadata)
	}
	rp := &l.RegistryPackages[0]
	ss := &SubmissionSet{EntryUUID: rp.ID, SubmissionTime: slotValue(rp.Slots, "submissionTime"), Title: rp.Name.value()}
	// Classifications of an object: nested ones and top-level ones pointing at it.
	classOf := func(o *registryObject) []classification {
		out := append([]classification(nil), o.Classifications...)
		for _, c := range l.Classifications {
			if c.ClassifiedObject == o.ID {
				out = append(out, c)
			}
		}
		return out
	}
	for _, c := range classOf(rp) {
		switch c.ClassificationScheme {
		case schemeSSAuthor, schemeDEAuthor:
			ss.Author = authorOf(c)
		case schemeSSContentType:
			ss.ContentType = codeOf(c)
		}
	}
	for _, x := range rp.ExternalIdentifiers {
		if x.RegistryObject != rp.ID {
			warn("submission set external identifier points at another object (registryObject)")
		}
		switch x.IdentificationScheme {
		case schemeSSUniqueID:
			ss.UniqueID = x.Value
		case schemeSSSourceID:
			ss.SourceID = x.Value
		case schemeSSPatientID:
			ins, err := insOf(x.Value)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%w: submission set patientId: %v", ErrMetadata, err)
			}
			ss.PatientID = ins
		}
	}
	var entries []*DocumentEntry
	for i := range l.ExtrinsicObjects {
		eo := &l.ExtrinsicObjects[i]
		e := &DocumentEntry{EntryUUID: eo.ID, MimeType: eo.MimeType, Title: eo.Name.value(),
			Hash: slotValue(eo.Slots, "hash"), URI: slotValue(eo.Slots, "URI"),
			CreationTime: slotValue(eo.Slots, "creationTime"), ServiceStartTime: slotValue(eo.Slots, "serviceStartTime"),
			ServiceStopTime: slotValue(eo.Slots, "serviceStopTime"), LanguageCode: slotValue(eo.Slots, "languageCode"),
			LegalAuthenticator: slotValue(eo.Slots, "legalAuthenticator"), SourcePatientID: slotValue(eo.Slots, "sourcePatientId"),
			SourcePatientInfo: slotValues(eo.Slots, "sourcePatientInfo")}
		if e.URI == "" {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d has no URI slot", ErrMetadata, i+1)
		}
		if len(e.Hash) != 40 {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d has no SHA-1 hash slot", ErrMetadata, i+1)
		}
		if _, err := hex.DecodeString(e.Hash); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d hash is not hex", ErrMetadata, i+1)
		}
		size, err := strconv.ParseInt(slotValue(eo.Slots, "size"), 10, 64)
		if err != nil || size < 0 {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d has no valid size slot", ErrMetadata, i+1)
		}
		e.Size = size
		for _, c := range eo.Classifications {
			if c.ClassifiedObject != eo.ID {
				warn("document classifications point at %s, not at the document entry (classifiedObject)", shortID(c.ClassifiedObject, rp.ID))
			}
		}
		for _, c := range classOf(eo) {
			switch c.ClassificationScheme {
			case schemeDEAuthor:
				e.Authors = append(e.Authors, authorOf(c))
			case schemeDEClass:
				e.ClassCode = codeOf(c)
			case schemeDEConfidentiality:
				e.Confidentiality = append(e.Confidentiality, codeOf(c))
			case schemeDEEvent:
				e.EventCodes = append(e.EventCodes, codeOf(c))
			case schemeDEFormat:
				e.FormatCode = codeOf(c)
			case schemeDEFacility:
				e.FacilityType = codeOf(c)
			case schemeDEPractice:
				e.PracticeSetting = codeOf(c)
			case schemeDEType:
				e.TypeCode = codeOf(c)
			}
		}
		if strings.HasPrefix(e.FormatCode.Code, "urn:ihe:iti:xds-sd:") && e.FormatCode.Scheme != formatPDF.Scheme {
			warn("formatCode %s given in code system %s instead of %s", e.FormatCode.Code, e.FormatCode.Scheme, formatPDF.Scheme)
		}
		for _, x := range eo.ExternalIdentifiers {
			if x.RegistryObject != eo.ID {
				warn("document external identifier points at another object (registryObject)")
			}
			switch x.IdentificationScheme {
			case schemeDEUniqueID:
				e.UniqueID = x.Value
			case schemeDEPatientID:
				ins, err := insOf(x.Value)
				if err != nil {
					return nil, nil, nil, fmt.Errorf("%w: document entry %d patientId: %v", ErrMetadata, i+1, err)
				}
				e.PatientID = ins
			}
		}
		if e.PatientID.IsZero() {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d has no patientId", ErrMetadata, i+1)
		}
		if !ss.PatientID.IsZero() && ss.PatientID != e.PatientID {
			return nil, nil, nil, fmt.Errorf("%w: document entry %d concerns another patient than the submission set", ErrMetadata, i+1)
		}
		entries = append(entries, e)
	}
	members := map[string]bool{}
	for _, a := range l.Associations {
		switch a.AssociationType {
		case assocHasMember:
			if a.SourceObject == rp.ID {
				members[a.TargetObject] = true
			}
		case assocRPLC:
			for _, e := range entries {
				if e.EntryUUID == a.SourceObject {
					e.Replaces = a.TargetObject
				}
			}
		}
	}
	for _, e := range entries {
		if !members[e.EntryUUID] {
			warn("document entry %s is not a HasMember of the submission set", e.URI)
		}
	}
	return ss, entries, warnings, nil
}

func shortID(id, ssID string) string {
	if id == ssID {
		return "the submission set"
	}
	return "another object"
}

func codeOf(c classification) Code {
	code := ""
	if c.NodeRepresentation != nil {
		code = *c.NodeRepresentation
	}
	return Code{Code: code, Scheme: slotValue(c.Slots, "codingScheme"), Display: c.Name.value()}
}

func authorOf(c classification) Author {
	return Author{Person: slotValue(c.Slots, "authorPerson"), Institution: slotValues(c.Slots, "authorInstitution"),
		Specialty: slotValues(c.Slots, "authorSpecialty"), Role: slotValues(c.Slots, "authorRole")}
}

// insOf reads a patientId CX. The value is not repeated in errors (health data).
func insOf(cx string) (mssante.INS, error) {
	id, oid, _, ok := ParseCX(cx)
	if !ok {
		return mssante.INS{}, errors.New("not an HL7 CX")
	}
	return mssante.INS{Value: id, OID: oid}, nil
}
