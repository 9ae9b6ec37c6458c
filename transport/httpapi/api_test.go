package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/apitest"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

func letter(t *testing.T, info *sandbox.Info, to string, mdn bool) []byte {
	t.Helper()
	cdaXML, err := os.ReadFile(info.SampleCDA)
	if err != nil {
		t.Fatal(err)
	}
	pdf, err := os.ReadFile(info.SamplePDF)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}, MDN: mdn})
	return b
}

// A DPI sends a lettre de liaison through the HTTP API; the practice's software lists it with
// its documents and INS through its own API and marks it handled; the MDN comes back and the
// sender's status and webhooks say processed. Every exchange matches the OpenAPI document.
func TestAPISendFollowHandle(t *testing.T) {
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	hop, cab := startAPI(t, info, from, nil), startAPI(t, info, to, nil)

	var sent httpapi.SendResponse
	resp := hop.call(t, hop.client, "POST", "/v1/bals/"+from+"/messages", "application/json", letter(t, info, to, true),
		map[string]string{"Idempotency-Key": "letter-1"}, &sent)
	if resp.StatusCode != http.StatusAccepted || sent.MessageID == "" || len(sent.Recipients) != 1 || sent.Recipients[0].Status != "accepted" {
		t.Fatalf("send: %d %+v", resp.StatusCode, sent)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/bals/"+from+"/messages/"+sent.MessageID {
		t.Errorf("Location %q", loc)
	}
	hop.hooks.wait(t, webhook.EventAccepted, sent.MessageID)

	// The receiving side lists it, with its documents and the patient's INS.
	var list httpapi.ReceivedList
	deadline := time.Now().Add(90 * time.Second)
	for len(list.Messages) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		cab.call(t, cab.client, "GET", "/v1/bals/"+to+"/received?state=pending", "", nil, nil, &list)
	}
	if len(list.Messages) != 1 || list.Messages[0].MessageID != sent.MessageID {
		t.Fatalf("received list: %+v", list)
	}
	cab.hooks.wait(t, webhook.EventReceived, sent.MessageID)
	var got httpapi.Received
	cab.call(t, cab.client, "GET", "/v1/bals/"+to+"/received/"+sent.MessageID, "", nil, nil, &got)
	if got.INS == nil || got.INS.Value == "" || len(got.Documents) == 0 || len(got.Documents[0].Content) == 0 || !got.MDNRequested {
		t.Fatalf("received message: INS %v, %d documents, mdn %v", got.INS, len(got.Documents), got.MDNRequested)
	}
	if !strings.Contains(string(got.Documents[0].Content), "ClinicalDocument") {
		t.Errorf("document content is not the CDA")
	}

	var marked httpapi.Received
	if resp := cab.call(t, cab.client, "POST", "/v1/bals/"+to+"/received/"+sent.MessageID+"/handled", "application/json",
		[]byte(`{}`), nil, &marked); resp.StatusCode != http.StatusAccepted || marked.State != httpapi.StateHandled {
		t.Fatalf("handled: %d %+v", resp.StatusCode, marked)
	}
	cab.hooks.wait(t, webhook.EventHandled, sent.MessageID)

	// The MDN reaches the sender: its status, and its webhooks.
	hop.hooks.wait(t, webhook.EventProcessed, sent.MessageID)
	var st httpapi.StatusResponse
	hop.call(t, hop.client, "GET", "/v1/bals/"+from+"/messages/"+sent.MessageID, "", nil, nil, &st)
	if len(st.Recipients) != 1 || st.Recipients[0].Status != "processed" || !st.Recipients[0].Final {
		t.Fatalf("status: %+v", st)
	}
	events := hop.hooks.wait(t, webhook.EventProcessed, sent.MessageID)
	var order []string
	for _, e := range events {
		if e.MessageID == sent.MessageID {
			order = append(order, e.Type)
		}
	}
	if order[0] != webhook.EventAccepted || order[len(order)-1] != webhook.EventProcessed {
		t.Errorf("events out of order: %v", order)
	}
	var dl httpapi.DeliveriesResponse
	hop.call(t, hop.client, "GET", "/v1/bals/"+from+"/webhook-deliveries?limit=10", "", nil, nil, &dl)
	if len(dl.Deliveries) == 0 || dl.Deliveries[0].Outcome != "delivered" {
		t.Errorf("delivery log: %+v", dl)
	}
	var after httpapi.Received
	cab.call(t, cab.client, "GET", "/v1/bals/"+to+"/received/"+sent.MessageID, "", nil, nil, &after)
	if after.State != httpapi.StateAnswered {
		t.Errorf("state after the MDN: %s", after.State)
	}
}

