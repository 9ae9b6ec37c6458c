package mssante

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// postfixWant is what the Postfix samples (testdata/postfix/gen.sh) report.
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

// TestPostfixDSNLive makes a throw-away Postfix produce the five DSNs now and parses them.
func TestPostfixDSNLive(t *testing.T) {
	testenv.Require(t, "postfix")
	testenv.Require(t, "smtp-sink")
	if os.Geteuid() != 0 {
		t.Skip("the throw-away Postfix instance needs root (postfix -c)")
	}
	if testing.Short() {
		t.Skip("short")
	}
	// Postfix's unprivileged daemons must reach their queue: a world-searchable folder.
	work, err := os.MkdirTemp("", "mssante-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "testdata/postfix/gen.sh", work, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "maillog"))
		t.Fatalf("gen.sh: %v\n%s\nmaillog:\n%s", err, b, log)
	}
	for id := range postfixWant {
		raw, err := os.ReadFile(filepath.Join(out, "dsn-"+id+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		checkPostfixDSN(t, id, raw)
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
