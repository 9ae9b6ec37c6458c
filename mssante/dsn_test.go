package mssante

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
)

// postfixWant is what the Postfix samples (made by TestPostfixDSNLive -update) report.
var postfixWant = map[string]DSNRecipient{
	"failed-unknown-user": {FinalRecipient: "nobody@test.example", OriginalRecipient: "nobody@test.example", Action: ActionFailed, Status: "5.1.1",
		DiagnosticCode: `X-Postfix; unknown user: "nobody@test.example"`},
	"failed-remote-550": {FinalRecipient: "dr.x@reject.example", OriginalRecipient: "dr.x@reject.example", Action: ActionFailed, Status: "5.1.1",
		RemoteMTA: "127.0.0.1", DiagnosticCode: "smtp; 550 5.1.1 <x> Recipient address rejected: unknown user"},
	"delayed": {FinalRecipient: "dr.y@slow.example", OriginalRecipient: "dr.y@slow.example", Action: ActionDelayed, Status: "4.4.1"},
	"delivered": {FinalRecipient: "medecin@test.example", OriginalRecipient: "medecin@test.example", Action: ActionDelivered, Status: "2.0.0",
		DiagnosticCode: "X-Postfix; delivery via virtual: delivered to maildir"},
	"relayed": {FinalRecipient: "dr.z@relay.example", OriginalRecipient: "dr.z@relay.example", Action: ActionRelayed, Status: "2.0.0", RemoteMTA: "127.0.0.1",
		DiagnosticCode: "smtp; 250 2.0.0 Ok"},
}

func checkPostfixDSN(t *testing.T, id string, raw []byte) {
	t.Helper()
	d, m, err := ParseDSN(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if m.Kind != KindDSN || d.ReportingMTA != "mx.test.example" || d.OriginalEnvelopeID != "ENV-"+id || d.ArrivalDate.IsZero() {
		t.Errorf("%s: per-message fields %+v", id, d)
	}
	if len(d.Recipients) != 1 {
		t.Fatalf("%s: %d recipients", id, len(d.Recipients))
	}
	got, want := d.Recipients[0], postfixWant[id]
	if id == "delayed" {
		if !strings.HasPrefix(got.DiagnosticCode, "X-Postfix; connect to 127.0.0.1[127.0.0.1]:") || got.WillRetryUntil.IsZero() {
			t.Errorf("delayed: %+v", got)
		}
		got.DiagnosticCode, got.WillRetryUntil = "", time.Time{}
	}
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", id, got, want)
	}
	if !bytes.Contains(m.Original, []byte("Message-ID: <"+id+"@test.example>")) {
		t.Errorf("%s: original headers not kept", id)
	}
	if got.Action.Final() == (id == "delayed") {
		t.Errorf("%s: Final() = %v", id, got.Action.Final())
	}
}

