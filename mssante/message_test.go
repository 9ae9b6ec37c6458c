package mssante

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedOptions makes composition deterministic: fixed clock, seeded randomness.
func fixedOptions() *ComposeOptions {
	return &ComposeOptions{
		Now:  func() time.Time { return time.Date(2026, 11, 28, 14, 30, 0, 0, time.FixedZone("CET", 3600)) },
		Rand: rand.New(rand.NewSource(42)),
	}
}

func samplePatient() *Patient {
	return &Patient{
		INS: INS{Value: "279035121518989", OID: OIDINSNIRTest},
		Traits: Traits{BirthName: "Pat-Trois", FirstGivenName: "Dominique", GivenNames: []string{"Dominique", "Élodie"},
			BirthDate: time.Date(1979, 3, 1, 0, 0, 0, 0, time.UTC), Sex: SexFemale, BirthPlace: "51215"},
		FileNumber: "D0042",
	}
}

func sampleMessage() *Message {
	return &Message{
		From:       MustAddress("Service de cardiologie", "cardio-app@hopital.test.mssante.fr"),
		To:         []Address{MustAddress("Dr Hélène Lefèvre", "helene.lefevre@medecin.test.mssante.fr")},
		Cc:         []Address{MustAddress("", "secretariat@cabinet.test.mssante.fr")},
		ReplyTo:    []Address{MustAddress("Cardiologie", "cardio@hopital.test.mssante.fr")},
		InReplyTo:  []string{"prev-1@medecin.test.mssante.fr"},
		References: []string{"root-0@hopital.test.mssante.fr", "prev-1@medecin.test.mssante.fr"},
		Text:       "Bonjour,\nVeuillez trouver ci-joint la lettre de liaison de votre patiente.\nCordialement — l'équipe.\n",
		HTML:       "<p>Bonjour,</p><p>Veuillez trouver ci-joint la lettre de liaison.</p>",
		Patient:    samplePatient(),
		Documents: []Document{{
			Code: "11490-0", DisplayName: "Lettre de liaison à la sortie d'un établissement de soins",
			Date: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), INS: INS{Value: "279035121518989", OID: OIDINSNIRTest},
			PDF: []byte("%PDF-1.4\n% fake pdf bytes for the test\n%%EOF\n"),
		}},
		XDM:         []byte("PK\x03\x04 opaque zip bytes"),
		NIL:         "DEV935997",
		WantMDN:     true,
		Attachments: []Attachment{{Filename: "notes.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("ligne 1\r\nligne 2\r\n")}},
	}
}

func compose(t *testing.T, m *Message, opts *ComposeOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	n, err := m.WriteTo(&b, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, b.Len())
	}
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func TestComposeGolden(t *testing.T) {
	golden(t, "compose-documents.golden.eml", compose(t, sampleMessage(), fixedOptions()))
	plain := &Message{From: MustAddress("", "app@hopital.test.mssante.fr"), To: []Address{MustAddress("", "dr@medecin.test.mssante.fr")},
		Subject: "Rendez-vous", Text: "Texte simple, accentué.\n", NIL: "DEV935997"}
	golden(t, "compose-plain.golden.eml", compose(t, plain, fixedOptions()))
}

func TestComposeHeaders(t *testing.T) {
	raw := unfold(string(compose(t, sampleMessage(), fixedOptions())))
	head := raw[:strings.Index(raw, "\r\n\r\n")]
	for _, want := range []string{
		"\r\nX-MSS-CODECDA: 11490-0\r\n", "\r\nX-MSS-INS: O\r\n", "\r\nX-MSS-NIL: DEV935997\r\n",
		"Disposition-Notification-To: \"Service de cardiologie\" <cardio-app@hopital.test.mssante.fr>",
		"Subject: XDM/1.0/DDM+Lettre de liaison a la sortie d'un etabl PAT-TROIS Dominique 01/03/1979",
		"In-Reply-To: <prev-1@medecin.test.mssante.fr>",
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed",
	} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	if strings.Contains(head, "X-MSS-MES") {
		t.Error("X-MSS-MES without EndOfMessaging")
	}
	for _, want := range []string{`filename=IHE_XDM.ZIP`, `filename="20261127_Lettre de liaison a la sortie d'un etabl_PAT-TROIS_Dominique_D0042.pdf"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("body lacks %q", want)
		}
	}
	if strings.Contains(raw, "\n") && strings.Count(raw, "\n") != strings.Count(raw, "\r\n") {
		t.Error("bare LF in output")
	}

	// No documents: neither X-MSS-CODECDA nor X-MSS-INS; X-MSS-MES on request.
	m := sampleMessage()
	m.Documents, m.XDM, m.Patient, m.Subject, m.EndOfMessaging = nil, nil, nil, "Bonjour", true
	raw = string(compose(t, m, fixedOptions()))
	head = raw[:strings.Index(raw, "\r\n\r\n")]
	if strings.Contains(head, "X-MSS-CODECDA") || strings.Contains(head, "X-MSS-INS") || !strings.Contains(head, "X-MSS-MES: FIN") {
		t.Errorf("headers without documents:\n%s", head)
	}

	// Addresses given by hand are normalised.
	m = sampleMessage()
	m.To = []Address{{Addr: " Dr.Martin@Medecin.Test.MSSante.fr"}}
	if raw := string(compose(t, m, fixedOptions())); !strings.Contains(raw, "To: <dr.martin@medecin.test.mssante.fr>\r\n") {
		t.Error("To not normalised")
	}

	// Not qualified: X-MSS-INS: N.
	m = sampleMessage()
	m.Patient.Sex = SexUnknown
	if raw := string(compose(t, m, fixedOptions())); !strings.Contains(raw, "X-MSS-INS: N\r\n") {
		t.Error("unqualified INS not N")
	}
}

// unfold joins folded header lines.
func unfold(s string) string { return strings.ReplaceAll(s, "\r\n ", " ") }

func TestSubjectAndPDFName(t *testing.T) {
	p := samplePatient()
	docs := []Document{{DisplayName: "CR d'examens biologiques"}, {DisplayName: "Lettre"}}
	s, err := DocumentSubject(p, docs[:1])
	if err != nil || s != "XDM/1.0/DDM+CR d'examens biologiques PAT-TROIS Dominique 01/03/1979" {
		t.Errorf("one document: %q %v", s, err)
	}
	s, _ = DocumentSubject(p, docs)
	if s != "XDM/1.0/DDM+2 documents PAT-TROIS Dominique 01/03/1979" {
		t.Errorf("two documents: %q", s)
	}
	p2 := *p
	p2.BirthDate = time.Time{}
	p2.BirthName, p2.FirstGivenName = "Lefèvre-Œuvray", "Hélène"
	s, _ = DocumentSubject(&p2, docs[:1])
	if s != "XDM/1.0/DDM+CR d'examens biologiques LEFEVRE-OEUVRAY Helene" {
		t.Errorf("no birth date, accents: %q", s)
	}
	long := Document{DisplayName: strings.Repeat("é", 50), Date: time.Date(2015, 8, 2, 0, 0, 0, 0, time.UTC)}
	s, _ = DocumentSubject(p, []Document{long})
	if !strings.HasPrefix(s, SubjectPrefix+strings.Repeat("e", 40)+" ") {
		t.Errorf("label not cut at 40: %q", s)
	}
	p3 := *p
	p3.FileNumber = ""
	p3.BirthName, p3.FirstGivenName = "Vial", "Paul"
	n, err := PDFName(Document{DisplayName: "Lettre de liaison à la sortie d'un établissement de soins", Date: time.Date(2015, 8, 2, 0, 0, 0, 0, time.UTC)}, &p3)
	if err != nil || n != "20150802_Lettre de liaison a la sortie d'un etabl_VIAL_Paul.pdf" {
		t.Errorf("PDF name (spec example): %q %v", n, err)
	}
	n, _ = PDFName(Document{DisplayName: "A/B: c", Date: time.Date(2015, 8, 2, 0, 0, 0, 0, time.UTC)}, p)
	if n != "20150802_A-B- c_PAT-TROIS_Dominique_D0042.pdf" {
		t.Errorf("unsafe characters: %q", n)
	}
	if _, err := DocumentSubject(&Patient{}, docs); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("no names: %v", err)
	}
	if _, err := PDFName(Document{DisplayName: "x"}, p); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("no date: %v", err)
	}
}

func TestComposeRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Message)
		err    error
	}{
		{"no From", func(m *Message) { m.From = Address{} }, ErrInvalidMessage},
		{"no To", func(m *Message) { m.To = nil }, ErrInvalidMessage},
		{"no NIL", func(m *Message) { m.NIL = "" }, ErrInvalidMessage},
		{"NIL with space", func(m *Message) { m.NIL = "DEV 1" }, ErrInvalidMessage},
		{"CRLF in NIL", func(m *Message) { m.NIL = "DEV1\r\nBcc: x@y.fr" }, ErrHeaderInjection},
		{"CRLF in subject", func(m *Message) { m.Documents, m.XDM, m.Subject = nil, nil, "x\r\nBcc: evil@x.fr" }, ErrHeaderInjection},
		{"LF in display name", func(m *Message) { m.To[0].Name = "Dr\nBcc: evil@x.fr" }, ErrHeaderInjection},
		{"CR in address", func(m *Message) { m.Cc[0].Addr = "a@b.fr\rBcc: c@d.fr" }, ErrHeaderInjection},
		{"LF in PDF name", func(m *Message) { m.Documents[0].PDFName = "a\n.pdf" }, ErrHeaderInjection},
		{"LF in attachment name", func(m *Message) { m.Attachments[0].Filename = "a\nb" }, ErrHeaderInjection},
		{"LF in CDA code", func(m *Message) { m.Documents[0].Code = "1\n2" }, ErrInvalidMessage},
		{"LF in patient name", func(m *Message) { m.Patient.BirthName = "X\r\nBcc: y@z.fr" }, ErrHeaderInjection},
		{"bad In-Reply-To", func(m *Message) { m.InReplyTo = []string{"a>\r\nX: y@z"} }, ErrInvalidMessage},
		{"bad Message-ID", func(m *Message) { m.MessageID = "no-at-sign" }, ErrInvalidMessage},
		{"Message-ID on another domain", func(m *Message) { m.MessageID = "x1@other.test.mssante.fr" }, ErrInvalidMessage},
		{"two patients", func(m *Message) { m.Documents[0].INS = INS{Value: "146026322000196", OID: OIDINSNIR} }, ErrOnePatient},
		{"documents without XDM", func(m *Message) { m.XDM = nil }, ErrInvalidMessage},
		{"XDM without documents", func(m *Message) { m.Documents = nil }, ErrInvalidMessage},
		{"documents without patient", func(m *Message) { m.Patient = nil }, ErrInvalidMessage},
		{"document without PDF", func(m *Message) { m.Documents[0].PDF = nil }, ErrInvalidMessage},
		{"subject not the rule", func(m *Message) { m.Subject = "Lettre de liaison" }, ErrInvalidMessage},
		{"invalid UTF-8", func(m *Message) { m.Text = "\xff" }, ErrInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleMessage()
			tt.mutate(m)
			var b bytes.Buffer
			_, err := m.WriteTo(&b, fixedOptions())
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if b.Len() != 0 {
				t.Error("bytes written before the refusal")
			}
		})
	}
}

func TestComposeSizeLimit(t *testing.T) {
	m := sampleMessage()
	m.Attachments = append(m.Attachments, Attachment{Filename: "big.bin", Data: make([]byte, 3000)})
	var b bytes.Buffer
	if _, err := m.WriteTo(&b, &ComposeOptions{MaxSize: 2000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("estimate: %v", err)
	}
	// Just above the attachments but below the real size: caught while writing.
	m.Attachments = m.Attachments[:1]
	full := compose(t, m, fixedOptions())
	b.Reset()
	if _, err := m.WriteTo(&b, &ComposeOptions{MaxSize: int64(len(full) - 10), Now: fixedOptions().Now, Rand: fixedOptions().Rand}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("while writing: %v", err)
	}
	if _, err := m.WriteTo(&b, &ComposeOptions{MaxSize: -1}); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	m := sampleMessage()
	raw := compose(t, m, fixedOptions())
	got, err := ReadMessage(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, g, w any) {
		t.Helper()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %#v, want %#v", name, g, w)
		}
	}
	check("Kind", got.Kind, KindOrdinary)
	check("From", got.From, m.From)
	check("To", got.To, m.To)
	check("Cc", got.Cc, m.Cc)
	check("ReplyTo", got.ReplyTo, m.ReplyTo)
	check("InReplyTo", got.InReplyTo, m.InReplyTo)
	check("References", got.References, m.References)
	check("Date", got.Date.Equal(fixedOptions().Now()), true)
	check("Subject", got.Subject, "XDM/1.0/DDM+Lettre de liaison a la sortie d'un etabl PAT-TROIS Dominique 01/03/1979")
	check("Text", got.Text, m.Text)
	check("HTML", got.HTML, m.HTML)
	check("XDM", got.XDM, m.XDM)
	check("NIL", got.NIL, m.NIL)
	check("WantMDN", got.WantMDN, true)
	check("DispositionNotificationTo", got.DispositionNotificationTo, []Address{m.From})
	check("CodeCDA", got.CodeCDA, []string{"11490-0"})
	check("INSHeader", got.INSHeader, "O")
	check("EndOfMessaging", got.EndOfMessaging, false)
	if len(got.Documents) != 1 {
		t.Fatalf("documents: %d", len(got.Documents))
	}
	check("PDF", got.Documents[0].PDF, m.Documents[0].PDF)
	check("PDFName", got.Documents[0].PDFName, "20261127_Lettre de liaison a la sortie d'un etabl_PAT-TROIS_Dominique_D0042.pdf")
	check("Code", got.Documents[0].Code, "11490-0")
	check("Attachments", got.Attachments, []Attachment{{Filename: "notes.txt", ContentType: "text/plain", Data: m.Attachments[0].Data}})
	if !strings.HasSuffix(got.MessageID, "@hopital.test.mssante.fr") {
		t.Errorf("Message-ID %q not on the sender's domain", got.MessageID)
	}

	// Several documents, end of messaging, patient address, text only.
	m = sampleMessage()
	pa, err := PatientAddress(m.Patient)
	if err != nil {
		t.Fatal(err)
	}
	m.To, m.HTML, m.EndOfMessaging, m.WantMDN, m.Attachments = []Address{pa}, "", true, false, nil
	second := m.Documents[0]
	second.Code, second.DisplayName, second.PDF = "PRESC-BIO", "Prescription", []byte("%PDF-2")
	m.Documents = append(m.Documents, second)
	got, err = ReadMessage(bytes.NewReader(compose(t, m, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	check("To patient", got.To, []Address{{Addr: "279035121518989@patient.mssante.fr"}})
	check("CodeCDA 2", got.CodeCDA, []string{"11490-0", "PRESC-BIO"})
	check("Codes on documents", []string{got.Documents[0].Code, got.Documents[1].Code}, []string{"11490-0", "PRESC-BIO"})
	check("EndOfMessaging", got.EndOfMessaging, true)
	check("Subject 2", got.Subject, "XDM/1.0/DDM+2 documents PAT-TROIS Dominique 01/03/1979")
	check("WantMDN", got.WantMDN, false)
	check("HTML", got.HTML, "")
	check("Text", got.Text, m.Text)
}

// TestEncodeQuanta: writeBase64 (encodeQuanta for full lines) writes exactly what
// encoding/base64 gives, cut in lines of 76 characters with CRLF, for every length over a few
// lines and for every byte value at every place of a group.
func TestEncodeQuanta(t *testing.T) {
	want := func(data []byte) string {
		enc := base64.StdEncoding.EncodeToString(data)
		var b strings.Builder
		for len(enc) > 0 {
			n := min(76, len(enc))
			b.WriteString(enc[:n] + "\r\n")
			enc = enc[n:]
		}
		return b.String()
	}
	rnd := rand.New(rand.NewSource(4))
	data := make([]byte, 57*1024*2+300)
	rnd.Read(data)
	for _, n := range append([]int{57 * 1024, 57*1024 + 1, 57 * 2048, len(data)}, func() (l []int) {
		for n := range 400 {
			l = append(l, n)
		}
		return l
	}()...) {
		var b bytes.Buffer
		if err := writeBase64(&b, data[:n]); err != nil {
			t.Fatal(err)
		}
		if b.String() != want(data[:n]) {
			t.Fatalf("length %d: writeBase64 differs from encoding/base64", n)
		}
	}
	for c := range 256 {
		for pos := range 6 {
			src := make([]byte, 6)
			rnd.Read(src)
			src[pos] = byte(c)
			d := make([]byte, 8)
			encodeQuanta(d, src)
			if w := base64.StdEncoding.EncodeToString(src); string(d) != w {
				t.Fatalf("byte %#x at %d: %q, want %q", c, pos, d, w)
			}
		}
	}
}
