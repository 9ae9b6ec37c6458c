package imapd

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// TestPostgresTwoNodes runs the IMAP server as node B of two connector nodes sharing one
// PostgreSQL store; node A is a second store on the same database, as another node's local
// delivery would be. Python's imaplib reads over node B what node A delivered (SELECT,
// SEARCH, FETCH, STORE); then a session IDLE on node B, which never polls (IdlePoll 0), hears
// of a delivery and a flag change made on node A within one second each.
func TestPostgresTwoNodes(t *testing.T) {
	py := testenv.Require(t, "python3")
	pg := peers.StartPostgres(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() *mailbox.Postgres {
		s, err := mailbox.OpenPostgres(ctx, pg.DSN(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	nodeB := open()
	e := newEnvOn(t, nodeB, t.TempDir(), func(o *Options) { o.IdlePoll = 0 })
	nodeA := open()

	nodeA.Append(ctx, appBAL, "INBOX", strings.NewReader(testMessage(1, "")), nil)
	msg := testMessage(2, " python")
	nodeA.Append(ctx, appBAL, "INBOX", strings.NewReader(msg), nil)
	cert, key, ca := e.writeClientFiles(t)
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	out, err := exec.Command(py, "-c", pyClient, "localhost", port, ca, cert, key).Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr(err))
	}
	if !bytes.Equal(out, []byte(msg)) {
		t.Fatalf("python read %q", out)
	}
	if mb, _ := nodeA.Mailbox(ctx, appBAL, "INBOX"); mb.Unseen != 1 {
		t.Fatalf("node A sees unseen = %d after the python STORE on node B", mb.Unseen)
	}

	exists := make(chan uint32, 10)
	flags := make(chan []imap.Flag, 10)
	c := e.dialApp(t, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			if b, err := m.Collect(); err == nil && b.Flags != nil {
				flags <- b.Flags
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := nodeA.Append(ctx, appBAL, "INBOX", strings.NewReader(testMessage(3, "")), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 3 {
			t.Fatalf("EXISTS %d, want 3", n)
		}
		t.Logf("IDLE on node B: EXISTS %v after the delivery on node A", time.Since(start).Round(time.Microsecond))
	case <-time.After(time.Second):
		t.Fatal("IDLE on node B did not hear of node A's delivery within one second")
	}
	mb, _ := nodeA.Mailbox(ctx, appBAL, "INBOX")
	start = time.Now()
	if _, err := nodeA.StoreFlags(ctx, mb.ID, []uint32{3}, mailbox.FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-flags:
		if !strings.Contains(strings.ToLower(strings.Join(flagStrings(f), " ")), `\flagged`) {
			t.Fatalf("FETCH FLAGS %v", f)
		}
		t.Logf("IDLE on node B: FETCH FLAGS %v after the change on node A", time.Since(start).Round(time.Microsecond))
	case <-time.After(time.Second):
		t.Fatal("IDLE on node B did not hear of node A's flag change within one second")
	}
	idle.Close()
	idle.Wait()
}

func flagStrings(f []imap.Flag) []string {
	out := make([]string, len(f))
	for i, x := range f {
		out[i] = string(x)
	}
	return out
}
