package imapd

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// TestMessageContainsUndecodable: a part whose charset or transfer encoding go-message does
// not know is searched as it is, and does not end the search of the parts after it.
func TestMessageContainsUndecodable(t *testing.T) {
	const multipart = "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nBonjour\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-no-such-encoding\r\n\r\nCompte rendu\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nneedle00042\r\n--b--\r\n"
	tests := []struct {
		name, msg, needle string
		want              bool
	}{
		{"part after an unknown charset", multipart, "needle00042", true},
		{"part with an unknown charset", multipart, "bonjour", true},
		{"part with an unknown encoding", multipart, "compte rendu", true},
		{"absent", multipart, "absent00042", false},
		{"body with an unknown charset", "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nneedle00042\r\n", "needle00042", true},
		{"body with an unknown encoding", "Content-Transfer-Encoding: x-no-such-encoding\r\n\r\nneedle00042\r\n", "needle00042", true},
		{"header that does not parse", "not a header field\r\n\r\nneedle00042\r\n", "needle00042", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageContains([]byte(tt.msg), tt.needle, false); got != tt.want {
				t.Fatalf("messageContains(%q) = %v, want %v", tt.needle, got, tt.want)
			}
		})
	}
}

// countingStore counts the ways a store is asked for message content.
type countingStore struct {
	testStore
	opens atomic.Int32
	reads atomic.Int32
	read  atomic.Int32 // messages asked for through Read
}

func (s *countingStore) Open(ctx context.Context, mbox mailbox.MailboxID, uid uint32) (io.ReadSeekCloser, int64, error) {
	s.opens.Add(1)
	return s.testStore.Open(ctx, mbox, uid)
}

func (s *countingStore) Read(ctx context.Context, mbox mailbox.MailboxID, uids []uint32, fn func(uint32, io.ReaderAt, int64) error) error {
	s.reads.Add(1)
	s.read.Add(int32(len(uids)))
	return s.testStore.Read(ctx, mbox, uids, fn)
}

// TestSearchReadsContentOnce: SEARCH BODY and TEXT read the content of the messages that the
// index cannot rule out in one Store.Read walk, never message by message with Store.Open; the
// messages that flags, sizes or indexed headers rule out are not read at all.
func TestSearchReadsContentOnce(t *testing.T) {
	dir := t.TempDir()
	st, err := mailbox.OpenSQLite(context.Background(), filepath.Join(dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{testStore: st}
	e := newEnvOn(t, cs, dir, nil)
	c := e.dialApp(t, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 12; i++ {
		var flags []imap.Flag
		if i%3 == 0 {
			flags = []imap.Flag{imap.FlagFlagged}
		}
		appendMsg(t, c, "INBOX", testMessage(i, ""), flags...)
	}
	tests := []struct {
		name     string
		cr       imap.SearchCriteria
		want     string
		readMsgs int32
	}{
		{"BODY", imap.SearchCriteria{Body: []string{"numero 7"}}, "[7]", 12},
		{"TEXT", imap.SearchCriteria{Text: []string{"NUMERO 1"}}, "[1 10 11 12]", 12},
		{"FLAGGED BODY", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}, Body: []string{"numero"}}, "[3 6 9 12]", 4},
		{"HEADER and BODY", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "message 5"}},
			Body: []string{"numero 5"}}, "[5]", 1},
		{"OR BODY UID", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"numero 2"}}, {UID: []imap.UIDSet{imap.UIDSetNum(4)}}}}}, "[2 4]", 11},
		{"NOT BODY", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"numero 1"}}}}, "[2 3 4 5 6 7 8 9]", 12},
		{"no content", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, "[3 6 9 12]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, r, n := cs.opens.Load(), cs.reads.Load(), cs.read.Load()
			d, err := c.UIDSearch(&tt.cr, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(d.AllUIDs()); got != tt.want {
				t.Errorf("UIDs %s, want %s", got, tt.want)
			}
			if opens := cs.opens.Load() - o; opens != 0 {
				t.Errorf("%d Store.Open, want none", opens)
			}
			reads, msgs := cs.reads.Load()-r, cs.read.Load()-n
			if msgs != tt.readMsgs || (msgs > 0 && reads != 1) {
				t.Errorf("%d Store.Read for %d messages, want one for %d", reads, msgs, tt.readMsgs)
			}
		})
	}
}
