package responder

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/mailbox/local"
)

const self = "reponse.automatique@test.mssante.fr"

type sent struct {
	from, to string
	msg      []byte
}

type outbox struct {
	mu   sync.Mutex
	msgs []sent
	fail error
}

func (o *outbox) send(ctx context.Context, from, to string, msg []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.msgs = append(o.msgs, sent{from, to, msg})
	return nil
}

func setup(t *testing.T) (*Responder, *outbox, *mailbox.SQLite) {
	t.Helper()
	ctx := context.Background()
	st, err := mailbox.OpenSQLite(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.AddBAL(ctx, &mailbox.BAL{Address: self, Type: mailbox.ORG})
	st.AddBAL(ctx, &mailbox.BAL{Address: "dpi@hopital.test.mssante.fr", Type: mailbox.APP, CertDN: "CN=dpi"})
	ob := &outbox{}
	// struct{ Store } hides every other mailbox.Store method: the responder must work
	// with the five it declares.
	r, err := New(&Options{Address: self, Store: struct{ Store }{st}, Send: ob.send, Next: local.New(st),
		Now: func() time.Time { return time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return r, ob, st
}

func TestReplies(t *testing.T) {
	base := "Return-Path: <dr.martin@hopital-a.test.mssante.fr>\r\nFrom: Dr Martin <dr.martin@hopital-a.test.mssante.fr>\r\nTo: " + self + "\r\nSubject: Test =?utf-8?q?r=C3=A9ception?=\r\nMessage-ID: <abc@hopital-a>\r\nReferences: <first@x>\r\n"
	tests := []struct {
		name  string
		extra string // header lines added
		strip string // header line removed
		reply bool
	}{
		{"plain message", "", "", true},
		{"Auto-Submitted: no", "Auto-Submitted: no\r\n", "", true},
		{"auto-replied", "Auto-Submitted: auto-replied\r\n", "", false},
		{"auto-generated", "Auto-Submitted: auto-generated\r\n", "", false},
		{"DSN", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", "", false},
		{"MDN", "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n", "", false},
		{"no Return-Path", "", "Return-Path: <dr.martin@hopital-a.test.mssante.fr>\r\n", true}, // falls back to From
		{"bulk", "Precedence: bulk\r\n", "", false},
		{"list", "List-Id: <l.example>\r\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := setup(t)
			h := strings.Replace(base, tt.strip, "", 1)
			if tt.strip == "" {
				h = base
			}
			reply, to, err := r.Reply(strings.NewReader(h + tt.extra + "\r\nbody\r\n"))
			if tt.reply != (err == nil) {
				t.Fatalf("reply = %v, err %v", reply != nil, err)
			}
			if err != nil {
				if !errors.Is(err, ErrNotDue) {
					t.Fatal(err)
				}
				return
			}
			s := string(reply)
			for _, want := range []string{"Auto-Submitted: auto-replied\r\n", "In-Reply-To: <abc@hopital-a>\r\n", "References: <first@x> <abc@hopital-a>\r\n", "To: <dr.martin@hopital-a.test.mssante.fr>\r\n", "From: <" + self + ">\r\n"} {
				if !strings.Contains(s, want) {
					t.Errorf("reply lacks %q:\n%s", want, s)
				}
			}
			if to != "dr.martin@hopital-a.test.mssante.fr" {
				t.Errorf("to = %q", to)
			}
		})
	}
	r, _, _ := setup(t)
	for _, from := range []string{"<>", "<" + self + ">", "<MAILER-DAEMON@hopital-a.test.mssante.fr>"} {
		msg := "Return-Path: " + from + "\r\nFrom: x@y.fr\r\nSubject: s\r\n\r\nb\r\n"
		if _, _, err := r.Reply(strings.NewReader(msg)); !errors.Is(err, ErrNotDue) {
			t.Errorf("Return-Path %s: %v", from, err)
		}
	}
}

func TestDeliverAnswersOnce(t *testing.T) {
	ctx := context.Background()
	r, ob, st := setup(t)
	msg := "Return-Path: <a@hopital-a.test.mssante.fr>\r\nFrom: a@hopital-a.test.mssante.fr\r\nSubject: t\r\nMessage-ID: <m1@a>\r\n\r\nb\r\n"
	for i := 0; i < 3; i++ { // the queue retries the same delivery: one reply
		if err := r.Deliver(ctx, self, "Q1/"+self, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if len(ob.msgs) != 1 || ob.msgs[0].from != "" || ob.msgs[0].to != "a@hopital-a.test.mssante.fr" {
		t.Fatalf("sent %+v", ob.msgs)
	}
	// the reply itself, delivered back to the responder (a loop): no answer
	if err := r.Deliver(ctx, self, "Q2/"+self, bytes.NewReader(append([]byte("Return-Path: <>\r\n"), ob.msgs[0].msg...))); err != nil {
		t.Fatal(err)
	}
	// a send failure is retried by the queue and answered then
	ob.fail = errors.New("queue full")
	msg2 := strings.Replace(msg, "<m1@a>", "<m2@a>", 1)
	if err := r.Deliver(ctx, self, "Q3/"+self, strings.NewReader(msg2)); err == nil {
		t.Fatal("send failure not reported")
	}
	ob.fail = nil
	if err := r.Deliver(ctx, self, "Q3/"+self, strings.NewReader(msg2)); err != nil {
		t.Fatal(err)
	}
	if len(ob.msgs) != 2 || !strings.Contains(string(ob.msgs[1].msg), "In-Reply-To: <m2@a>") {
		t.Fatalf("sent %d replies", len(ob.msgs))
	}
	mb, _ := st.Mailbox(ctx, self, mailbox.Inbox)
	if mb.Messages != 3 {
		t.Fatalf("responder INBOX has %d messages, want 3", mb.Messages)
	}
	// other addresses go to the next delivery
	if err := r.Deliver(ctx, "dpi@hopital.test.mssante.fr", "Q4/dpi", strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := r.Lookup(ctx, "nobody@hopital.test.mssante.fr"); !errors.Is(err, connector.ErrNoMailbox) {
		t.Fatal(err)
	}
	if len(ob.msgs) != 2 {
		t.Fatal("replied to a message for another BAL")
	}
}
