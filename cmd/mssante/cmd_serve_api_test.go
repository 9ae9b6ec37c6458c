package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/apitest"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// apiCaller is curl with a BAL's client certificate against the API of "mssante serve"; every
// exchange is checked against the OpenAPI document.
type apiCaller struct {
	curl, base, ca, cert, key string
	v                         *apitest.Validator
}

// call runs curl and returns the status and body; out, when set, receives the JSON answer.
func (c *apiCaller) call(t *testing.T, method, path, ctype string, body []byte, out any) int {
	t.Helper()
	args := []string{"-sS", "--http1.1", "-i", "-X", method, "--cacert", c.ca}
	if c.cert != "" {
		args = append(args, "--cert", c.cert, "--key", c.key)
	}
	if ctype != "" {
		args = append(args, "-H", "Content-Type: "+ctype)
	}
	if body != nil {
		f := filepath.Join(t.TempDir(), "body")
		os.WriteFile(f, body, 0o600)
		args = append(args, "--data-binary", "@"+f)
	}
	raw, err := exec.Command(c.curl, append(args, c.base+path)...).Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v", method, path, err)
	}
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	if err != nil {
		t.Fatalf("curl %s %s: %v\n%s", method, path, err, raw)
	}
	rb, _ := io.ReadAll(resp.Body)
	c.v.Check(req, body, resp, rb, false)
	if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("%s %s → %d without a problem document", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("%s %s → %d: %v: %s", method, path, resp.StatusCode, err, rb)
		}
	}
	return resp.StatusCode
}

// hookRecorder is a webhook receiver that checks signatures and keeps the events.
type hookRecorder struct {
	secret []byte
	mu     sync.Mutex
	events []webhook.Event
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

func (h *hookRecorder) has(typ, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Type == typ && e.MessageID == id {
			return true
		}
	}
	return false
}

