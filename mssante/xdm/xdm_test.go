package xdm

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var clock = func() time.Time { return time.Date(2026, 3, 12, 11, 0, 0, 0, time.UTC) }

func sampleCDA(t testing.TB, k cda.Kind, mutate func(*cda.Input)) []byte {
	t.Helper()
	in := cda.Sample(k)
	if mutate != nil {
		mutate(in)
	}
	d, err := cda.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cda.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pack(t testing.TB, docs ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Pack(&buf, docs, &PackOptions{Now: clock}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func read(zipData []byte, opts *ReadOptions) (*Package, error) {
	return Read(bytes.NewReader(zipData), int64(len(zipData)), opts)
}

func twoDocs(t testing.TB) [][]byte {
	return [][]byte{sampleCDA(t, cda.KindLDLSES, nil), sampleCDA(t, cda.KindN1, func(in *cda.Input) {
		in.ID.Extension = "DOC-2026-0002"
	})}
}

func TestPackReadRoundTrip(t *testing.T) {
	docs := twoDocs(t)
	z := pack(t, docs...)
	if again := pack(t, docs...); !bytes.Equal(z, again) {
		t.Fatal("Pack is not deterministic for a fixed clock")
	}
	pkg, err := read(z, &ReadOptions{CDA: &cda.ParseOptions{Strict: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.Warnings) != 0 {
		t.Fatalf("our own package has warnings: %v", pkg.Warnings)
	}
	if len(pkg.Subsets) != 1 || len(pkg.Subsets[0].Documents) != 2 {
		t.Fatalf("subsets = %+v", pkg.Subsets)
	}
	s := pkg.Subsets[0]
	ins := mssante.INS{Value: "279035121518989", OID: mssante.OIDINSNIRTest}
	if s.SubmissionSet.PatientID != ins || s.SubmissionSet.SourceID != "1.2.250.1.71.4.2.2.1750803447" ||
		s.SubmissionSet.SubmissionTime != "20260312110000" || s.SubmissionSet.ContentType.Code != "SA01" ||
		!strings.HasPrefix(s.SubmissionSet.UniqueID, "2.25.") {
		t.Fatalf("submission set = %+v", s.SubmissionSet)
	}
	for i, d := range s.Documents {
		if !bytes.Equal(d.Data, docs[i]) {
			t.Fatalf("document %d bytes differ", i)
		}
		want, err := EntryFromCDA(d.CDA)
		if err != nil {
			t.Fatal(err)
		}
		want.Hash, want.Size, want.URI = d.Entry.Hash, d.Entry.Size, d.Entry.URI
		if fmt.Sprintf("%+v", *want) != fmt.Sprintf("%+v", d.Entry) {
			t.Fatalf("document %d: metadata read back differs from the mapping:\n got %+v\nwant %+v", i, d.Entry, *want)
		}
	}
	e0, e1 := s.Documents[0].Entry, s.Documents[1].Entry
	checks := map[string][2]string{
		"URI":          {e0.URI, "DOC0001.XML"},
		"typeCode":     {e0.TypeCode.Code, "11490-0"},
		"classCode":    {e0.ClassCode.Code + "|" + e0.ClassCode.Scheme, "10|1.2.250.1.213.1.1.4.1"},
		"formatLDL":    {e0.FormatCode.Code + "|" + e0.FormatCode.Scheme, "urn:asip:ci-sis:ldl-ses:2017|1.2.250.1.213.1.1.4.2.282"},
		"formatN1":     {e1.FormatCode.Code + "|" + e1.FormatCode.Scheme, "urn:ihe:iti:xds-sd:pdf:2008|1.3.6.1.4.1.19376.1.2.3"},
		"conf":         {e0.Confidentiality[0].Code, "N"},
		"facility":     {e0.FacilityType.Code, "SA01"},
		"practice":     {e0.PracticeSetting.Code, "ETABLISSEMENT"},
		"event":        {e0.EventCodes[0].Code, "IMP"},
		"creationTime": {e0.CreationTime, "20260312093000"},
		"serviceStart": {e0.ServiceStartTime, "20260305093000"},
		"uniqueId":     {e0.UniqueID, "1.2.250.1.999.1.1.1^DOC-2026-0001"},
		"author":       {e0.Authors[0].Person, "801234567897^DAVID^Charles^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"},
		"institution":  {e0.Authors[0].Institution[0], "Hôpital Exemple^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750803447"},
		"sourcePat":    {e0.SourcePatientID, "1234567890121^^^&1.2.250.1.999.1.2&ISO^PI"},
		"patientInfo":  {strings.Join(e0.SourcePatientInfo, "|"), "PID-5|PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE-LOUISE^^^^L|PID-5|PAT-TROIS^DOMINIQUE^^^^^D|PID-7|19790328|PID-8|F|PID-11|^^^^^^BDL^^51215"},
		"hash lower":   {e0.Hash, strings.ToLower(e0.Hash)},
	}
	for k, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
	// Layout: names, order, 8.3 upper case.
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	want := "INDEX.HTM README.TXT IHE_XDM/ IHE_XDM/SUBSET01/ IHE_XDM/SUBSET01/DOC0001.XML IHE_XDM/SUBSET01/DOC0002.XML IHE_XDM/SUBSET01/METADATA.XML"
	if strings.Join(names, " ") != want {
		t.Fatalf("entries = %v", names)
	}
	readme, _ := fs.ReadFile(zr, "README.TXT")
	if !bytes.Contains(readme, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(readme, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("README.TXT must use CRLF only")
	}
	for _, c := range readme {
		if c >= 0x80 {
			t.Fatal("README.TXT is not ASCII")
		}
	}
	if !bytes.Contains(readme, []byte("Hopital Exemple (1750803447)")) {
		t.Errorf("README.TXT = %s", readme)
	}
	index, _ := fs.ReadFile(zr, "INDEX.HTM")
	if !bytes.Contains(index, []byte(`<a href="README.TXT">`)) || !bytes.Contains(index, []byte("Emetteur : Hôpital Exemple (1750803447)")) {
		t.Errorf("INDEX.HTM = %s", index)
	}
}

// TestGolden keeps the bytes of METADATA.XML, README.TXT and INDEX.HTM for the LDL-SES sample.
func TestGolden(t *testing.T) {
	z := pack(t, sampleCDA(t, cda.KindLDLSES, nil))
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	for _, name := range []string{"IHE_XDM/SUBSET01/METADATA.XML", "README.TXT", "INDEX.HTM"} {
		got, err := fs.ReadFile(zr, name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", strings.ReplaceAll(name, "/", "_")+".golden")
		if *update {
			os.WriteFile(path, got, 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (go test -update after review): %v", name, path, err)
		}
	}
}

func TestPackRefuses(t *testing.T) {
	ldl := sampleCDA(t, cda.KindLDLSES, nil)
	key, _ := mssante.NIRKey("1850578006084")
	otherINS := "1850578006084" + key
	other := sampleCDA(t, cda.KindN1, func(in *cda.Input) {
		in.ID.Extension = "X"
		in.Patient.INS.Value = otherINS
	})
	tests := []struct {
		name string
		docs [][]byte
		want string
	}{
		{"none", nil, "want 1 to"},
		{"not a CDA", [][]byte{[]byte("hello")}, "not a well-formed"},
		{"invalid CDA", [][]byte{bytes.Replace(ldl, []byte(`<realmCode code="FR"></realmCode>`), nil, 1)}, "HDR-REALM"},
		{"two patients", [][]byte{ldl, other}, "another patient"},
		{"same id twice", [][]byte{ldl, ldl}, "repeats the id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pack(&bytes.Buffer{}, tt.docs, &PackOptions{Now: clock})
			if !errors.Is(err, ErrPack) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// rezip rewrites a package through edit, which may change names, bytes or add entries.
func rezip(t testing.TB, z []byte, edit func(name string, data []byte) (string, []byte)) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, _ := f.Open()
		var data bytes.Buffer
		data.ReadFrom(rc)
		rc.Close()
		name, b := edit(f.Name, data.Bytes())
		if name == "" {
			continue
		}
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		w.Write(b)
	}
	zw.Close()
	return buf.Bytes()
}

func addEntry(t testing.TB, z []byte, hdr *zip.FileHeader, data []byte) []byte {
	t.Helper()
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	zw.Close()
	return buf.Bytes()
}

func TestReadRefuses(t *testing.T) {
	good := pack(t, sampleCDA(t, cda.KindLDLSES, nil))
	meta := func(old, new string) []byte {
		return rezip(t, good, func(n string, b []byte) (string, []byte) {
			if strings.HasSuffix(n, "METADATA.XML") {
				return n, bytes.Replace(b, []byte(old), []byte(new), 1)
			}
			return n, b
		})
	}
	symlink := &zip.FileHeader{Name: "IHE_XDM/SUBSET01/LINK.XML"}
	symlink.SetMode(fs.ModeSymlink | 0o777)
	tests := []struct {
		name string
		zip  []byte
		opts *ReadOptions
		want error
	}{
		{"not a zip", []byte("hello world, this is not a zip archive"), nil, ErrFormat},
		{"empty", nil, nil, ErrFormat},
		{"dotdot", addEntry(t, good, &zip.FileHeader{Name: "../evil.txt"}, []byte("x")), nil, ErrUnsafe},
		{"dotdot inside", addEntry(t, good, &zip.FileHeader{Name: "IHE_XDM/../../evil"}, []byte("x")), nil, ErrUnsafe},
		{"absolute", addEntry(t, good, &zip.FileHeader{Name: "/etc/passwd"}, []byte("x")), nil, ErrUnsafe},
		{"backslash absolute", addEntry(t, good, &zip.FileHeader{Name: `\windows\evil`}, []byte("x")), nil, ErrUnsafe},
		{"drive", addEntry(t, good, &zip.FileHeader{Name: `C:\evil`}, []byte("x")), nil, ErrUnsafe},
		{"symlink", addEntry(t, good, symlink, []byte("/etc/passwd")), nil, ErrUnsafe},
		{"duplicate", addEntry(t, good, &zip.FileHeader{Name: "readme.txt"}, []byte("x")), nil, ErrUnsafe},
		{"duplicate backslash", addEntry(t, good, &zip.FileHeader{Name: `IHE_XDM\SUBSET01\DOC0001.XML`}, []byte("x")), nil, ErrUnsafe},
		{"hash mismatch", rezip(t, good, func(n string, b []byte) (string, []byte) {
			if strings.HasSuffix(n, "DOC0001.XML") {
				return n, bytes.Replace(b, []byte("Hôpital"), []byte("Hopital"), 1)
			}
			return n, b
		}), nil, ErrIntegrity},
		{"size mismatch", func() []byte {
			pkg, _ := read(good, nil)
			e := pkg.Subsets[0].Documents[0].Entry
			return meta(fmt.Sprintf("<Value>%d</Value>", e.Size), fmt.Sprintf("<Value>%d</Value>", e.Size+1))
		}(), nil, ErrIntegrity},
		{"uri outside", meta("<Value>DOC0001.XML</Value>", "<Value>../README.TXT</Value>"), nil, ErrUnsafe},
		{"uri subdir", meta("<Value>DOC0001.XML</Value>", "<Value>X/DOC0001.XML</Value>"), nil, ErrUnsafe},
		{"uri missing", meta("<Value>DOC0001.XML</Value>", "<Value>DOC0009.XML</Value>"), nil, ErrIntegrity},
		{"uri twice", func() []byte {
			two := pack(t, twoDocs(t)...)
			return rezip(t, two, func(n string, b []byte) (string, []byte) {
				if strings.HasSuffix(n, "METADATA.XML") {
					return n, bytes.Replace(b, []byte("<Value>DOC0002.XML</Value>"), []byte("<Value>doc0001.xml</Value>"), 1)
				}
				return n, b
			})
		}(), nil, ErrMetadata},
		{"no metadata", rezip(t, good, func(n string, b []byte) (string, []byte) {
			if strings.HasSuffix(n, "METADATA.XML") {
				return "", nil
			}
			return n, b
		}), nil, ErrMetadata},
		{"bad metadata", meta("<SubmitObjectsRequest", "<Broken"), nil, ErrMetadata},
		{"patient mismatch", meta("279035121518989^^^", "185057800608400^^^"), nil, ErrMetadata},
		{"too many entries", good, &ReadOptions{MaxEntries: 3}, ErrLimit},
		{"archive too large", good, &ReadOptions{MaxArchiveSize: 100}, ErrLimit},
		{"entry too large", good, &ReadOptions{MaxEntrySize: 1000}, ErrLimit},
		{"total too large", good, &ReadOptions{MaxTotalSize: 10000}, ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := read(tt.zip, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "279035121518") {
				t.Error("error leaks the INS")
			}
		})
	}
}

// TestReadBomb refuses a 42.zip-style archive: a small entry that inflates enormously, named
// as the document, and many entries, with bounded memory.
func TestReadBomb(t *testing.T) {
	good := pack(t, sampleCDA(t, cda.KindLDLSES, nil))
	// The document replaced by 8 MiB of zeros (about 8 KiB compressed: ratio 1000). Its header lies about
	// its size (written with CreateRaw would be needed to lie; here it is honest and refused on
	// the declared size, then again with a lying header below).
	var bomb bytes.Buffer
	zw := zip.NewWriter(&bomb)
	zr, _ := zip.NewReader(bytes.NewReader(good), int64(len(good)))
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "DOC0001.XML") {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Deflate})
			zero := make([]byte, 1<<20)
			for i := 0; i < 8; i++ {
				w.Write(zero)
			}
			continue
		}
		zw.Copy(f)
	}
	zw.Close()
	if _, err := read(bomb.Bytes(), nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("bomb: err = %v", err)
	}
	// Same bomb with a header claiming a small uncompressed size: caught while inflating.
	lying := bytes.Clone(bomb.Bytes())
	zr2, _ := zip.NewReader(bytes.NewReader(lying), int64(len(lying)))
	var lie bytes.Buffer
	zw = zip.NewWriter(&lie)
	for _, f := range zr2.File {
		if strings.HasSuffix(f.Name, "DOC0001.XML") {
			h := f.FileHeader
			h.UncompressedSize64 = 5000
			raw, _ := f.OpenRaw()
			w, _ := zw.CreateRaw(&h)
			var b bytes.Buffer
			b.ReadFrom(raw)
			w.Write(b.Bytes())
			continue
		}
		zw.Copy(f)
	}
	zw.Close()
	if _, err := read(lie.Bytes(), nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("lying bomb: err = %v", err)
	}
	// 100,000 entries: refused from the end-of-central-directory count, before loading them.
	var many bytes.Buffer
	zw = zip.NewWriter(&many)
	for i := 0; i < 100000; i++ {
		zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("F%d", i), Method: zip.Store})
	}
	zw.Close()
	if _, err := read(many.Bytes(), nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("100000 entries: err = %v", err)
	}
}

// TestReadLyingSizeMemory reads an entry whose header declares 5,000 bytes but that inflates
// to 64 MiB of zeros (a 64 KiB archive): refused after allocating about the declared size,
// not the entry or ratio limit.
func TestReadLyingSizeMemory(t *testing.T) {
	good := pack(t, sampleCDA(t, cda.KindLDLSES, nil))
	var deflated bytes.Buffer
	fw, _ := flate.NewWriter(&deflated, flate.BestCompression)
	zero := make([]byte, 1<<20)
	for range 64 {
		fw.Write(zero)
	}
	fw.Close()
	var lie bytes.Buffer
	zw := zip.NewWriter(&lie)
	zr, _ := zip.NewReader(bytes.NewReader(good), int64(len(good)))
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, "DOC0001.XML") {
			zw.Copy(f)
			continue
		}
		h := f.FileHeader
		h.UncompressedSize64 = 5000
		h.CompressedSize64 = uint64(deflated.Len())
		w, _ := zw.CreateRaw(&h)
		w.Write(deflated.Bytes())
	}
	zw.Close()
	opts := &ReadOptions{MaxEntrySize: 256 << 20, MaxTotalSize: 256 << 20, MaxRatio: 10000}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := read(lie.Bytes(), opts)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "declared 5000") {
		t.Fatalf("err = %v, want ErrLimit naming the declared size", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("reading a %d-byte archive allocated %d bytes, want under 4 MiB", lie.Len(), alloc)
	}
}

