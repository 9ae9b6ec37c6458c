package mssante

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	nettextproto "net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// The MDNs in testdata/mdn-thunderbird-*.eml and testdata/mdn-libas2-*.eml were written by
// real MDN senders, Thunderbird 153 and libas2 0.8.2; testdata/README.md says how.

// mdnShape is what an MDN looks like from outside, read with go-message (not with the reader
// under test): the report's content type and report-type, the content types of its parts,
// and the names of the fields in its message/disposition-notification part.
type mdnShape struct {
	signed     bool // the report is the first part of a multipart/signed
	top        string
	reportType string
	parts      []string
	fields     []string
	dispBody   []byte
	header     textproto.Header
}

func readShape(t testing.TB, raw []byte) mdnShape {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	s := mdnShape{header: e.Header.Header}
	mt, params, _ := e.Header.ContentType()
	if mt == "multipart/signed" {
		mr := e.MultipartReader()
		first, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(first.Body) // before the next part ends this one
		if err != nil {
			t.Fatal(err)
		}
		if first, err = message.New(first.Header, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		second, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if st, _, _ := second.Header.ContentType(); st != "application/pkcs7-signature" {
			t.Fatalf("multipart/signed second part is %s", st)
		}
		s.signed, e = true, first
		mt, params, _ = e.Header.ContentType()
	}
	s.top, s.reportType = mt, params["report-type"]
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("not multipart: %s", mt)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := p.Header.ContentType()
		s.parts = append(s.parts, pt)
		if pt == "message/disposition-notification" {
			if s.dispBody, err = io.ReadAll(p.Body); err != nil {
				t.Fatal(err)
			}
			blocks, err := readFieldBlocks(s.dispBody, 1)
			if err != nil || len(blocks) != 1 {
				t.Fatalf("disposition fields: %v", err)
			}
			for f := blocks[0].Fields(); f.Next(); {
				s.fields = append(s.fields, nettextproto.CanonicalMIMEHeaderKey(f.Key()))
			}
		}
	}
	return s
}

// realMDNs are the samples with what each says.
var realMDNs = []struct {
	file string
	to   string // the mail's To (the original's Disposition-Notification-To); "" for AS2
	want MDN
}{
	{"mdn-thunderbird-auto.eml", "secretariat@hopital.test.mssante.fr", MDN{
		ReportingUA: "Mozilla Thunderbird", FinalRecipient: "dr.martin@clinique.test.mssante.fr",
		OriginalMessageID: "cr-2026-0001@hopital.test.mssante.fr",
		Mode:              "manual-action/MDN-sent-automatically", Type: "displayed"}},
	{"mdn-thunderbird-manual.eml", "secretariat@hopital.test.mssante.fr", MDN{
		ReportingUA: "Mozilla Thunderbird", FinalRecipient: "dr.martin@clinique.test.mssante.fr",
		OriginalMessageID: "cr-2026-0002@hopital.test.mssante.fr",
		Mode:              "manual-action/MDN-sent-manually", Type: "displayed"}},
	// "denied" (RFC 3798; RFC 8098 dropped it): Thunderbird set to refuse receipts.
	{"mdn-thunderbird-denied.eml", "accueil@clinique.test.mssante.fr", MDN{
		ReportingUA: "Mozilla Thunderbird", FinalRecipient: "dr.martin@clinique.test.mssante.fr",
		OriginalMessageID: "rdv-2026-0003@clinique.test.mssante.fr",
		Mode:              "manual-action/MDN-sent-automatically", Type: "denied"}},
	{"mdn-libas2-processed.eml", "", MDN{
		ReportingUA: "vm; node-libas2 0.8.2", OriginalRecipient: "clinique-test", FinalRecipient: "clinique-test",
		OriginalMessageID: "c4c4b642-97b7-e606-6641-838483a07f44@vm",
		Mode:              "automatic-action/MDN-sent-automatically", Type: "processed"}},
	{"mdn-libas2-signed.eml", "", MDN{
		ReportingUA: "vm; node-libas2 0.8.2", OriginalRecipient: "clinique-test", FinalRecipient: "clinique-test",
		OriginalMessageID: "c4c4b642-97b7-e606-6641-838483a07f44@vm",
		Mode:              "automatic-action/MDN-sent-automatically", Type: "processed"}},
	{"mdn-libas2-failed.eml", "", MDN{
		ReportingUA: "vm; node-libas2 0.8.2", OriginalRecipient: "clinique-test", FinalRecipient: "clinique-test",
		OriginalMessageID: "c4c4b642-97b7-e606-6641-838483a07f44@vm",
		Mode:              "automatic-action/MDN-sent-automatically", Type: "failed"}},
}

