package bal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// outboxWith records a sent message to rcpts in a fresh client's outbox, as Send does.
func outboxWith(t testing.TB, mdn bool, rcpts ...string) (*Client, *Record) {
	t.Helper()
	return outboxWithID(t, fmt.Sprintf("m%d@test.example", time.Now().UnixNano()), mdn, rcpts...)
}

// outboxWithID is outboxWith for a message of Message-ID id.
func outboxWithID(t testing.TB, id string, mdn bool, rcpts ...string) (*Client, *Record) {
	t.Helper()
	c, err := New(&Options{Address: testBAL, Auth: AuthPlain, Username: "u", Password: "p", StateDir: t.TempDir(), Whitelist: testList()})
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{MessageID: id, EnvelopeID: envelopeID(id), MDNRequested: mdn, Created: time.Now()}
	for _, r := range rcpts {
		rec.Recipients = append(rec.Recipients, RecipientState{Address: r, Status: StatusSubmitted})
	}
	if err := c.box.commit(rec); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func dsn(t testing.TB, rec *Record, action mssante.DSNAction, rcpt, diag string) []byte {
	t.Helper()
	var b bytes.Buffer
	_, err := mssante.BuildDSN(&b, &mssante.DSNEnvelope{From: mssante.MustAddress("", "mailer-daemon@other.example"),
		To: mssante.MustAddress("", testBAL)}, &mssante.DSN{ReportingMTA: "mx.other.example", OriginalEnvelopeID: rec.EnvelopeID,
		Recipients: []mssante.DSNRecipient{{FinalRecipient: rcpt, OriginalRecipient: rcpt, Action: action, Status: "2.0.0", DiagnosticCode: diag}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mdn(t testing.TB, rec *Record, from string, code mssante.MDNCode) []byte {
	t.Helper()
	orig := &mssante.Message{MessageID: rec.MessageID, From: mssante.MustAddress("", testBAL), Subject: "XDM/1.0/DDM+x",
		WantMDN: true, DispositionNotificationTo: []mssante.Address{mssante.MustAddress("", testBAL)}}
	var b bytes.Buffer
	_, err := mssante.BuildMDN(&b, orig, []byte("Subject: x\r\n\r\nx\r\n"), code, &mssante.ReceiptOptions{From: mssante.MustAddress("", from), ReportingUA: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// feed parses raw as a received message and applies it as the watcher does.
func feed(t testing.TB, c *Client, raw []byte, got *[]Receipt) {
	t.Helper()
	m := &Incoming{data: raw}
	m.parse(1 << 20)
	if m.Message == nil || m.Message.Kind == mssante.KindOrdinary {
		t.Fatalf("not a receipt: %v", m.ParseError)
	}
	w := &watcher{c: c, onReceipt: func(_ context.Context, r Receipt) { *got = append(*got, r) }}
	if _, err := w.applyReceipt(context.Background(), m.Message); err != nil {
		t.Fatal(err)
	}
}

func TestReceiptsOneFinalStatusPerRecipient(t *testing.T) {
	const r1, r2 = "a@other.example", "b@other.example"
	for _, tc := range []struct {
		name  string
		mdn   bool
		steps []func(t testing.TB, rec *Record) ([]byte, string)
	}{
		{"delivered is final without MDN", false, []func(testing.TB, *Record) ([]byte, string){
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelivered, r1, "smtp; 250 2.0.0 ok"), r1 + ":delivered:true"
			},
			// a duplicate DSN, then a late failure: nothing more for r1
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelivered, r1, "smtp; 250 2.0.0 ok"), ""
			},
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionFailed, r1, "smtp; 550 5.1.1 unknown"), ""
			},
		}},
		{"late MDN after a delay DSN", true, []func(testing.TB, *Record) ([]byte, string){
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelayed, r1, "smtp; 451 4.4.1 later"), r1 + ":delayed:false"
			},
			func(t testing.TB, r *Record) ([]byte, string) { return mdn(t, r, r1, 0), r1 + ":processed:true" },
			// the success DSN arriving after the MDN changes nothing
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelivered, r1, "smtp; 250 ok"), ""
			},
			func(t testing.TB, r *Record) ([]byte, string) { return mdn(t, r, r1, 0), "" },
		}},
		{"MDN error with code", true, []func(testing.TB, *Record) ([]byte, string){
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelivered, r2, "smtp; 250 ok"), r2 + ":delivered:false"
			},
			func(t testing.TB, r *Record) ([]byte, string) {
				return mdn(t, r, r2, mssante.CodeINSMismatch), r2 + ":error:true:mdn904"
			},
			func(t testing.TB, r *Record) ([]byte, string) { return mdn(t, r, r2, 0), "" },
		}},
		{"failure DSN is final, MDN after it ignored", true, []func(testing.TB, *Record) ([]byte, string){
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionFailed, r1, "smtp; 550 5.1.1 unknown"), r1 + ":failed:true:smtp550"
			},
			func(t testing.TB, r *Record) ([]byte, string) { return mdn(t, r, r1, 0), "" },
		}},
		{"receipt for an unknown recipient", true, []func(testing.TB, *Record) ([]byte, string){
			func(t testing.TB, r *Record) ([]byte, string) {
				return dsn(t, r, mssante.ActionDelivered, "intruder@other.example", "smtp; 250 ok"), ""
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := outboxWith(t, tc.mdn, r1, r2)
			for i, s := range tc.steps {
				raw, want := s(t, rec)
				var got []Receipt
				feed(t, c, raw, &got)
				var parts []string
				for _, r := range got {
					p := fmt.Sprintf("%s:%s:%v", r.Recipient, r.Status, r.Final)
					if r.SMTPCode != 0 && r.Status != StatusDelivered && r.Status != StatusDelayed {
						p += fmt.Sprintf(":smtp%d", r.SMTPCode)
					}
					if r.MDNCode != 0 {
						p += fmt.Sprintf(":mdn%d", r.MDNCode)
					}
					parts = append(parts, p)
				}
				if g := join(parts); g != want {
					t.Fatalf("step %d: receipts %q, want %q", i, g, want)
				}
			}
		})
	}
}