// TestServeAPI runs "mssante serve" with [api] and drives the API with curl and a BAL
// applicative's certificate: a lettre de liaison is sent and its status read until delivered,
// with webhooks for accepted and delivered; another BAL, a recipient off the whitelist, a bad
// CDA and no certificate are refused with problem documents.
func TestServeAPI(t *testing.T) {
	curl := testenv.Require(t, "curl")
	dir := t.TempDir()
	f := newServeFixture(t, dir)
	dpi, err := f.pki.Org("dpi@"+ourDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := dpi.WriteFiles(dir, "dpi")
	if err != nil {
		t.Fatal(err)
	}
	secret := "0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret+"\n"), 0o600)
	hooks := &hookRecorder{secret: []byte(secret)}
	hs := httptest.NewServer(hooks)
	defer hs.Close()
	port := testenv.FreePort(t)
	extra := fmt.Sprintf(`
[[bal]]
address = "dpi@%[1]s"
cert_dn = "%[2]s"
[api]
enabled = true
listen = "127.0.0.1:%[3]d"
webhook_allow_insecure = true
webhook_min_backoff = "100ms"
webhook_max_backoff = "1s"
[[api.webhook]]
bal = "dpi@%[1]s"
url = "%[4]s/"
secret_file = "%[5]s"
`, ourDomain, transport.SubjectDN(dpi.Cert), port, hs.URL, filepath.Join(dir, "hook.secret"))
	cfg, _ := os.ReadFile(f.config)
	os.WriteFile(f.config, append(cfg, extra...), 0o600)

	f.serveUntilCleanup(t)
	os.WriteFile(filepath.Join(dir, "ca-bundle.pem"), append(f.pki.RootPEM(), f.pki.IntermediatePEM()...), 0o644)
	c := &apiCaller{curl: curl, base: fmt.Sprintf("https://localhost:%d/v1", port), ca: filepath.Join(dir, "ca-bundle.pem"),
		cert: crt, key: key, v: apitest.New(t)}
	waitUntil(t, "API listening", 20*time.Second, func() bool {
		return exec.Command(curl, "-s", "-o", "/dev/null", "--cacert", c.ca, c.base+"/openapi.yaml").Run() == nil
	})

	d, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	if err := cda.Encode(&doc, d); err != nil {
		t.Fatal(err)
	}
	pdf := samplepdf.Page("Lettre de liaison (exemple fictif)")
	letter := func(to ...string) []byte {
		b, _ := json.Marshal(&httpapi.SendRequest{To: to, Documents: []httpapi.SendDocument{{CDA: doc.Bytes(), PDF: pdf}}})
		return b
	}
	from, to := "dpi@"+ourDomain, "dr@"+ourDomain
	msgs := "/bals/" + from + "/messages"

	var sent httpapi.SendResponse
	if st := c.call(t, "POST", msgs, "application/json", letter(to), &sent); st != http.StatusAccepted {
		t.Fatalf("send: %d %+v", st, sent)
	}
	if sent.MessageID == "" || len(sent.Recipients) != 1 || sent.Recipients[0].Status != "accepted" {
		t.Fatalf("send: %+v", sent)
	}
	var status httpapi.StatusResponse
	waitUntil(t, "status delivered", 20*time.Second, func() bool {
		c.call(t, "GET", msgs+"/"+sent.MessageID, "", nil, &status)
		return len(status.Recipients) == 1 && status.Recipients[0].Status == "delivered" && status.Recipients[0].Final
	})
	waitUntil(t, "delivered to the Maildir", 20*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(f.maildir, to, "new"))
		return len(ents) == 1
	})
	waitUntil(t, "webhooks accepted and delivered", 20*time.Second, func() bool {
		return hooks.has(webhook.EventAccepted, sent.MessageID) && hooks.has(webhook.EventDelivered, sent.MessageID)
	})

	// A raw message sent twice (a client retrying after a lost answer) is queued once: the
	// second answer says already_sent.
	raw := []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: essai\r\nMessage-ID: <raw-1@" + ourDomain +
		">\r\nX-MSS-NIL: TEST0001\r\n\r\nbody\r\n")
	var first, again httpapi.SendResponse
	if st := c.call(t, "POST", msgs, "message/rfc822", raw, &first); st != http.StatusAccepted || first.Recipients[0].Status != "accepted" {
		t.Fatalf("raw: %d %+v", st, first)
	}
	if st := c.call(t, "POST", msgs, "message/rfc822", raw, &again); st != http.StatusAccepted || again.Recipients[0].Status != "already_sent" {
		t.Fatalf("raw again: %d %+v", st, again)
	}
	waitUntil(t, "raw message delivered", 20*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(f.maildir, to, "new"))
		return len(ents) == 2
	})

	bad := bytes.Replace(doc.Bytes(), []byte("<title>"), []byte("<titre>"), 1)
	bad = bytes.Replace(bad, []byte("</title>"), []byte("</titre>"), 1)
	badCDA, _ := json.Marshal(&httpapi.SendRequest{To: []string{to}, Documents: []httpapi.SendDocument{{CDA: bad, PDF: pdf}}})
	for _, tc := range []struct {
		name, path string
		body       []byte
		anonymous  bool
		status     int
		problem    string
	}{
		{"another BAL", "/bals/" + to + "/messages", letter(to), false, 403, httpapi.ProblemForbiddenBAL},
		{"off the whitelist", msgs, letter("someone@example.org"), false, 422, httpapi.ProblemAllRefused},
		{"bad CDA", msgs, badCDA, false, 422, httpapi.ProblemInvalidDocument},
		{"no certificate", msgs, letter(to), true, 401, httpapi.ProblemUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			if tc.anonymous {
				cc.cert = ""
			}
			var p httpapi.Problem
			if st := cc.call(t, "POST", tc.path, "application/json", tc.body, &p); st != tc.status ||
				p.Type != "urn:mssante-go:problem:"+tc.problem {
				t.Fatalf("%d %+v, want %d %s", st, p, tc.status, tc.problem)
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // a second copy or a refused message would be delivered by now
	ents, _ := os.ReadDir(filepath.Join(f.maildir, to, "new"))
	if len(ents) != 2 {
		t.Fatalf("%d messages delivered, want 2", len(ents))
	}
}