func TestRealMDNs(t *testing.T) {
	for _, tc := range realMDNs {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			action, sending, _ := strings.Cut(tc.want.Mode, "/")
			if !slices.Contains([]string{"manual-action", "automatic-action"}, action) ||
				!slices.Contains([]string{"MDN-sent-manually", "MDN-sent-automatically"}, sending) {
				t.Fatalf("bad want mode %q", tc.want.Mode)
			}
			s := readShape(t, raw)
			n, err := ParseDispositionNotification(s.dispBody)
			if err != nil {
				t.Fatal(err)
			}
			if *n != tc.want {
				t.Errorf("disposition fields:\n got %+v\nwant %+v", *n, tc.want)
			}
			if tc.to == "" {
				// An AS2 MDN has AS2-From/AS2-To, no From: it is not a mail, and the mail
				// reader says so instead of guessing.
				if _, _, err := ParseMDN(bytes.NewReader(raw), nil); !errors.Is(err, ErrMalformed) {
					t.Errorf("AS2 MDN read as mail: %v", err)
				}
				if s.header.Get("As2-From") != "CLINIQUE-TEST" || s.header.Get("As2-To") != "HOPITAL-TEST" {
					t.Errorf("AS2 headers: %v", s.header.Get("As2-From"))
				}
				return
			}
			n2, m, err := ParseMDN(bytes.NewReader(raw), nil)
			if err != nil {
				t.Fatal(err)
			}
			if *n2 != tc.want || m.Kind != KindMDN || m.MDN != n2 || m.Integration != 0 {
				t.Errorf("ParseMDN: kind %v, %+v", m.Kind, *n2)
			}
			if m.From.Addr != tc.want.FinalRecipient || len(m.To) != 1 || m.To[0].Addr != tc.to {
				t.Errorf("from %v to %v", m.From, m.To)
			}
			if len(m.References) != 1 || m.References[0] != tc.want.OriginalMessageID {
				t.Errorf("References %v", m.References)
			}
			// Thunderbird returns the original's header as text/rfc822-headers.
			if !bytes.Contains(m.Original, []byte("Message-ID: <"+tc.want.OriginalMessageID+">\r\n")) {
				t.Errorf("returned header: %q", m.Original)
			}
			if !strings.HasPrefix(m.Subject, "Return Receipt ("+tc.want.Type+") -") || strings.Contains(m.Subject, "=?") {
				t.Errorf("subject %q", m.Subject)
			}
			if !strings.Contains(m.Text, "Return Receipt") {
				t.Errorf("text %q", m.Text)
			}
			// Never an MDN or error mail in answer to an MDN, even one that asks for it.
			m.WantMDN, m.DispositionNotificationTo = true, []Address{m.From}
			for _, code := range []MDNCode{0, CodeOther} {
				if _, err := WriteReceipt(io.Discard, m, raw, code, receiptOptions()); !errors.Is(err, ErrReportLoop) {
					t.Errorf("receipt for a Thunderbird MDN (code %d): %v", code, err)
				}
			}
		})
	}
}

