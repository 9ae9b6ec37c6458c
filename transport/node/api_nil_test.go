package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport/httpapi"
)

// TestSubmissionRequireNIL: with [submission] require_nil, a raw message without a valid
// X-MSS-NIL (missing, or not one token) is refused 554 5.6.0 over SMTP and 422 with an
// invalid-message problem over the HTTP API, which goes through the same session; one that
// carries it goes.
func TestSubmissionRequireNIL(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	a.extra = "[submission]\nrequire_nil = true\n[api]\nenabled = true\n"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	base := serveAPI(t, ctx, &wg, a)
	s.start(t, ctx, a, nil)
	s.start(t, ctx, b, nil)
	to := "dpi@" + b.domain
	raw := func(id, nilHeader string) string {
		return "From: <" + a.appBAL() + ">\r\nTo: <" + to + ">\r\nSubject: essai\r\nMessage-ID: <" + id + "@" + a.domain +
			">\r\n" + nilHeader + "\r\nbody\r\n"
	}
	smtpSend := func(msg string) error {
		c, err := smtp.DialStartTLS(a.addr("submission"), s.clientTLS(a, a.app))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewExternalClient("")); err != nil {
			t.Fatal(err)
		}
		return c.SendMail(a.appBAL(), []string{to}, strings.NewReader(msg))
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: s.clientTLS(a, a.app)}}
	apiSend := func(msg string) (int, *httpapi.Problem) {
		req, _ := http.NewRequest("POST", base+"/bals/"+a.appBAL()+"/messages", strings.NewReader(msg))
		req.Header.Set("Content-Type", "message/rfc822")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		var p httpapi.Problem
		json.Unmarshal(body.Bytes(), &p)
		return resp.StatusCode, &p
	}
	for i, bad := range []string{"", "X-MSS-NIL:  \r\n", "X-MSS-NIL: DPI 1.0\r\n", "X-MSS-NIL: a,b\r\n"} {
		var se *smtp.SMTPError
		if err := smtpSend(raw("smtp-bad"+string(rune('0'+i)), bad)); !errors.As(err, &se) || se.Code != 554 ||
			se.EnhancedCode != (smtp.EnhancedCode{5, 6, 0}) || !strings.Contains(se.Message, "X-MSS-NIL") {
			t.Errorf("SMTP, %q: %v, want 554 5.6.0 naming X-MSS-NIL", bad, err)
		}
		if st, p := apiSend(raw("api-bad"+string(rune('0'+i)), bad)); st != http.StatusUnprocessableEntity ||
			!strings.HasSuffix(p.Type, ":"+httpapi.ProblemInvalidMessage) || !strings.Contains(p.Detail, "X-MSS-NIL") {
			t.Errorf("API, %q: %d %+v, want 422 invalid message naming X-MSS-NIL", bad, st, p)
		}
	}
	if err := smtpSend(raw("smtp-ok", "X-MSS-NIL: TEST0001\r\n")); err != nil {
		t.Errorf("SMTP with X-MSS-NIL: %v", err)
	}
	if st, p := apiSend(raw("api-ok", "X-MSS-NIL: TEST0001\r\n")); st != http.StatusAccepted {
		t.Errorf("API with X-MSS-NIL: %d %+v", st, p)
	}
}