// TestPostfixDSNSamples parses the DSNs a real Postfix 3.7 produced (committed samples).
func TestPostfixDSNSamples(t *testing.T) {
	for id := range postfixWant {
		raw, err := os.ReadFile(filepath.Join("testdata", "dsn-"+id+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		checkPostfixDSN(t, id, raw)
	}
}

// TestPostfixDSNLive makes a throw-away Postfix produce the five DSNs now and parses them:
// it submits five messages with sendmail -N … -V ENV-<id> -R hdrs from bal@test.example and
// reads the DSNs Postfix delivers back to that mailbox (see testdata/README.md). With
// -update it rewrites the committed samples testdata/dsn-<id>.eml.
func TestPostfixDSNLive(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	relay := peers.SMTPSink(t, "-N") // does not announce DSN: "relayed"
	reject := peers.SMTPSink(t, "-f", "RCPT", "-B", "550 5.1.1 <x> Recipient address rejected: unknown user")
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nothing listens: "delayed"
	pf := peers.StartPostfix(t, &peers.PostfixOptions{
		Mailboxes: map[string]string{"bal@test.example": "bal/", "medecin@test.example": "medecin/"},
		Transports: map[string]string{"relay.example": peers.Relay(relay), "reject.example": peers.Relay(reject),
			"slow.example": peers.Relay(closed)},
		RetryDelay: time.Second, DelayWarning: time.Second,
		Extra: []string{"maximal_queue_lifetime = 1h"},
	})
	for _, s := range []struct{ id, to, notify string }{
		{"failed-unknown-user", "nobody@test.example", "failure,delay"},
		{"failed-remote-550", "dr.x@reject.example", "failure,delay"},
		{"delayed", "dr.y@slow.example", "delay,failure"},
		{"delivered", "medecin@test.example", "success,failure"},
		{"relayed", "dr.z@relay.example", "success,failure"},
	} {
		msg := fmt.Sprintf("From: BAL <bal@test.example>\nTo: <%s>\nSubject: DSN sample %s\nMessage-ID: <%s@test.example>\n"+
			"Date: Sat, 28 Nov 2026 12:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"+
			"Corps du message de test.\n", s.to, s.id, s.id)
		pf.Sendmail(t, []byte(msg), "-f", "bal@test.example", "-N", s.notify, "-V", "ENV-"+s.id, "-R", "hdrs", s.to)
	}
	envID := regexp.MustCompile(`ENV-([a-z0-9-]+)`)
	got := map[string][]byte{}
	for deadline := time.Now().Add(60 * time.Second); len(got) < len(postfixWant); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d DSNs after 60 s; maillog:\n%s", len(got), len(postfixWant), pf.Log())
		}
		for _, m := range pf.Maildir("bal") {
			if id := envID.FindStringSubmatch(m); id != nil {
				got[id[1]] = []byte(m)
			}
		}
	}
	for id := range postfixWant {
		raw, ok := got[id]
		if !ok {
			t.Fatalf("no DSN for %s", id)
		}
		checkPostfixDSN(t, id, raw)
		if *update {
			if err := os.WriteFile(filepath.Join("testdata", "dsn-"+id+".eml"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestBuildDSNRoundTrip(t *testing.T) {
	orig := compose(t, sampleMessage(), fixedOptions())
	arrival := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	d := &DSN{ReportingMTA: "mx.hopital.test.mssante.fr", OriginalEnvelopeID: "Q123", ArrivalDate: arrival,
		Recipients: []DSNRecipient{
			{FinalRecipient: "a@medecin.test.mssante.fr", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx.medecin.test.mssante.fr",
				DiagnosticCode: "smtp; 550 5.1.1 unknown", LastAttemptDate: arrival},
			{FinalRecipient: "b@medecin.test.mssante.fr", OriginalRecipient: "B@medecin.test.mssante.fr", Action: ActionDelayed, Status: "4.4.1",
				WillRetryUntil: arrival.Add(120 * time.Hour)},
			{FinalRecipient: "c@x.test.mssante.fr", Action: ActionDelivered, Status: "2.0.0"},
			{FinalRecipient: "d@y.test.mssante.fr", Action: ActionRelayed, Status: "2.0.0"},
		}}
	env := &DSNEnvelope{From: MustAddress("Mail Delivery System", "mailer-daemon@hopital.test.mssante.fr"),
		To: MustAddress("", "cardio-app@hopital.test.mssante.fr"), Original: orig, HeadersOnly: true}
	var b bytes.Buffer
	if _, err := BuildDSN(&b, env, d, fixedOptions()); err != nil {
		t.Fatal(err)
	}
	golden(t, "dsn-built.golden.eml", b.Bytes())
	got, m, err := ParseDSN(bytes.NewReader(b.Bytes()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Undelivered Mail Returned to Sender" || !strings.HasPrefix(string(m.Original), "From: ") || bytes.Contains(m.Original, []byte("base64")) {
		t.Errorf("subject %q or headers-only original wrong", m.Subject)
	}
	if got.ReportingMTA != d.ReportingMTA || got.OriginalEnvelopeID != "Q123" || !got.ArrivalDate.Equal(arrival) || len(got.Recipients) != 4 {
		t.Fatalf("%+v", got)
	}
	for i, r := range got.Recipients {
		w := d.Recipients[i]
		w.OriginalRecipient = strings.ToLower(w.OriginalRecipient)
		if !r.LastAttemptDate.Equal(w.LastAttemptDate) || !r.WillRetryUntil.Equal(w.WillRetryUntil) {
			t.Errorf("dates %d", i)
		}
		r.LastAttemptDate, r.WillRetryUntil, w.LastAttemptDate, w.WillRetryUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if r != w {
			t.Errorf("recipient %d:\n got %+v\nwant %+v", i, r, w)
		}
	}
	// Subjects by outcome.
	for action, subject := range map[DSNAction]string{ActionDelayed: "Delayed Mail (still being retried)",
		ActionRelayed: "Successful Mail Delivery Report", ActionDelivered: "Successful Mail Delivery Report"} {
		b.Reset()
		one := &DSN{ReportingMTA: "mx.example.org", Recipients: []DSNRecipient{{FinalRecipient: "a@b.fr", Action: action, Status: "2.0.0"}}}
		if _, err := BuildDSN(&b, env, one, nil); err != nil {
			t.Fatal(err)
		}
		_, m, err := ParseDSN(&b, nil)
		if err != nil || m.Subject != subject {
			t.Errorf("%s: %q %v", action, m.Subject, err)
		}
	}
}

func TestBuildDSNRefusals(t *testing.T) {
	env := &DSNEnvelope{From: MustAddress("", "mailer-daemon@a.fr"), To: MustAddress("", "x@b.fr")}
	for name, d := range map[string]*DSN{
		"no recipients": {ReportingMTA: "mx"},
		"bad action":    {ReportingMTA: "mx", Recipients: []DSNRecipient{{FinalRecipient: "a@b.fr", Action: "lost", Status: "5.0.0"}}},
		"bad status":    {ReportingMTA: "mx", Recipients: []DSNRecipient{{FinalRecipient: "a@b.fr", Action: ActionFailed, Status: "550"}}},
		"CRLF":          {ReportingMTA: "mx", Recipients: []DSNRecipient{{FinalRecipient: "a@b.fr", Action: ActionFailed, Status: "5.0.0", DiagnosticCode: "x\r\nAction: delivered"}}},
	} {
		if _, err := BuildDSN(&bytes.Buffer{}, env, d, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := ParseDSN(bytes.NewReader(compose(t, sampleMessage(), nil)), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("ordinary mail parsed as DSN: %v", err)
	}
}