// The same Idempotency-Key sends once: the second request gets the first answer, and the
// recipient's mailbox holds one copy; the key with another body is refused.
func TestAPIIdempotencyKey(t *testing.T) {
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	hop := startAPI(t, info, from, nil)
	body := letter(t, info, to, false)
	var first, second httpapi.SendResponse
	hop.call(t, hop.client, "POST", "/v1/bals/"+from+"/messages", "application/json", body, map[string]string{"Idempotency-Key": "k-1"}, &first)
	resp := hop.call(t, hop.client, "POST", "/v1/bals/"+from+"/messages", "application/json", body, map[string]string{"Idempotency-Key": "k-1"}, &second)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Idempotent-Replayed") != "true" || second.MessageID != first.MessageID {
		t.Fatalf("replay: %d %v %+v / %+v", resp.StatusCode, resp.Header, second, first)
	}
	var p httpapi.Problem
	other := letter(t, info, "marie.durand@"+sandbox.Cabinet, false)
	if resp := hop.call(t, hop.client, "POST", "/v1/bals/"+from+"/messages", "application/json", other,
		map[string]string{"Idempotency-Key": "k-1"}, &p); resp.StatusCode != http.StatusUnprocessableEntity || !strings.HasSuffix(p.Type, httpapi.ProblemIdempotencyMismatch) {
		t.Fatalf("reused key: %d %+v", resp.StatusCode, p)
	}
	time.Sleep(2 * time.Second) // let a duplicate, if any, arrive
	msgs, err := info.Messages(t.Context(), to)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		if strings.Contains(string(m), first.MessageID) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d copies of %s in the mailbox, want 1", n, first.MessageID)
	}
}