// TestANSPackages opens every reference package of ansforge/interop-exemples-xdm (not vendored:
// its licence was removed). Set MSSANTE_XDM_EXAMPLES to a checkout of that repository.
func TestANSPackages(t *testing.T) {
	dir := os.Getenv("MSSANTE_XDM_EXAMPLES")
	if dir == "" {
		t.Skip("MSSANTE_XDM_EXAMPLES not set (checkout of ansforge/interop-exemples-xdm)")
	}
	zips, _ := filepath.Glob(filepath.Join(dir, "*", "IHE_XDM.ZIP"))
	if len(zips) == 0 {
		t.Fatal("no */IHE_XDM.ZIP under MSSANTE_XDM_EXAMPLES")
	}
	warnings := map[string]int{}
	for _, path := range zips {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := read(data, nil)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(filepath.Dir(path)), err)
			continue
		}
		d := pkg.Subsets[0].Documents[0]
		if ins, ok := d.CDA.INS(); !ok || !ins.Valid() && ins.Value == "" {
			t.Errorf("%s: no INS", path)
		}
		for _, w := range pkg.Warnings {
			warnings[w]++
		}
	}
	t.Logf("%d ANS packages opened", len(zips))
	for w, n := range warnings {
		t.Logf("%3d× %s", n, w)
	}
}

