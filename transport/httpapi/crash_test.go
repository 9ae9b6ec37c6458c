package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/httpapi"
)

// A crash after the message was submitted but before the answer was recorded: the record
// holds the Message-ID chosen, bal's outbox holds the submission. The request sent again with
// the same key completes it with that Message-ID, and the recipient is reported already_sent:
// nothing is sent twice.
func TestAPIIdempotentAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	o, err := bal.OptionsFromSandbox(sb.Info.Dir, from)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := httpapi.New(&httpapi.Options{BALs: map[string]*bal.Client{from: c}, StateDir: t.TempDir(),
		Auth: httpapi.AuthenticatorFunc(func(*http.Request) (*httpapi.Caller, error) { return &httpapi.Caller{BALs: []string{from}}, nil })})
	if err != nil {
		t.Fatal(err)
	}
	cdaXML, _ := os.ReadFile(sb.Info.SampleCDA)
	pdf, _ := os.ReadFile(sb.Info.SamplePDF)
	body, _ := json.Marshal(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}})

	// Before the crash: the record was written, then the message submitted.
	const key, id = "crash-1", "0123456789abcdef0123456789abcdef@" + sandbox.Hopital
	if err := h.SaveIdempotencyRecord(from, key, id, "application/json", body); err != nil {
		t.Fatal(err)
	}
	msg, p := h.BuildMessage(from, body)
	if p != nil {
		t.Fatal(p)
	}
	msg.MessageID = id
	if _, err := c.Send(ctx, msg, nil); err != nil {
		t.Fatal(err)
	}

	// After the restart: the client sends its request again.
	req := httptest.NewRequest("POST", "/v1/bals/"+from+"/messages", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var res httpapi.SendResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != http.StatusAccepted {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if res.MessageID != id || len(res.Recipients) != 1 || res.Recipients[0].Status != "already_sent" {
		t.Fatalf("answer %+v, want %s already_sent", res, id)
	}
	// The copy sent before the crash reaches the cabinet; a second would show within a second
	// more.
	n := 0
	var settled time.Time
	for deadline := time.Now().Add(time.Minute); (settled.IsZero() || time.Since(settled) < time.Second) && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		msgs, err := sb.Info.Messages(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		n = 0
		for _, m := range msgs {
			if bytes.Contains(m, []byte(id)) {
				n++
			}
		}
		if n > 0 && settled.IsZero() {
			settled = time.Now()
		}
	}
	if n != 1 {
		t.Fatalf("%d copies in the mailbox, want 1", n)
	}
}