// Each refusal has its status and problem type, and the requests that break the OpenAPI
// document are refused by its validator too.
func TestAPIRefusals(t *testing.T) {
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	hop := startAPI(t, info, from, &apiOptions{maxBody: 1 << 20})
	good := letter(t, info, to, false)
	cdaXML, _ := os.ReadFile(info.SampleCDA)
	pdf, _ := os.ReadFile(info.SamplePDF)
	brokenCDA := regexp.MustCompile(`<realmCode code="FR"\s*(/>|></realmCode>)`).ReplaceAllString(string(cdaXML), "")
	if brokenCDA == string(cdaXML) {
		t.Fatal("the sample CDA has no realmCode to remove")
	}
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	msgs := "/v1/bals/" + from + "/messages"
	for _, tc := range []struct {
		name    string
		client  *http.Client
		method  string
		path    string
		ctype   string
		body    []byte
		invalid bool // against the OpenAPI document
		status  int
		problem string
	}{
		{"malformed JSON", hop.client, "POST", msgs, "application/json", []byte(`{"to": [`), true, 400, httpapi.ProblemMalformedJSON},
		{"trailing data", hop.client, "POST", msgs, "application/json", append(append([]byte{}, good...), []byte(` {}`)...), true, 400, httpapi.ProblemMalformedJSON},
		{"unknown field", hop.client, "POST", msgs, "application/json", []byte(`{"to":["` + to + `"],"subject":"x"}`), true, 400, httpapi.ProblemUnknownField},
		{"wrong type", hop.client, "POST", msgs, "application/json", []byte(`{"to":"` + to + `"}`), true, 400, httpapi.ProblemInvalidRequest},
		{"not base64", hop.client, "POST", msgs, "application/json", []byte(`{"to":["` + to + `"],"xdm":"%%%"}`), false, 400, httpapi.ProblemInvalidRequest},
		{"no document", hop.client, "POST", msgs, "application/json", []byte(`{"to":["` + to + `"]}`), false, 422, httpapi.ProblemInvalidRequest},
		{"bad address", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{"not an address"}, Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}}), false, 422, httpapi.ProblemInvalidRequest},
		{"oversized body", hop.client, "POST", msgs, "application/json", append([]byte(`{"text":"`), make([]byte, 2<<20)...), true, 413, httpapi.ProblemTooLarge},
		{"media type", hop.client, "POST", msgs, "text/plain", []byte("hello"), true, 415, httpapi.ProblemUnsupportedMedia},
		{"not a CDA", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: []byte("<html/>"), PDF: pdf}}}), false, 422, httpapi.ProblemInvalidDocument},
		{"CDA rule", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: []byte(brokenCDA), PDF: pdf}}}), false, 422, httpapi.ProblemInvalidDocument},
		{"XDM", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{to}, XDM: []byte("PK\x03\x04 not a zip")}), false, 422, httpapi.ProblemInvalidDocument},
		{"INS mismatch", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{to}, INS: "299999999999999", Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}}), false, 422, httpapi.ProblemInvalidDocument},
		{"off the whitelist", hop.client, "POST", msgs, "application/json", enc(&httpapi.SendRequest{To: []string{"someone@example.org"}, Documents: []httpapi.SendDocument{{CDA: cdaXML, PDF: pdf}}}), false, 422, httpapi.ProblemNotWhitelisted},
		{"bad DSN", hop.client, "POST", msgs, "application/json", []byte(`{"to":["` + to + `"],"dsn":{"notify":["ALWAYS"]}}`), true, 422, httpapi.ProblemInvalidRequest},
		{"raw off the whitelist", hop.client, "POST", msgs, "message/rfc822", []byte("From: " + from + "\r\nTo: x@example.org\r\nSubject: t\r\nX-MSS-NIL: DEV000000\r\n\r\nbody\r\n"), false, 422, httpapi.ProblemNotWhitelisted},
		{"raw without X-MSS-NIL", hop.client, "POST", msgs, "message/rfc822", []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: t\r\n\r\nbody\r\n"), false, 422, httpapi.ProblemInvalidMessage},
		{"another's BAL", hop.client, "POST", "/v1/bals/" + to + "/messages", "application/json", good, false, 403, httpapi.ProblemForbiddenBAL},
		{"another's status", hop.client, "GET", "/v1/bals/" + to + "/messages/x@y", "", nil, false, 403, httpapi.ProblemForbiddenBAL},
		{"no certificate", hop.anon, "POST", msgs, "application/json", good, false, 401, httpapi.ProblemUnauthenticated},
		{"unknown message", hop.client, "GET", msgs + "/nothing@here", "", nil, false, 404, httpapi.ProblemNotFound},
		{"unknown path", hop.client, "GET", "/v2/else", "", nil, true, 404, httpapi.ProblemNotFound},
		{"method", hop.client, "DELETE", msgs, "", nil, true, 405, httpapi.ProblemMethod},
		{"limit", hop.client, "GET", "/v1/bals/" + from + "/received?limit=0", "", nil, true, 400, httpapi.ProblemInvalidRequest},
		{"mdn code", hop.client, "POST", "/v1/bals/" + from + "/received/x@y/handled", "application/json", []byte(`{"mdn_code":42}`), false, 422, httpapi.ProblemInvalidRequest},
		{"handled unknown", hop.client, "POST", "/v1/bals/" + from + "/received/x@y/handled", "application/json", []byte(`{"mdn_code":902}`), false, 404, httpapi.ProblemNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.invalid {
				hdr[apitest.SchemaInvalid] = "1"
			}
			var p httpapi.Problem
			resp := hop.call(t, tc.client, tc.method, tc.path, tc.ctype, tc.body, hdr, &p)
			if resp.StatusCode != tc.status || p.Status != tc.status || p.Type != "urn:mssante-go:problem:"+tc.problem {
				t.Fatalf("%d %+v, want %d %s", resp.StatusCode, p, tc.status, tc.problem)
			}
			if strings.Contains(fmt.Sprint(p), "299999999999999") {
				t.Errorf("the problem document repeats the INS")
			}
		})
	}
}

// The served description is the embedded one.
func TestAPIOpenAPIServed(t *testing.T) {
	info := startSandbox(t)
	hop := startAPI(t, info, "dpi@"+sandbox.Hopital, nil)
	resp, err := hop.anon.Get(hop.url + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
