package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestServeAPIFollow runs "mssante serve" with the mailbox store and [api], and two BALs
// applicatives driven with curl and their own certificates: a lettre de liaison from dpi to
// labo is listed by labo's API with its documents and INS; marking it handled sends the MDN,
// after which dpi's status reads processed and dpi's webhook gets message.processed. labo
// cannot read it as dpi's, and an unknown message is 404.
func TestServeAPIFollow(t *testing.T) {
	curl := testenv.Require(t, "curl")
	dir := t.TempDir()
	f := newServeFixture(t, dir)
	certs := map[string][2]string{}
	dns := map[string]string{}
	for _, name := range []string{"dpi", "labo"} {
		l, err := f.pki.Org(name+"@"+ourDomain, nil)
		if err != nil {
			t.Fatal(err)
		}
		crt, key, err := l.WriteFiles(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		certs[name], dns[name] = [2]string{crt, key}, transport.SubjectDN(l.Cert)
	}
	secret := "0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret+"\n"), 0o600)
	hooks := &hookRecorder{secret: []byte(secret)}
	hs := httptest.NewServer(hooks)
	defer hs.Close()
	port := testenv.FreePort(t)
	cfg, _ := os.ReadFile(f.config)
	conf := strings.Replace(string(cfg), "[local]\nmaildir = \""+f.maildir+"\"\n", fmt.Sprintf(`[[bal]]
address = "dpi@%[1]s"
cert_dn = %[2]q
[[bal]]
address = "labo@%[1]s"
cert_dn = %[3]q
[mailbox]
dir = %[4]q
[api]
enabled = true
listen = "127.0.0.1:%[5]d"
webhook_allow_insecure = true
webhook_min_backoff = "100ms"
webhook_max_backoff = "1s"
[[api.webhook]]
bal = "dpi@%[1]s"
url = "%[6]s/"
secret_file = %[7]q
`, ourDomain, dns["dpi"], dns["labo"], filepath.Join(dir, "mailbox"), port, hs.URL, filepath.Join(dir, "hook.secret")), 1)
	if conf == string(cfg) {
		t.Fatal("fixture configuration changed: no [local] section to replace")
	}
	os.WriteFile(f.config, []byte(conf), 0o600)

	f.serveUntilCleanup(t)
	os.WriteFile(filepath.Join(dir, "ca-bundle.pem"), append(f.pki.RootPEM(), f.pki.IntermediatePEM()...), 0o644)
	v := apitest.New(t)
	callerOf := func(name string) *apiCaller {
		return &apiCaller{curl: curl, base: fmt.Sprintf("https://localhost:%d/v1", port), ca: filepath.Join(dir, "ca-bundle.pem"),
			cert: certs[name][0], key: certs[name][1], v: v}
	}
	dpi, labo := callerOf("dpi"), callerOf("labo")
	waitUntil(t, "API listening", 20*time.Second, func() bool {
		return exec.Command(curl, "-s", "-o", "/dev/null", "--cacert", dpi.ca, dpi.base+"/openapi.yaml").Run() == nil
	})

	d, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	if err := cda.Encode(&doc, d); err != nil {
		t.Fatal(err)
	}
	from, to := "dpi@"+ourDomain, "labo@"+ourDomain
	letter, _ := json.Marshal(&httpapi.SendRequest{To: []string{to}, MDN: true,
		Documents: []httpapi.SendDocument{{CDA: doc.Bytes(), PDF: samplepdf.Page("Lettre de liaison (exemple fictif)")}}})
	msgs := "/bals/" + from + "/messages"
	var sent httpapi.SendResponse
	if st := dpi.call(t, "POST", msgs, "application/json", letter, &sent); st != http.StatusAccepted {
		t.Fatalf("send: %d %+v", st, sent)
	}

	recv := "/bals/" + to + "/received"
	var list httpapi.ReceivedList
	waitUntil(t, "listed by labo's API", 20*time.Second, func() bool {
		labo.call(t, "GET", recv, "", nil, &list)
		return len(list.Messages) == 1
	})
	m := list.Messages[0]
	if m.MessageID != sent.MessageID || m.INS == nil || len(m.Documents) != 1 || m.State != httpapi.StatePending {
		t.Fatalf("received: %+v", m)
	}
	var p httpapi.Problem
	if st := labo.call(t, "GET", "/bals/"+from+"/received/"+m.MessageID, "", nil, &p); st != http.StatusForbidden {
		t.Fatalf("labo reading dpi's received message: %d %+v", st, p)
	}
	if st := labo.call(t, "POST", recv+"/unknown@"+ourDomain+"/handled", "", nil, &p); st != http.StatusNotFound {
		t.Fatalf("unknown message handled: %d %+v", st, p)
	}
	var handled httpapi.Received
	if st := labo.call(t, "POST", recv+"/"+m.MessageID+"/handled", "application/json", []byte(`{}`), &handled); st != http.StatusAccepted ||
		handled.State != httpapi.StateAnswered {
		t.Fatalf("handled: %d %+v", st, handled)
	}
	var status httpapi.StatusResponse
	waitUntil(t, "status processed", 20*time.Second, func() bool {
		dpi.call(t, "GET", msgs+"/"+sent.MessageID, "", nil, &status)
		return len(status.Recipients) == 1 && status.Recipients[0].Status == "processed" && status.Recipients[0].Final
	})
	waitUntil(t, "webhook message.processed", 20*time.Second, func() bool {
		return hooks.has(webhook.EventProcessed, sent.MessageID)
	})
}
