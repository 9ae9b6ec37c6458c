package connector

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/audit"
)

// A peer that lost our 250 hands the same message over again (RFC 5321 §6.1: at least once):
// it gets 250 again, and each recipient one copy. A recipient new to the message still gets
// it; the same Message-ID with other content, or the same content without Message-ID, is
// another message.
func TestRelayRedelivery(t *testing.T) {
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", nil)
	trust(a, b)
	c, err := dialSMTP(t, b.relayAddr, clientTLS(a.server, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	from, dr, bal := "x@a.mssante.test", "dr@b.mssante.test", b.bal
	m := msg(from, dr, "redelivered")
	noID := strings.Replace(m, "Message-ID: <redelivered@test>\r\n", "", 1)
	for i, tc := range []struct {
		rcpts []string
		body  string
	}{
		{[]string{dr}, m},
		{[]string{dr}, m},               // the same again: 250, not stored
		{[]string{bal, dr}, m},          // a new recipient: stored for it only
		{[]string{dr}, m + "other\r\n"}, // same Message-ID, other content
		{[]string{dr}, noID},
		{[]string{dr}, noID},
	} {
		if got := send(c, from, tc.rcpts, tc.body, nil, nil); got != "ok" {
			t.Fatalf("transaction %d: %s", i, got)
		}
	}
	waitFor(t, "b's queue to empty", func() bool { return len(b.q.IDs()) == 0 })
	if n, want := b.count(dr), 4; n != want {
		t.Errorf("%s has %d messages, want %d", dr, n, want)
	}
	if n := b.count(bal); n != 1 {
		t.Errorf("%s has %d messages, want 1", bal, n)
	}
	// Audited: two redeliveries (the second and the third transactions, one recipient each).
	b.audit.Close()
	raw, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	var redelivered []audit.Record
	for _, line := range strings.Split(string(raw), "\n") {
		var r audit.Record
		if json.Unmarshal([]byte(line), &r) == nil && r.Event == audit.EventRedelivered {
			redelivered = append(redelivered, r)
		}
	}
	if len(redelivered) != 2 || redelivered[0].Code != "250 2.0.0" || redelivered[0].MsgID == "" ||
		len(redelivered[1].Rcpts) != 1 || redelivered[1].Rcpts[0] != dr {
		t.Errorf("redelivered records: %+v", redelivered)
	}
}

// A BAL's software that lost the 250 of its submission sends the message again: each
// recipient still gets one copy; the same Message-ID with other content is another message.
func TestSubmissionRedelivery(t *testing.T) {
	a := newNode(t, "a.mssante.test", nil)
	dr := "dr@a.mssante.test"
	m := msg(a.bal, dr, "resubmitted")
	for i, body := range []string{m, m, m + "other\r\n"} {
		if got := submit(t, a, []string{dr}, body, nil); got != "ok" {
			t.Fatalf("submission %d: %s", i, got)
		}
	}
	waitFor(t, "a's queue to empty", func() bool { return len(a.q.IDs()) == 0 })
	if n, want := a.count(dr), 2; n != want {
		t.Errorf("%s has %d messages, want %d", dr, n, want)
	}
}
