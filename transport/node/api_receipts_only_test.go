package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// TestAPIReceiptsOnly: with [api] receipts_only naming its BAL applicative, node b's API
// still follows the receipts of what it sends (a message to a BAL node a does not have reads
// failed from the DSN in b's store) but leaves the mail the BAL receives unread in the store
// for the DPI's own bal.Watch: the received list stays empty. Without it, the same message
// is listed.
func TestAPIReceiptsOnly(t *testing.T) {
	for _, receiptsOnly := range []bool{false, true} {
		t.Run(fmt.Sprint("receipts_only=", receiptsOnly), func(t *testing.T) {
			s := newSpace(t, "a.mssante.test", "b.mssante.test")
			a, b := s.ops[0], s.ops[1]
			a.extra = "[api]\nenabled = true\n"
			b.extra = "[api]\nenabled = true\n"
			if receiptsOnly {
				b.extra += fmt.Sprintf("receipts_only = [%q]\n", b.appBAL())
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			baseA, baseB := serveAPI(t, ctx, &wg, a), serveAPI(t, ctx, &wg, b)
			na, _ := s.start(t, ctx, a, nil)
			nb, _ := s.start(t, ctx, b, nil)
			bases := map[*node.Node]string{na: baseA, nb: baseB}
			call := func(o *operator, n *node.Node, method, path string, body []byte, out any) int {
				t.Helper()
				c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: s.clientTLS(o, o.app)}}
				req, _ := http.NewRequest(method, bases[n]+path, bytes.NewReader(body))
				if body != nil {
					req.Header.Set("Content-Type", "message/rfc822")
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if out != nil {
					json.NewDecoder(resp.Body).Decode(out)
				}
				return resp.StatusCode
			}
			raw := func(from, to, id string) []byte {
				return []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: essai\r\nMessage-ID: <" + id +
					">\r\nX-MSS-NIL: TEST0001\r\n\r\nbody\r\n")
			}
			status := func(o *operator, n *node.Node, id string) string {
				var st httpapi.StatusResponse
				call(o, n, "GET", "/bals/"+o.appBAL()+"/messages/"+id, nil, &st)
				if len(st.Recipients) != 1 {
					return ""
				}
				return st.Recipients[0].Status
			}

			var toB httpapi.SendResponse
			if st := call(a, na, "POST", "/bals/"+a.appBAL()+"/messages", raw(a.appBAL(), b.appBAL(), "letter@"+a.domain), &toB); st != http.StatusAccepted {
				t.Fatalf("send to b: %d %+v", st, toB)
			}
			waitUntil(t, "delivered to b", func() bool { return status(a, na, toB.MessageID) == "delivered" })
			var fromB httpapi.SendResponse
			if st := call(b, nb, "POST", "/bals/"+b.appBAL()+"/messages", raw(b.appBAL(), "nobody@"+a.domain, "lost@"+b.domain), &fromB); st != http.StatusAccepted {
				t.Fatalf("send from b: %d %+v", st, fromB)
			}
			waitUntil(t, "failed from the DSN", func() bool { return status(b, nb, fromB.MessageID) == "failed" })

			// The letter stays unread in both modes (listed, not yet handled, by default);
			// the DSN that comes back to b is flagged handled. b's API reads its INBOX in
			// order: once it has flagged the DSN, it has passed the letter.
			inbox := func() (total, unread int) {
				info, err := nb.Store.Mailbox(ctx, b.appBAL(), mailbox.Inbox)
				if err != nil {
					t.Fatal(err)
				}
				msgs, err := nb.Store.Messages(ctx, info.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs {
					if len(m.Flags) == 0 {
						unread++
					}
				}
				return len(msgs), unread
			}
			waitUntil(t, "the DSN flagged, the letter unread", func() bool { n, u := inbox(); return n == 2 && u == 1 })
			var list httpapi.ReceivedList
			if st := call(b, nb, "GET", "/bals/"+b.appBAL()+"/received", nil, &list); st != http.StatusOK {
				t.Fatalf("list: %d", st)
			}
			if want := map[bool]int{false: 1, true: 0}[receiptsOnly]; len(list.Messages) != want {
				t.Fatalf("%d messages listed, want %d", len(list.Messages), want)
			}
		})
	}
}