// TestMDNShapeLikeRealSenders: the MDNs our builder writes have the structure of those real
// senders write: a multipart/report of report-type disposition-notification whose parts are
// the human text, the disposition fields and (optionally) the returned message or its header,
// with the fields every real sender writes; as mail, the headers Thunderbird writes.
func TestMDNShapeLikeRealSenders(t *testing.T) {
	orig, raw := received(t, true)
	ours := map[MDNCode][]byte{}
	for _, code := range []MDNCode{0, CodeUnknownPatient} {
		var b bytes.Buffer
		if _, err := WriteReceipt(&b, orig, raw, code, receiptOptions()); err != nil {
			t.Fatal(err)
		}
		ours[code] = b.Bytes()
	}
	returned := []string{"message/rfc822", "text/rfc822-headers"}
	check := func(name string, s mdnShape) {
		t.Helper()
		if s.top != "multipart/report" || s.reportType != "disposition-notification" {
			t.Errorf("%s: %s; report-type=%s", name, s.top, s.reportType)
		}
		if len(s.parts) < 2 || len(s.parts) > 3 || s.parts[0] != "text/plain" || s.parts[1] != "message/disposition-notification" ||
			len(s.parts) == 3 && !slices.Contains(returned, s.parts[2]) {
			t.Errorf("%s: parts %v", name, s.parts)
		}
	}
	var realFields []string // the fields every real sender writes
	for i, tc := range realMDNs {
		raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		s := readShape(t, raw)
		check(tc.file, s)
		if s.signed != (tc.file == "mdn-libas2-signed.eml") {
			t.Errorf("%s: signed %v", tc.file, s.signed)
		}
		if i == 0 {
			realFields = s.fields
		}
		realFields = slices.DeleteFunc(realFields, func(f string) bool { return !slices.Contains(s.fields, f) })
		if tc.to == "" {
			continue
		}
		for _, code := range []MDNCode{0, CodeUnknownPatient} {
			o := readShape(t, ours[code])
			check("ours", o)
			if len(o.parts) != len(s.parts) {
				t.Errorf("ours has %d parts, %s %d", len(o.parts), tc.file, len(s.parts))
			}
			for _, h := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "References"} {
				if s.header.Get(h) == "" || o.header.Get(h) == "" {
					t.Errorf("header %s: %s %q, ours %q", h, tc.file, s.header.Get(h), o.header.Get(h))
				}
			}
		}
	}
	slices.Sort(realFields)
	if want := []string{"Disposition", "Final-Recipient", "Original-Message-Id", "Reporting-Ua"}; !slices.Equal(realFields, want) {
		t.Errorf("fields every real sender writes: %v, want %v", realFields, want)
	}
	for code, b := range ours {
		o := readShape(t, b)
		for _, f := range realFields {
			if !slices.Contains(o.fields, f) {
				t.Errorf("our MDN (code %d) lacks %s; has %v", code, f, o.fields)
			}
		}
	}
}

func TestDispositionModifiers(t *testing.T) {
	const head = "Reporting-UA: ua.test.fr; X 1\r\nFinal-Recipient: rfc822; bal@ua.test.fr\r\nOriginal-Message-ID: <1@a.fr>\r\n"
	for _, tc := range []struct {
		disp, extra string
		code        MDNCode
		typ, label  string
	}{
		{"automatic-action/MDN-sent-automatically; processed", "", 0, "processed", ""},
		{"manual-action/MDN-sent-manually; displayed", "", 0, "displayed", ""},
		{"automatic-action/MDN-sent-automatically; processed/Error: 902^Patient inconnu", "", CodeUnknownPatient, "processed", "Patient inconnu"},
		{"automatic-action/MDN-sent-automatically; processed/error", "Error: 904^INS incoherent\r\n", CodeINSMismatch, "processed", "INS incoherent"},
		// The error modifier without a 900–906 code: never a success, 906 with its text.
		{"automatic-action/MDN-sent-automatically; processed/error", "", CodeOther, "processed", ""},
		{"automatic-action/MDN-sent-automatically; processed / ERROR ", "", CodeOther, "processed", ""},
		{"automatic-action/MDN-sent-automatically; processed/warning, error", "", CodeOther, "processed", ""},
		{"automatic-action/MDN-sent-automatically; processed/error", "Error: decryption-failed\r\n", CodeOther, "processed", "decryption-failed"},
		{"automatic-action/MDN-sent-automatically; processed/error: authentication-failed", "", CodeOther, "processed", "authentication-failed"},
		{"automatic-action/MDN-sent-automatically; processed/Error: 999^Inconnu", "", CodeOther, "processed", "999^Inconnu"},
		// An extension modifier that is not "error" says nothing about success.
		{"automatic-action/MDN-sent-automatically; processed/errors-none", "", 0, "processed", ""},
		{"automatic-action/MDN-sent-automatically; failed/failure=Could not verify signature", "", 0, "failed", ""},
	} {
		n, err := ParseDispositionNotification([]byte(head + tc.extra + "Disposition: " + tc.disp + "\r\n"))
		if err != nil || n.Error != tc.code || n.Type != tc.typ || n.ErrorLabel != tc.label {
			t.Errorf("%q %q: %+v %v", tc.disp, tc.extra, n, err)
		}
	}
}

