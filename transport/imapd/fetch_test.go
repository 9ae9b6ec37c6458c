package imapd

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// TestFetchReadsContentOnce: a FETCH that needs the content of many messages reads them in one
// Store.Read walk, never message by message with Store.Open, and answers in order with the
// messages as appended; a FETCH of one message opens it once; a FETCH of index items only
// reads no content. On both stores.
func TestFetchReadsContentOnce(t *testing.T) {
	stores := map[string]func(t *testing.T, dir string) testStore{
		"sqlite": func(t *testing.T, dir string) testStore {
			st, err := mailbox.OpenSQLite(context.Background(), filepath.Join(dir, "store"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"postgres": func(t *testing.T, _ string) testStore {
			pg := peers.StartPostgres(t, nil)
			st, err := mailbox.OpenPostgres(context.Background(), pg.DSN(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cs := &countingStore{testStore: open(t, dir)}
			e := newEnvOn(t, cs, dir, nil)
			c := e.dialApp(t, nil)
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			const n = 12
			for i := 1; i <= n; i++ {
				appendMsg(t, c, "INBOX", testMessage(i, ""))
			}
			from := func(seq uint32) imap.SeqSet {
				var s imap.SeqSet
				s.AddRange(seq, 0)
				return s
			}
			whole := &imap.FetchItemBodySection{Peek: true}
			text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
			tests := []struct {
				name         string
				set          imap.SeqSet
				opts         imap.FetchOptions
				first        int // sequence number of the first message answered
				opens, reads int32
			}{
				{"1:* BODY.PEEK[]", from(1), imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{whole}}, 1, 0, 1},
				{"2:* BODYSTRUCTURE BODY.PEEK[TEXT]", from(2),
					imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{text}}, 2, 0, 1},
				{"5 BODY.PEEK[]", imap.SeqSetNum(5), imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{whole}}, 5, 1, 0},
				{"1:* FLAGS UID", from(1), imap.FetchOptions{Flags: true, UID: true}, 1, 0, 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					o, r := cs.opens.Load(), cs.reads.Load()
					msgs, err := c.Fetch(tt.set, &tt.opts).Collect()
					if err != nil {
						t.Fatal(err)
					}
					last := n
					if tt.set.String() == "5" {
						last = 5
					}
					if len(msgs) != last-tt.first+1 {
						t.Fatalf("%d responses, want %d", len(msgs), last-tt.first+1)
					}
					for k, m := range msgs {
						seq := tt.first + k
						if m.SeqNum != uint32(seq) {
							t.Fatalf("response %d is for message %d, want %d", k, m.SeqNum, seq)
						}
						if b := m.FindBodySection(whole); tt.opts.BodySection != nil && tt.opts.BodySection[0] == whole && string(b) != testMessage(seq, "") {
							t.Errorf("message %d: BODY[] %q", seq, b)
						}
						if tt.opts.BodyStructure != nil {
							if _, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok {
								t.Errorf("message %d: BODYSTRUCTURE %#v", seq, m.BodyStructure)
							}
							if b := m.FindBodySection(text); len(b) == 0 || !strings.Contains(string(b), fmt.Sprintf("corps numero %d\r\n", seq)) {
								t.Errorf("message %d: BODY[TEXT] %q", seq, b)
							}
						}
					}
					if opens, reads := cs.opens.Load()-o, cs.reads.Load()-r; opens != tt.opens || reads != tt.reads {
						t.Errorf("%d Store.Open and %d Store.Read, want %d and %d", opens, reads, tt.opens, tt.reads)
					}
				})
			}
		})
	}
}
