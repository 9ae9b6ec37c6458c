package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/apitest"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/webhook"
)

// hookLog is a webhook receiver that checks signatures and keeps the events.
type hookLog struct {
	secret []byte
	mu     sync.Mutex
	events []webhook.Event
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(h.secret, r.Header.Get("Webhook-Signature"), body, time.Now(), 0); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var e webhook.Event
	if json.Unmarshal(body, &e) == nil {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}
}

func (h *hookLog) has(typ, id, status string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Type == typ && e.MessageID == id && (status == "" || e.Status == status) {
			return true
		}
	}
	return false
}

// TestAPIFollowAcrossNodes: a lettre de liaison sent from node a's API to the BAL applicative
// of node b is listed by b's API with its documents and INS; marking it handled on b sends
// the MDN, which a's API reads from a's mailbox store: the status reads processed and a's
// webhook gets message.processed. A message to an unknown BAL of b reads failed, and the DSN
// that comes back to a is flagged handled as bal.Watch flags it. Every exchange is checked
// against the OpenAPI document.
func TestAPIFollowAcrossNodes(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	secret := "0123456789abcdef0123456789abcdef"
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	hooks := &hookLog{secret: []byte(secret)}
	hs := httptest.NewServer(hooks)
	defer hs.Close()
	a.extra = fmt.Sprintf("[api]\nenabled = true\nwebhook_allow_insecure = true\nwebhook_min_backoff = \"100ms\"\n"+
		"webhook_max_backoff = \"1s\"\n[[api.webhook]]\nbal = %q\nurl = %q\nsecret_file = %q\n", a.appBAL(), hs.URL+"/", secretFile)
	b.extra = "[api]\nenabled = true\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	baseA, baseB := serveAPI(t, ctx, &wg, a), serveAPI(t, ctx, &wg, b)
	na, _ := s.start(t, ctx, a, nil)
	nb, _ := s.start(t, ctx, b, nil)
	bases := map[*node.Node]string{na: baseA, nb: baseB}
	v := apitest.New(t)
	type caller struct {
		c    *http.Client
		base string
	}
	callerOf := func(o *operator, n *node.Node) *caller {
		return &caller{base: bases[n], c: &http.Client{Timeout: time.Minute,
			Transport: &apitest.Transport{V: v, Base: &http.Transport{TLSClientConfig: s.clientTLS(o, o.app)}}}}
	}
	ca, cb := callerOf(a, na), callerOf(b, nb)
	call := func(c *caller, method, path string, body []byte, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}

	d, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	if err := cda.Encode(&doc, d); err != nil {
		t.Fatal(err)
	}
	docs := []httpapi.SendDocument{{CDA: doc.Bytes(), PDF: samplepdf.Page("Lettre de liaison (exemple fictif)")}}
	letter, _ := json.Marshal(&httpapi.SendRequest{To: []string{b.appBAL()}, MDN: true, Documents: docs})
	sent := "/bals/" + a.appBAL() + "/messages"
	var res httpapi.SendResponse
	if st := call(ca, "POST", sent, letter, &res); st != http.StatusAccepted {
		t.Fatalf("send: %d %+v", st, res)
	}
	status := func(id string) string {
		var st httpapi.StatusResponse
		call(ca, "GET", sent+"/"+id, nil, &st)
		if len(st.Recipients) != 1 {
			return ""
		}
		return st.Recipients[0].Status
	}
	waitUntil(t, "delivered on node b", func() bool { return status(res.MessageID) == "delivered" })

	recv := "/bals/" + b.appBAL() + "/received"
	var list httpapi.ReceivedList
	waitUntil(t, "listed by b's API", func() bool {
		call(cb, "GET", recv, nil, &list)
		return len(list.Messages) == 1
	})
	m := list.Messages[0]
	if m.MessageID != res.MessageID || m.State != httpapi.StatePending || !m.MDNRequested || m.INS == nil ||
		len(m.Documents) != 1 || m.Documents[0].Code == "" {
		t.Fatalf("received: %+v", m)
	}
	var one httpapi.Received
	if st := call(cb, "GET", recv+"/"+m.MessageID, nil, &one); st != http.StatusOK || len(one.Documents) != 1 ||
		!bytes.Equal(one.Documents[0].Content, doc.Bytes()) {
		t.Fatalf("received message: %d, %d documents", st, len(one.Documents))
	}

	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"another BAL's message", "GET", "/bals/other@" + b.domain + "/received/" + m.MessageID, http.StatusForbidden},
		{"another BAL's message handled", "POST", "/bals/other@" + b.domain + "/received/" + m.MessageID + "/handled", http.StatusForbidden},
		{"unknown id", "GET", recv + "/nope@" + a.domain, http.StatusNotFound},
		{"unknown id handled", "POST", recv + "/nope@" + a.domain + "/handled", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p httpapi.Problem
			if st := call(cb, tc.method, tc.path, nil, &p); st != tc.status {
				t.Fatalf("%d %+v, want %d", st, p, tc.status)
			}
		})
	}
	// A caller of node a cannot read b's BAL on b.
	var p httpapi.Problem
	if st := call(&caller{c: ca.c, base: cb.base}, "GET", recv, nil, &p); st != http.StatusForbidden && st != http.StatusUnauthorized {
		t.Fatalf("a's certificate on b: %d %+v", st, p)
	}

	var handled httpapi.Received
	if st := call(cb, "POST", recv+"/"+m.MessageID+"/handled", []byte(`{}`), &handled); st != http.StatusAccepted ||
		handled.State != httpapi.StateAnswered {
		t.Fatalf("handled: %d %+v", st, handled)
	}
	waitUntil(t, "status processed on a", func() bool { return status(res.MessageID) == "processed" })
	waitUntil(t, "webhook message.processed on a", func() bool { return hooks.has(webhook.EventProcessed, res.MessageID, "processed") })
	if st := call(cb, "POST", recv+"/"+m.MessageID+"/handled", []byte(`{"mdn_code":901}`), &p); st != http.StatusConflict {
		t.Fatalf("handled again with another code: %d %+v", st, p)
	}
	flagged := func(n *node.Node, addr, flag string) int {
		info, err := n.Store.Mailbox(ctx, addr, mailbox.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := n.Store.Messages(ctx, info.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, m := range msgs {
			if m.HasFlag(flag) {
				k++
			}
		}
		return k
	}
	if k := flagged(nb, b.appBAL(), "$MDNSent"); k != 1 {
		t.Fatalf("%d messages of b's BAL flagged $MDNSent, want 1", k)
	}

	// A BAL b does not have: failed, and the DSN that comes back is read and flagged.
	unknown, _ := json.Marshal(&httpapi.SendRequest{To: []string{"nobody@" + b.domain}, Documents: docs})
	var res2 httpapi.SendResponse
	if st := call(ca, "POST", sent, unknown, &res2); st != http.StatusAccepted {
		t.Fatalf("send to an unknown BAL: %d %+v", st, res2)
	}
	waitUntil(t, "status failed", func() bool { return status(res2.MessageID) == "failed" })
	waitUntil(t, "webhook message.failed on a", func() bool { return hooks.has(webhook.EventFailed, res2.MessageID, "") })

	// A DSN that comes later about a delivered message (b's operator bounced it after
	// accepting it) moves it to failed; one about a message the API did not send is left
	// in the mailbox, unflagged, for its sender.
	var res3 httpapi.SendResponse
	if st := call(ca, "POST", sent, letter, &res3); st != http.StatusAccepted {
		t.Fatalf("send: %d %+v", st, res3)
	}
	waitUntil(t, "second letter delivered", func() bool { return status(res3.MessageID) == "delivered" })
	bounce := func(id string) []byte {
		var buf bytes.Buffer
		_, err := mssante.BuildDSN(&buf, &mssante.DSNEnvelope{From: mssante.Address{Addr: "mailer-daemon@" + b.domain},
			To: mssante.Address{Addr: a.appBAL()}, Original: []byte("Message-ID: <" + id + ">\r\n\r\n"), HeadersOnly: true},
			&mssante.DSN{ReportingMTA: "mx." + b.domain, Recipients: []mssante.DSNRecipient{{FinalRecipient: b.appBAL(),
				Action: mssante.ActionFailed, Status: "5.2.2", DiagnosticCode: "smtp; 552 5.2.2 mailbox full"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	foreign, err := na.Store.Append(ctx, a.appBAL(), mailbox.Inbox, bytes.NewReader(bounce("sent-by-a-dpi@"+a.domain)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := na.Store.Append(ctx, a.appBAL(), mailbox.Inbox, bytes.NewReader(bounce(res3.MessageID)), nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "failed by the DSN", func() bool { return status(res3.MessageID) == "failed" })
	waitUntil(t, "webhook message.failed for the DSN", func() bool { return hooks.has(webhook.EventFailed, res3.MessageID, "failed") })
	var st3 httpapi.StatusResponse
	if call(ca, "GET", sent+"/"+res3.MessageID, nil, &st3); st3.Recipients[0].Code != 552 || st3.Recipients[0].Detail != "5.2.2" {
		t.Fatalf("status after the DSN: %+v", st3.Recipients[0])
	}
	if msgs, err := na.Store.MessagesByUID(ctx, foreign.Mailbox, []uint32{foreign.UID}); err != nil || len(msgs) != 1 ||
		len(msgs[0].Flags) != 0 {
		t.Fatalf("the DSN for another sender: %+v %v", msgs, err)
	}
	waitUntil(t, "receipts on a flagged handled", func() bool { return flagged(na, a.appBAL(), bal.FlagHandled) >= 3 })
}