// FuzzParseDispositionNotification: any field block gives an MDN or an error wrapping
// ErrMalformed, and an MDN whose Disposition carries the error modifier is never a success.
func FuzzParseDispositionNotification(f *testing.F) {
	files, _ := filepath.Glob("testdata/mdn-*.eml")
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if s := readShape(f, raw); s.dispBody != nil {
			f.Add(s.dispBody)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseDispositionNotification(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if n.FinalRecipient == "" || n.Type == "" || n.Error != 0 && !n.Error.Valid() {
			t.Fatalf("accepted %+v", *n)
		}
		blocks, _ := readFieldBlocks(data, 1)
		_, typeAndMods, _ := strings.Cut(blocks[0].Get("Disposition"), ";")
		_, mods, _ := strings.Cut(typeAndMods, "/")
		for _, m := range strings.Split(mods, ",") {
			if strings.EqualFold(strings.TrimSpace(m), "error") && n.Error == 0 {
				t.Fatalf("error modifier read as success: %q", mods)
			}
		}
	})
}

// An MDN that is not a mail, here the disposition fields of an AS2 answer (RFC 4130), read
// without the mail around it.
func ExampleParseDispositionNotification() {
	fields := "Reporting-UA: as2.clinique.test; Passerelle 1.0\r\n" +
		"Final-Recipient: rfc822; CLINIQUE-AS2\r\n" +
		"Original-Message-ID: <42@hopital.test>\r\n" +
		"Disposition: automatic-action/MDN-sent-automatically; processed\r\n"
	n, err := ParseDispositionNotification([]byte(fields))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n.Type, n.OriginalMessageID, n.FinalRecipient)
	// Output: processed 42@hopital.test clinique-as2
}

// TestReadSignedMDN: a signed report (multipart/signed around the multipart/report, libas2's
// signed MDN given the mail headers AS2 leaves out) reads as an MDN; the same report inside a
// multipart/mixed (a forwarded report) does not make the mail a report.
func TestReadSignedMDN(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "mdn-libas2-signed.eml"))
	if err != nil {
		t.Fatal(err)
	}
	mail := append([]byte("From: <as2@clinique.test.mssante.fr>\r\nTo: <as2@hopital.test.mssante.fr>\r\n"), raw...)
	m, err := ReadMessage(bytes.NewReader(mail), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindMDN || m.MDN == nil || m.MDN.Type != "processed" || m.MDN.OriginalMessageID != "c4c4b642-97b7-e606-6641-838483a07f44@vm" {
		t.Fatalf("kind %v, MDN %+v", m.Kind, m.MDN)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/pkcs7-signature" {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	swapped := bytes.Replace(mail, []byte("multipart/signed;"), []byte("multipart/mixed;"), 1)
	if m, err := ReadMessage(bytes.NewReader(swapped), nil); err != nil || m.Kind != KindOrdinary {
		t.Fatalf("multipart/mixed around a report: kind %v, %v", m.Kind, err)
	}
}
