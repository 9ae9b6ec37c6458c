package mssante

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

func receiptOptions() *ReceiptOptions {
	return &ReceiptOptions{
		From:        MustAddress("Cardiologie (PFI)", "pfi-app@clinique.test.mssante.fr"),
		ReportingUA: "pfi.clinique.test.mssante.fr; MonDPI 4.2",
		NIL:         "DEV111111",
		Compose:     fixedOptions(),
	}
}

// received composes the sample message and reads it back, as a receiving BAL does.
func received(t *testing.T, wantMDN bool) (*Message, []byte) {
	t.Helper()
	m := sampleMessage()
	m.WantMDN = wantMDN
	m.MessageID = "orig-1@hopital.test.mssante.fr"
	raw := compose(t, m, fixedOptions())
	got, err := ReadMessage(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	return got, raw
}

func TestRFC8098Example(t *testing.T) {
	raw, err := os.ReadFile("testdata/mdn-rfc8098-example.eml")
	if err != nil {
		t.Fatal(err)
	}
	n, m, err := ParseMDN(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := MDN{ReportingUA: "joes-pc.cs.example.com; Foomail 97.1", OriginalRecipient: "joe_recipient@example.com",
		FinalRecipient: "joe_recipient@example.com", OriginalMessageID: "199509192301.23456@example.org",
		Mode: "manual-action/MDN-sent-manually", Type: "displayed"}
	if *n != want || m.Kind != KindMDN || m.Integration != 0 {
		t.Errorf("got %+v", *n)
	}
}

func TestMDNProcessed(t *testing.T) {
	orig, raw := received(t, true)
	var b bytes.Buffer
	if _, err := WriteReceipt(&b, orig, raw, 0, receiptOptions()); err != nil {
		t.Fatal(err)
	}
	golden(t, "mdn-processed.golden.eml", b.Bytes())
	n, m, err := ParseMDN(bytes.NewReader(b.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Type != "processed" || n.Mode != DefaultDispositionMode || n.Error != 0 || n.OriginalMessageID != "orig-1@hopital.test.mssante.fr" ||
		n.FinalRecipient != "pfi-app@clinique.test.mssante.fr" || n.ReportingUA != "pfi.clinique.test.mssante.fr; MonDPI 4.2" {
		t.Errorf("%+v", n)
	}
	if m.To[0].Addr != "cardio-app@hopital.test.mssante.fr" || m.InReplyTo[0] != "orig-1@hopital.test.mssante.fr" || m.NIL != "DEV111111" {
		t.Errorf("routing: to %v in-reply-to %v", m.To, m.InReplyTo)
	}
	if !bytes.Equal(m.Original, raw) {
		t.Error("original not re-attached as it was")
	}
	if strings.HasPrefix(m.Subject, KOSubjectPrefix) {
		t.Error("KO subject on success")
	}
	// The original inside the MDN still parses, with its attachments.
	inner, err := ReadMessage(bytes.NewReader(m.Original), nil)
	if err != nil || inner.XDM == nil || len(inner.Documents) != 1 {
		t.Errorf("re-attached original: %v", err)
	}
}

func TestMDNError(t *testing.T) {
	orig, raw := received(t, true)
	for code := CodeDocumentVersion; code <= CodeOther; code++ {
		var b bytes.Buffer
		if _, err := WriteReceipt(&b, orig, raw, code, receiptOptions()); err != nil {
			t.Fatal(err)
		}
		if code == CodeUnknownPatient {
			golden(t, "mdn-error-902.golden.eml", b.Bytes())
			if !bytes.Contains(b.Bytes(), []byte("Disposition: automatic-action/MDN-sent-automatically; processed/Error: 902^Patient inconnu\r\n")) {
				t.Error("Disposition field not in the MSSanté form")
			}
		}
		n, m, err := ParseMDN(&b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n.Error != code || n.ErrorLabel != code.Label() || m.Integration != code || m.Kind != KindMDN {
			t.Errorf("%d: %+v", code, n)
		}
		if want := KOSubject(code, orig.Subject); m.Subject != want {
			t.Errorf("subject %q, want %q", m.Subject, want)
		}
	}
	if _, err := WriteReceipt(&bytes.Buffer{}, orig, raw, 907, receiptOptions()); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("code 907: %v", err)
	}
}

func TestIntegrationErrorMail(t *testing.T) {
	orig, raw := received(t, false)
	if _, err := WriteReceipt(&bytes.Buffer{}, orig, raw, 0, receiptOptions()); !errors.Is(err, ErrNothingToSend) {
		t.Errorf("success without MDN request: %v", err)
	}
	var b bytes.Buffer
	if _, err := WriteReceipt(&b, orig, raw, CodeINSMismatch, receiptOptions()); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMessage(bytes.NewReader(b.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindIntegrationError || m.Integration != CodeINSMismatch || m.MDN != nil {
		t.Errorf("kind %v code %v", m.Kind, m.Integration)
	}
	if m.Subject != "[KO Intégration système !][904] "+orig.Subject {
		t.Errorf("subject %q", m.Subject)
	}
	if m.To[0] != orig.ReplyTo[0] || !bytes.Equal(m.Original, raw) || m.InReplyTo[0] != orig.MessageID {
		t.Errorf("to %v, original kept %v", m.To, bytes.Equal(m.Original, raw))
	}
	if !bytes.Contains(b.Bytes(), []byte("Content-Type: message/rfc822")) {
		t.Error("original not attached as message/rfc822")
	}
	if _, err := BuildMDN(&bytes.Buffer{}, orig, raw, 0, receiptOptions()); !errors.Is(err, ErrMDNNotRequested) {
		t.Errorf("BuildMDN without request: %v", err)
	}
}

func TestNoReceiptForReceipts(t *testing.T) {
	orig, raw := received(t, true)
	var mdn bytes.Buffer
	if _, err := WriteReceipt(&mdn, orig, raw, CodeOther, receiptOptions()); err != nil {
		t.Fatal(err)
	}
	dsnRaw, _ := os.ReadFile("testdata/dsn-failed-unknown-user.eml")
	var ko bytes.Buffer
	origNoMDN, raw2 := received(t, false)
	if _, err := WriteReceipt(&ko, origNoMDN, raw2, CodeOther, receiptOptions()); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"MDN": mdn.Bytes(), "DSN": dsnRaw, "KO mail": ko.Bytes()} {
		m, err := ReadMessage(bytes.NewReader(b), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, wantMDN := range []bool{false, true} {
			m.WantMDN = wantMDN // even a receipt that asks for an MDN gets none
			if wantMDN {
				m.DispositionNotificationTo = []Address{m.From}
			}
			for _, code := range []MDNCode{0, CodeOther} {
				if _, err := WriteReceipt(&bytes.Buffer{}, m, b, code, receiptOptions()); !errors.Is(err, ErrReportLoop) {
					t.Errorf("%s (MDN asked %v, code %d): %v", name, wantMDN, code, err)
				}
			}
		}
	}
}

func TestReceiptInjection(t *testing.T) {
	orig, raw := received(t, true)
	o := receiptOptions()
	o.ReportingUA = "x\r\nDisposition: automatic-action/MDN-sent-automatically; processed"
	if _, err := WriteReceipt(&bytes.Buffer{}, orig, raw, 0, o); !errors.Is(err, ErrHeaderInjection) {
		t.Errorf("CRLF in Reporting-UA: %v", err)
	}
}

func TestMDNReturnPath(t *testing.T) {
	_, raw := received(t, true)
	for rp, want := range map[string]error{
		"Return-Path: <cardio-app@hopital.test.mssante.fr>\r\n": nil,
		"Return-Path: <CARDIO-APP@hopital.test.mssante.fr>\r\n": nil,
		"Return-Path: <other@elsewhere.test.mssante.fr>\r\n":    ErrMDNReturnPath,
		"Return-Path: <>\r\n": ErrMDNReturnPath,
	} {
		delivered := append([]byte(rp), raw...)
		orig, err := ReadMessage(bytes.NewReader(delivered), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := WriteReceipt(&bytes.Buffer{}, orig, delivered, 0, receiptOptions()); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("%q: %v, want %v", rp, err, want)
		}
		o := receiptOptions()
		o.AnyReturnPath = true
		if _, err := WriteReceipt(&bytes.Buffer{}, orig, delivered, 0, o); err != nil {
			t.Errorf("%q with AnyReturnPath: %v", rp, err)
		}
	}
}
