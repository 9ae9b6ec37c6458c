package cda

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mustBuild(t testing.TB, in *Input) *Document {
	t.Helper()
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustMarshal(t testing.TB, d *Document) []byte {
	t.Helper()
	b, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The golden files are the documents the ANS checks were run on (see the package comment);
// any change to the output must be deliberate (go test -update) and re-checked.
func TestGolden(t *testing.T) {
	for _, k := range []Kind{KindLDLSES, KindN1} {
		t.Run(string(k), func(t *testing.T) {
			d := mustBuild(t, Sample(k))
			if r := Validate(d); len(r.Findings) != 0 {
				t.Fatalf("sample does not validate: %v", r.Findings)
			}
			got := mustMarshal(t, d)
			if again := mustMarshal(t, mustBuild(t, Sample(k))); !bytes.Equal(got, again) {
				t.Fatal("marshal is not deterministic")
			}
			path := filepath.Join("testdata", string(k)+".golden.xml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("output differs from %s (run go test -update after checking it with the ANS tools)", path)
			}
			if !bytes.HasPrefix(got, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
				t.Error("missing XML declaration")
			}
			if bytes.Contains(got, []byte("schemaLocation")) {
				t.Error("schemaLocation must not be written")
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, k := range []Kind{KindLDLSES, KindN1} {
		d := mustBuild(t, Sample(k))
		b := mustMarshal(t, d)
		p, err := ParseBytes(b, &ParseOptions{Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if b2 := mustMarshal(t, p); !bytes.Equal(b, b2) {
			t.Fatalf("%s: parse+marshal changes the document", k)
		}
		pat := p.Patient()
		want := Sample(k).Patient
		if pat.INS != want.INS || pat.BirthName != want.BirthName || pat.FirstGivenName != want.FirstGivenName ||
			!pat.BirthDate.Equal(want.BirthDate) || pat.Sex != want.Sex || pat.BirthPlace != want.BirthPlace ||
			strings.Join(pat.GivenNames, " ") != strings.Join(want.GivenNames, " ") {
			t.Fatalf("%s: patient = %+v", k, pat)
		}
		if !pat.Qualified() {
			t.Errorf("%s: patient should be qualified", k)
		}
	}
}

func TestN1Content(t *testing.T) {
	in := Sample(KindN1)
	// Large enough to take the fast path of the parser.
	in.PDF = append(samplepdf.Page("x"), bytes.Repeat([]byte("% padding line\n"), 20000)...)
	b := mustMarshal(t, mustBuild(t, in))
	d, err := ParseBytes(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	mt, data, err := d.Content()
	if err != nil || mt != MediaTypePDF || !bytes.Equal(data, in.PDF) {
		t.Fatalf("content: %v %q %d bytes", err, mt, len(data))
	}
	// The same document with the base64 split by entities and line breaks takes the slow path.
	i := bytes.Index(b, []byte(`representation="B64">`)) + len(`representation="B64">`)
	slow := append(append(append([]byte{}, b[:i]...), []byte("&#x4a;\n")...), b[i+1:]...)
	d2, err := ParseBytes(slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, data2, err := d2.Content(); err != nil || !bytes.Equal(data2, in.PDF) {
		t.Fatalf("slow path content: %v", err)
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name   string
		kind   Kind
		mutate func(*Input)
		want   []string
	}{
		{"no kind", KindLDLSES, func(in *Input) { in.Kind = "" }, []string{"kind: must be"}},
		{"no id", KindLDLSES, func(in *Input) { in.ID = OID{} }, []string{"id.root: required"}},
		{"bad set id", KindLDLSES, func(in *Input) { in.SetID.Root = "abc" }, []string{"setId.root: not an OID"}},
		{"no title no time", KindLDLSES, func(in *Input) { in.Title = " "; in.Time = time.Time{} }, []string{"title: required", "time: required"}},
		{"confidentiality", KindLDLSES, func(in *Input) { in.Confidentiality = "MASQUE_PS" }, []string{"confidentiality: must be N, R or V"}},
		{"bad INS key", KindLDLSES, func(in *Input) { in.Patient.INS.Value = "279035121518988" }, []string{"patient.INS: invalid (bad matricule or key)"}},
		{"INS OID", KindLDLSES, func(in *Input) { in.Patient.INS.OID = "1.2.3" }, []string{"patient.INS: invalid (unknown OID)"}},
		{"traits", KindLDLSES, func(in *Input) {
			in.Patient.BirthName, in.Patient.BirthPlace, in.Patient.BirthDate = "", "", time.Time{}
		}, []string{"patient.BirthName: required", "patient.BirthDate: required", "patient.BirthPlace: required"}},
		{"author RPPS", KindLDLSES, func(in *Input) { in.Author.ID = "801234567890" }, []string{"author.id: not an idNat_PS"}},
		{"custodian FINESS", KindLDLSES, func(in *Input) { in.Custodian.ID = "8750803447" }, []string{"custodian.id: not an idNat_Struct"}},
		{"practice setting", KindLDLSES, func(in *Input) {
			o := *in.Author.Organization
			o.PracticeSetting = nil
			in.Author.Organization = &o
		}, []string{"serviceEvent.performer.organization.practiceSetting: required"}},
		{"facility", KindLDLSES, func(in *Input) { in.Encounter.FacilityType = Code{} }, []string{"encounter.facilityType.code: required"}},
		{"ldl body", KindLDLSES, func(in *Input) { in.LDLSES = nil }, []string{"ldlSes: required"}},
		{"ldl sections", KindLDLSES, func(in *Input) {
			in.LDLSES.Reason, in.LDLSES.Status, in.LDLSES.Medications = "", "x", nil
		}, []string{"ldlSes.status: must be", "ldlSes.reason: required", "ldlSes.medications: at least one"}},
		{"ldl with pdf", KindLDLSES, func(in *Input) { in.PDF = []byte("%PDF-1.4") }, []string{"pdf: not allowed"}},
		{"ldl service time", KindLDLSES, func(in *Input) { in.ServiceEvent.Start = time.Time{} }, []string{"serviceEvent.start: required"}},
		{"n1 no pdf", KindN1, func(in *Input) { in.PDF = nil }, []string{"pdf: required"}},
		{"n1 not a pdf", KindN1, func(in *Input) { in.PDF = []byte("hello") }, []string{"pdf: does not start with %PDF-"}},
		{"n1 no code", KindN1, func(in *Input) { in.Code = nil }, []string{"code: required"}},
		{"n1 media type", KindN1, func(in *Input) { in.MediaType = "image/jpeg" }, []string{"mediaType: must be"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Sample(tt.kind)
			tt.mutate(in)
			_, err := Build(in)
			var be *BuildError
			if !errors.As(err, &be) || !errors.Is(err, ErrIncomplete) {
				t.Fatalf("err = %v, want *BuildError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			// Errors never carry patient data.
			for _, secret := range []string{"279035121518", "PAT-TROIS", "DOMINIQUE"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks %q", secret)
				}
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	tests := []struct {
		kind   Kind
		rule   string
		mutate func(*Document)
	}{
		{KindLDLSES, "HDR-REALM", func(d *Document) { d.RealmCode = nil }},
		{KindLDLSES, "HDR-TYPEID", func(d *Document) { d.TypeID.Extension = "X" }},
		{KindLDLSES, "HDR-TEMPLATES", func(d *Document) { d.TemplateIDs = d.TemplateIDs[1:] }},
		{KindN1, "N1-TEMPLATES", func(d *Document) { d.TemplateIDs = append(d.TemplateIDs, II{Root: TemplateLDLSES}) }},
		{KindLDLSES, "HDR-ID", func(d *Document) { d.ID = &II{NullFlavor: "NI"} }},
		{KindLDLSES, "HDR-CODE", func(d *Document) { d.Code = nil }},
		{KindLDLSES, "HDR-TITLE", func(d *Document) { d.Title = "" }},
		{KindLDLSES, "HDR-EFFECTIVETIME", func(d *Document) { d.EffectiveTime.Value = "2026-03-12" }},
		{KindLDLSES, "HDR-CONFIDENTIALITY", func(d *Document) { d.ConfidentialityCode.Code = "MASQUE_PS" }},
		{KindLDLSES, "HDR-LANGUAGE", func(d *Document) { d.LanguageCode.Code = "fr" }},
		{KindLDLSES, "HDR-VERSION", func(d *Document) { d.VersionNumber.Value = "0" }},
		{KindLDLSES, "HDR-RECORDTARGET", func(d *Document) { d.RecordTargets = append(d.RecordTargets, d.RecordTargets[0]) }},
		{KindLDLSES, "HDR-INS", func(d *Document) { d.RecordTargets[0].PatientRole.IDs[0].Extension = "279035121518988" }},
		{KindLDLSES, "HDR-INS-TRAITS", func(d *Document) { d.RecordTargets[0].PatientRole.Patient.Birthplace = nil }},
		{KindLDLSES, "HDR-AUTHOR", func(d *Document) { d.Authors = nil }},
		{KindLDLSES, "HDR-CUSTODIAN", func(d *Document) { d.Custodian = nil }},
		{KindLDLSES, "HDR-LEGALAUTH", func(d *Document) { d.LegalAuthenticator.SignatureCode.Code = "X" }},
		{KindLDLSES, "HDR-SERVICEEVENT", func(d *Document) { d.DocumentationOf[0].ServiceEvent.Performers = nil }},
		{KindLDLSES, "HDR-RPLC", func(d *Document) {
			d.RelatedDocuments = []RelatedDocument{{TypeCode: "RPLC"}}
		}},
		{KindLDLSES, "HDR-ENCOUNTER", func(d *Document) { d.ComponentOf = nil }},
		{KindLDLSES, "BODY", func(d *Document) { d.Component.NonXMLBody = &NonXMLBody{} }},
		{KindN1, "N1-BODY", func(d *Document) { d.Component.NonXMLBody.Text.Data = "not base64!" }},
		{KindN1, "N1-BODY", func(d *Document) { d.Component.NonXMLBody.Text.MediaType = "image/png" }},
		{KindLDLSES, "LDL-CODE", func(d *Document) { d.Code.Code = "34133-9" }},
		{KindLDLSES, "LDL-BIRTHTIME", func(d *Document) { d.RecordTargets[0].PatientRole.Patient.BirthTime = nil }},
		{KindLDLSES, "LDL-SECTIONS", func(d *Document) {
			d.Component.StructuredBody.Components = d.Component.StructuredBody.Components[1:]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			d := mustBuild(t, Sample(tt.kind))
			tt.mutate(d)
			r := Validate(d)
			found := false
			for _, f := range r.Errors() {
				if f.Rule == tt.rule {
					found = true
				}
			}
			if !found {
				t.Fatalf("rule %s did not fire: %v", tt.rule, r.Findings)
			}
			if len(r.Checked) != len(Rules()) {
				t.Fatalf("checked %d rules, want %d", len(r.Checked), len(Rules()))
			}
			// A strict parse of the broken document fails with the same rule.
			b := mustMarshal(t, d)
			_, err := ParseBytes(b, &ParseOptions{Strict: true})
			var ve *ValidationError
			if tt.rule != "BODY" && (!errors.As(err, &ve) || !strings.Contains(err.Error(), tt.rule)) {
				t.Fatalf("strict parse: %v", err)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	good := mustMarshal(t, mustBuild(t, Sample(KindLDLSES)))
	tests := []struct {
		name string
		data string
		opts *ParseOptions
		want error
	}{
		{"empty", "", nil, ErrSyntax},
		{"not xml", "hello", nil, ErrSyntax},
		{"wrong root", `<foo xmlns="urn:hl7-org:v3"/>`, nil, ErrSyntax},
		{"no namespace", `<ClinicalDocument/>`, nil, ErrSyntax},
		{"unclosed", `<ClinicalDocument xmlns="urn:hl7-org:v3"><title>`, nil, ErrSyntax},
		{"second root", `<ClinicalDocument xmlns="urn:hl7-org:v3"/><ClinicalDocument xmlns="urn:hl7-org:v3"/>`, nil, ErrSyntax},
		{"trailing text", `<ClinicalDocument xmlns="urn:hl7-org:v3"/>junk`, nil, ErrSyntax},
		{"latin1", `<?xml version="1.0" encoding="ISO-8859-1"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>`, nil, ErrSyntax},
		{"entity bomb", `<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&b;</title></ClinicalDocument>`, nil, ErrSyntax},
		{"too large", string(good), &ParseOptions{MaxSize: 100}, ErrTooLarge},
		{"strict empty doc", `<ClinicalDocument xmlns="urn:hl7-org:v3"/>`, &ParseOptions{Strict: true}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.data), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// Tolerant parse of a minimal document succeeds and the validator names what is missing.
	d, err := Parse(strings.NewReader(`<ClinicalDocument xmlns="urn:hl7-org:v3"><unknown/></ClinicalDocument>`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if Validate(d).OK() {
		t.Fatal("empty document validates")
	}
}

func TestParseTS(t *testing.T) {
	for s, want := range map[string]time.Time{
		"20191203133000+0100": time.Date(2019, 12, 3, 12, 30, 0, 0, time.UTC),
		"20210104":            time.Date(2021, 1, 4, 0, 0, 0, 0, time.UTC),
		"202101040735+0100":   time.Date(2021, 1, 4, 6, 35, 0, 0, time.UTC),
	} {
		got, err := ParseTS(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTS(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "2021", "20210", "2021-01-04", "20210104+01"} {
		if _, err := ParseTS(s); err == nil && s != "2021" {
			t.Errorf("ParseTS(%q) accepted", s)
		}
	}
}

// TestANSExamples parses and validates the two real ANS samples of ansforge/TestContenuCDA-3-0
// (not vendored: no licence). Set MSSANTE_CDA_EXAMPLES to its ExemplesCDA folder.
func TestANSExamples(t *testing.T) {
	dir := os.Getenv("MSSANTE_CDA_EXAMPLES")
	if dir == "" {
		t.Skip("MSSANTE_CDA_EXAMPLES not set (folder ExemplesCDA of ansforge/TestContenuCDA-3-0)")
	}
	for _, name := range []string{"LDL-SES_2022.01.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d, err := Parse(f, &ParseOptions{Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range Validate(d).Findings {
				t.Logf("%s", f)
			}
			ins, ok := d.INS()
			if !ok || ins.OID != mssante.OIDINSNIRTest {
				t.Fatalf("INS = %v %v", ins, ok)
			}
			if d.IsN1() {
				if _, pdf, err := d.Content(); err != nil || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
					t.Fatalf("content: %v", err)
				}
			}
		})
	}
}

// TestANSChecks runs testdata/anscheck.sh (CDA_extended.xsd with xmllint; the IHE, CI-SIS,
// StrucMin and LDL-SES schematrons with Saxon-HE) on the golden files. Set
// MSSANTE_TESTCONTENUCDA to a checkout of ansforge/TestContenuCDA-3-0 (not vendored).
func TestANSChecks(t *testing.T) {
	dir := os.Getenv("MSSANTE_TESTCONTENUCDA")
	if dir == "" {
		t.Skip("MSSANTE_TESTCONTENUCDA not set (checkout of ansforge/TestContenuCDA-3-0)")
	}
	testenv.Require(t, "xmllint")
	testenv.Require(t, "java")
	cmd := exec.Command("sh", "testdata/anscheck.sh", dir, "testdata/ldl-ses.golden.xml", "testdata/n1.golden.xml")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("ANS checks failed: %v", err)
	}
}

// A document is announced in a mail with the date of its act (the serviceEvent's start), or
// its own date when it has no serviceEvent time, and the patient's INS.
func TestMailDocument(t *testing.T) {
	in := Sample(KindN1)
	doc, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	pdf := []byte("%PDF-copy")
	md := doc.MailDocument(pdf)
	if md.Code != CodeLDLSES || md.DisplayName != DisplayLDLSES || !md.Date.Equal(in.ServiceEvent.Start) ||
		md.INS != in.Patient.INS || string(md.PDF) != string(pdf) {
		t.Fatalf("MailDocument = %+v", md)
	}
	doc.DocumentationOf[0].ServiceEvent.EffectiveTime = nil
	if md := doc.MailDocument(nil); !md.Date.Equal(in.Time) {
		t.Fatalf("without a serviceEvent time: date %v, want %v", md.Date, in.Time)
	}
}