// TestMetadataSchema validates our METADATA.XML against the OASIS ebRS 3.0 schemas (lcm.xsd,
// rim.xsd, rs.xsd; not vendored) with xmllint. Set MSSANTE_EBRS_XSD to their folder, with a
// local xml.xsd in place of rim.xsd's remote import (xmllint runs with --nonet).
func TestMetadataSchema(t *testing.T) {
	dir := os.Getenv("MSSANTE_EBRS_XSD")
	if dir == "" {
		t.Skip("MSSANTE_EBRS_XSD not set (folder with the ebRS 3.0 lcm.xsd, rim.xsd, rs.xsd)")
	}
	xmllint := testenv.Require(t, "xmllint")
	z := pack(t, twoDocs(t)...)
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	meta, _ := fs.ReadFile(zr, "IHE_XDM/SUBSET01/METADATA.XML")
	path := filepath.Join(t.TempDir(), "METADATA.XML")
	os.WriteFile(path, meta, 0o644)
	out, err := exec.Command(xmllint, "--noout", "--nonet", "--schema", filepath.Join(dir, "lcm.xsd"), path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validates") {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
}

// TestReplacement packs version 2 of a letter: the CDA relatedDocument RPLC becomes an RPLC
// association to the entryUUID version 1 got from the same writer.
func TestReplacement(t *testing.T) {
	v1 := sampleCDA(t, cda.KindLDLSES, nil)
	v2 := sampleCDA(t, cda.KindLDLSES, func(in *cda.Input) {
		in.Replaces = &cda.OID{Root: in.ID.Root, Extension: in.ID.Extension}
		in.ID.Extension = "DOC-2026-0001-V2"
		in.Version = 2
	})
	p1, err := read(pack(t, v1), nil)
	if err != nil {
		t.Fatal(err)
	}
	z2 := pack(t, v2)
	p2, err := read(z2, nil)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := p1.Subsets[0].Documents[0].Entry, p2.Subsets[0].Documents[0].Entry
	if e2.Replaces == "" || e2.Replaces != e1.EntryUUID {
		t.Fatalf("Replaces = %q, want the entryUUID of version 1 %q", e2.Replaces, e1.EntryUUID)
	}
	zr, _ := zip.NewReader(bytes.NewReader(z2), int64(len(z2)))
	meta, _ := fs.ReadFile(zr, "IHE_XDM/SUBSET01/METADATA.XML")
	if !bytes.Contains(meta, []byte(`associationType="urn:ihe:iti:2007:AssociationType:RPLC" sourceObject="`+e2.EntryUUID+`" targetObject="`+e1.EntryUUID+`"`)) {
		t.Fatal("no RPLC association in METADATA.XML")
	}
}

// TestIndexXHTML validates INDEX.HTM as XHTML 1.0 Strict with xmllint and the W3C DTDs of
// Debian's w3c-sgml-lib (found through the XML catalog, no network). The ANS packages' INDEX.HTM
// fails this check (no head or body); ours must pass.
func TestIndexXHTML(t *testing.T) {
	xmllint := testenv.Require(t, "xmllint")
	const dtd = "/usr/share/xml/w3c-sgml-lib/schema/dtd/REC-xhtml1-20020801/xhtml1-strict.dtd"
	if _, err := os.Stat(dtd); err != nil {
		if testenv.PeersRequired() {
			t.Fatalf("w3c-sgml-lib is required (MSSANTE_REQUIRE_PEERS=1): %v", err)
		}
		t.Skip("w3c-sgml-lib not installed (scripts/install-peers.sh installs it)")
	}
	z := pack(t, twoDocs(t)...)
	zr, _ := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	index, _ := fs.ReadFile(zr, "INDEX.HTM")
	path := filepath.Join(t.TempDir(), "INDEX.HTM")
	os.WriteFile(path, index, 0o644)
	if out, err := exec.Command(xmllint, "--noout", "--nonet", "--valid", path).CombinedOutput(); err != nil {
		t.Fatalf("INDEX.HTM is not valid XHTML 1.0 Strict: %v\n%s", err, out)
	}
	// The check can fail: a page without head and body, like the ANS one, is refused.
	bad := filepath.Join(t.TempDir(), "BAD.HTM")
	os.WriteFile(bad, bytes.Replace(index, []byte("<head><title>IHE XDM</title></head>"), nil, 1), 0o644)
	if err := exec.Command(xmllint, "--noout", "--nonet", "--valid", bad).Run(); err == nil {
		t.Fatal("xmllint accepted a page without head")
	}
}
