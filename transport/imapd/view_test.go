package imapd

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/mailbox"
)

const pySelect = `
import imaplib, ssl, sys
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
typ, _ = m.authenticate("EXTERNAL", lambda challenge: b"")
assert typ == "OK", typ
typ, data = m.select("INBOX")
assert typ == "OK", data
flags = m.response("FLAGS")[1][0]
uidnext = m.response("UIDNEXT")[1][0]
print(data[0].decode(), m.response("RECENT")[1][0].decode(), m.response("UNSEEN")[1][0].decode(), uidnext.decode(), b"$Urgent" in flags)
for uid, set in [(True, "2:4"), (True, "6:100,1"), (True, "100:*"), (False, "4:*,1:2,2"), (False, "9:12")]:
	typ, data = m.uid("FETCH", set, "(UID)") if uid else m.fetch(set, "(UID)")
	assert typ == "OK", data
	got = []
	for d in data:
		if d is None:
			continue
		seq, _, rest = d.decode().partition(" (UID ")
		got.append(seq + ":" + rest.rstrip(")"))
	print(" ".join(got))
m.logout()
`

// TestSelectFromCounters checks what SELECT answers now that it reads the folder's counters,
// UID list and keyword list instead of every message entry: EXISTS, RECENT, UNSEEN (the
// sequence number of the first unseen message, with an expunged UID before it), the FLAGS
// keywords, UIDNEXT; then that message sets with gaps, overlaps and "*" name the right
// messages (both read by Python's imaplib), and that a STORE which changes nothing still
// echoes the flags.
func TestSelectFromCounters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 1; i <= 6; i++ {
		var flags []string
		if i <= 3 {
			flags = []string{`\Seen`}
		}
		if i == 5 {
			flags = []string{"$Urgent"}
		}
		if _, err := e.store.Append(ctx, appBAL, "INBOX", strings.NewReader(testMessage(i, "")), &mailbox.AppendOptions{Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := e.store.Mailbox(ctx, appBAL, "INBOX")
	// UIDs 1 to 3 seen, 2 expunged, 4 seen: the first unseen is UID 5, sequence number 4
	e.store.StoreFlags(ctx, mb.ID, []uint32{2}, mailbox.FlagsAdd, []string{`\Deleted`})
	e.store.StoreFlags(ctx, mb.ID, []uint32{4}, mailbox.FlagsAdd, []string{`\Seen`})
	if _, err := e.store.Expunge(ctx, mb.ID, nil); err != nil {
		t.Fatal(err)
	}
	// SELECT as Python's imaplib sees it (imapclient does not parse UNSEEN and RECENT)
	py := testenv.Require(t, "python3")
	cert, key, ca := e.writeClientFiles(t)
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	out, err := exec.Command(py, "-c", pySelect, "localhost", port, ca, cert, key).Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr(err))
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := []string{
		"5 5 4 7 True",    // EXISTS RECENT UNSEEN UIDNEXT, $Urgent in FLAGS
		"2:3 3:4",         // UID FETCH 2:4: UID 2 is gone
		"1:1 5:6",         // UID FETCH 6:100,1
		"5:6",             // UID FETCH 100:* names the last message
		"1:1 2:3 4:5 5:6", // FETCH 4:*,1:2,2: each message once, in order
		"",                // FETCH 9:12: none
	}
	if len(lines) != len(want) {
		t.Fatalf("python printed %q", out)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("python line %d = %q, want %q", i, lines[i], want[i])
		}
	}
	c := e.dialApp(t, nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 5 || sel.UIDNext != 7 || !hasFlag(sel.Flags, "$Urgent") {
		t.Fatalf("SELECT = %+v, %v", sel, err)
	}
	// \Seen is already on message 1: nothing changes, the flags are echoed all the same
	got, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].SeqNum != 1 || !hasFlag(got[0].Flags, imap.FlagSeen) {
		t.Fatalf("STORE echo = %+v", got)
	}
}