func join(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(s)
	}
	return b.String()
}

// TestRealMDNsStatus feeds the MDNs Thunderbird sent (mssante/testdata, made by
// mssante/testdata/mdn-gen): only "processed" means integrated; a read receipt (displayed)
// and a refusal to acknowledge (denied) are final but say so.
func TestRealMDNsStatus(t *testing.T) {
	const rcpt = "dr.martin@clinique.test.mssante.fr"
	for _, tc := range []struct{ file, id, want, disposition string }{
		{"mdn-thunderbird-auto.eml", "cr-2026-0001@hopital.test.mssante.fr", rcpt + ":displayed:true:", ""},
		{"mdn-thunderbird-manual.eml", "cr-2026-0002@hopital.test.mssante.fr", rcpt + ":displayed:true:", ""},
		{"mdn-thunderbird-denied.eml", "rdv-2026-0003@clinique.test.mssante.fr", rcpt + ":error:true:MDN denied", ""},
		// An error without an MSSanté code, as AS2 writes it: an error, not left pending.
		{"mdn-thunderbird-auto.eml", "cr-2026-0001@hopital.test.mssante.fr", rcpt + ":error:true:authentication-failed",
			"automatic-action/MDN-sent-automatically; processed/error: authentication-failed"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile("../mssante/testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if tc.disposition != "" {
				raw = regexp.MustCompile(`(?m)^Disposition: .*\r?$`).ReplaceAll(raw, []byte("Disposition: "+tc.disposition+"\r"))
			}
			c, _ := outboxWithID(t, tc.id, true, rcpt)
			var got []Receipt
			feed(t, c, raw, &got)
			if len(got) != 1 {
				t.Fatalf("receipts %v", got)
			}
			if g := fmt.Sprintf("%s:%s:%v:%s", got[0].Recipient, got[0].Status, got[0].Final, got[0].Detail); g != tc.want {
				t.Fatalf("receipt %q, want %q", g, tc.want)
			}
		})
	}
}

