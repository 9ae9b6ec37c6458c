package imapd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// TestExpungeLogResync: a session that stayed behind further than the store logs expunges
// (ExpungeLog 2) still hears, at its next command, of each message expunged meanwhile, in
// its own numbering, and of nothing else: it compares the folder's UIDs with its own.
func TestExpungeLogResync(t *testing.T) {
	ctx := context.Background()
	st, err := mailbox.OpenSQLite(ctx, t.TempDir(), &mailbox.Options{ExpungeLog: 2, WatchPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddBAL(ctx, &mailbox.BAL{Address: orgBAL, Type: mailbox.ORG}); err != nil {
		t.Fatal(err)
	}
	st.SetPassword(ctx, orgBAL, orgPW)
	srv, err := New(&Options{Store: st, InsecureAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	dial := func(h *imapclient.UnilateralDataHandler) *imapclient.Client {
		c, err := imapclient.DialInsecure(l.Addr().String(), &imapclient.Options{UnilateralDataHandler: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Login(orgBAL, orgPW).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	b := dial(nil)
	for i := range 5 {
		appendMsg(t, b, "INBOX", testMessage(i, ""))
	}
	var expunged []uint32 // written by a's reader during a's commands only
	a := dial(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) { expunged = append(expunged, seq) }})
	// b expunges UIDs 2 and 4, far apart in modseqs, with flag changes between
	expunge := func(uid imap.UID) {
		t.Helper()
		if err := b.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
			t.Fatal(err)
		}
	}
	expunge(2)
	for i := range 4 {
		op := imap.StoreFlagsAdd
		if i%2 == 1 {
			op = imap.StoreFlagsDel
		}
		if err := b.Store(imap.UIDSetNum(5), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	expunge(4)
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// UIDs 1 2 3 4 5: 2 is seq 2; then 1 3 4 5: 4 is seq 3
	if !slices.Equal(expunged, []uint32{2, 3}) {
		t.Fatalf("EXPUNGE responses %v, want [2 3]", expunged)
	}
	msgs, err := a.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || fmt.Sprint(uidsOfMsgs(msgs)) != "[1 3 5]" {
		t.Fatalf("FETCH 1:3 UID = %v, %v", uidsOfMsgs(msgs), err)
	}
}

func uidsOfMsgs(msgs []*imapclient.FetchMessageBuffer) []imap.UID {
	var out []imap.UID
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}
