package httpapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/transport/connector"
)

// FuzzDecodeSendRequest feeds the JSON decoder and the checks that run before any document is
// opened: a clear problem or a request, never a panic.
func FuzzDecodeSendRequest(f *testing.F) {
	f.Add([]byte(`{"to":["a@b.fr"],"documents":[{"cda":"PD94","pdf":"JVBE"}],"mdn":true,"dsn":{"notify":["SUCCESS"],"ret":"HDRS"}}`))
	f.Add([]byte(`{"to":"x"}`))
	f.Add([]byte(`{"to":[],"xdm":"%%"}`))
	f.Add([]byte(`{"unknown":1}`))
	f.Add([]byte(`{"to":["a@b.fr"]} {}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req SendRequest
		if p := decodeStrict(b, &req); p != nil {
			if p.Status != http.StatusBadRequest {
				t.Fatalf("status %d", p.Status)
			}
			return
		}
		sendOptions(req.DSN)
	})
}

// acceptAll is a submission server that takes every recipient, for the fuzzing of what
// ConnectorSender reads before it submits.
type acceptAll struct{}

func (acceptAll) Submit(_ context.Context, sub *connector.Submission) (*connector.SubmitResult, error) {
	res := &connector.SubmitResult{QueueID: "q"}
	for _, to := range sub.To {
		res.Recipients = append(res.Recipients, connector.SubmitRecipient{Address: to, Accepted: true, Code: 250})
	}
	return res, nil
}

// FuzzConnectorSendRaw feeds ConnectorSender.SendRaw a raw message: an error wrapping
// bal.ErrMessage or a result, never a panic.
func FuzzConnectorSendRaw(f *testing.F) {
	f.Add([]byte("From: <a@b.fr>\r\nTo: <c@d.fr>\r\nMessage-ID: <1@b.fr>\r\n\r\nbody\r\n"))
	f.Add([]byte("To: a, b,, <c@d\r\nCc: =?utf-8?q?x?= <e@f>\r\nMessage-ID: <>\r\n\r\n"))
	f.Add([]byte("Message-ID: <x@y>\r\nTo: \"quoted\"@d.fr\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("Subject: " + strings.Repeat("x", 5000)))
	s, err := NewConnectorSender(&ConnectorOptions{Submitter: acceptAll{}, Serves: func(string) bool { return true }, StateDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	c := &Caller{BALs: []string{"a@b.fr"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := s.SendRaw(context.Background(), c, "a@b.fr", bytes.NewReader(b), nil)
		if err != nil && !errors.Is(err, bal.ErrMessage) && !errors.Is(err, bal.ErrAllRejected) {
			t.Fatalf("%v", err)
		}
		if err == nil && (res == nil || res.MessageID == "") {
			t.Fatalf("no result")
		}
	})
}