// TestReceiptForAnotherMessageIgnored: a receipt whose envelope ID is not in the outbox
// (or tries to escape it) changes nothing.
func TestReceiptForAnotherMessageIgnored(t *testing.T) {
	c, rec := outboxWith(t, false, "a@other.example")
	other := *rec
	for _, id := range []string{"0123456789abcdef0123456789abcdef", "../../etc", ""} {
		other.EnvelopeID = id
		var got []Receipt
		feed(t, c, dsn(t, &other, mssante.ActionDelivered, "a@other.example", "smtp; 250 ok"), &got)
		if len(got) != 0 {
			t.Fatalf("envid %q: receipts %+v", id, got)
		}
	}
}

// TestLargeMessageSpooledToDisk: above SpoolThreshold the body goes to a file under
// StateDir/spool, removed once handled.
func TestLargeMessageSpooledToDisk(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 10000)
	m := &Incoming{}
	if err := m.store(bytes.NewReader(big), 1024, 1<<20, dir); err != nil {
		t.Fatal(err)
	}
	if m.path == "" || m.data != nil {
		t.Fatalf("not spooled: path %q, %d bytes in memory", m.path, len(m.data))
	}
	r, _ := m.Open()
	var b bytes.Buffer
	b.ReadFrom(r)
	r.Close()
	if !bytes.Equal(b.Bytes(), big) {
		t.Fatal("spooled copy differs")
	}
	m.cleanup()
	if _, err := osStat(m.path); err == nil {
		t.Fatal("spool file left behind")
	}
	// Over MaxMessageSize: refused.
	m = &Incoming{}
	if err := m.store(bytes.NewReader(big), 1024, 4096, dir); err == nil {
		t.Fatal("oversized message accepted")
	}
	m.cleanup()
	// Small: in memory.
	m = &Incoming{}
	if err := m.store(bytes.NewReader(big[:100]), 1024, 1<<20, dir); err != nil || m.path != "" || len(m.data) != 100 {
		t.Fatalf("small message: %v %q %d", err, m.path, len(m.data))
	}
}

func osStat(p string) (os.FileInfo, error) { return os.Stat(p) }

// TestReceiptCodes: a receipt's SMTPCode is only ever the reply code a DSN reports (0 when
// it reports none), its MDNCode only ever an integration error code, and the outbox record
// keeps both apart, also when read back from a record written before MDNCode existed.
func TestReceiptCodes(t *testing.T) {
	const r1, r2, r3 = "a@other.example", "b@other.example", "c@other.example"
	c, rec := outboxWith(t, true, r1, r2, r3)
	var got []Receipt
	feed(t, c, dsn(t, rec, mssante.ActionDelivered, r1, ""), &got)
	feed(t, c, dsn(t, rec, mssante.ActionFailed, r2, "smtp; 550 5.1.1 unknown"), &got)
	feed(t, c, mdn(t, rec, r1, mssante.CodeUnknownPatient), &got)
	feed(t, c, dsn(t, rec, mssante.ActionDelivered, r3, "smtp; 250 2.0.0 ok"), &got)
	var parts []string
	for _, r := range got {
		parts = append(parts, fmt.Sprintf("%s:%s:%d:%d", r.Recipient, r.Status, r.SMTPCode, r.MDNCode))
	}
	want := r1 + ":delivered:0:0," + r2 + ":failed:550:0," + r1 + ":error:0:902," + r3 + ":delivered:250:0"
	if g := join(parts); g != want {
		t.Fatalf("receipts %q, want %q", g, want)
	}
	st, err := c.Status(rec.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Recipients[0]; s.Code != 0 || s.MDNCode != mssante.CodeUnknownPatient {
		t.Errorf("outbox %+v", s)
	}

	var old RecipientState
	if err := json.Unmarshal([]byte(`{"address":"`+r1+`","status":"error","code":902}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Code != 0 || old.MDNCode != mssante.CodeUnknownPatient {
		t.Errorf("record of an earlier version read as %+v", old)
	}
}
