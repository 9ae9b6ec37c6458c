package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// TestDevAPICurlAsPrinted: "mssante dev" serves the HTTP API of dpi@hopital on the port of
// sandbox.json and prints two curl lines; run as printed with sh and the BAL's certificate,
// the first sends the sample lettre de liaison (202, a Message-ID, marie.durand accepted), the
// second reads its status, which the receipts the API follows bring to delivered. With
// --webhook, the events reach the receiver signed with the printed secret. The practice's BAL
// applicative is served too, and each certificate opens its own BAL only.
func TestDevAPICurlAsPrinted(t *testing.T) {
	testenv.Require(t, "curl")
	sh := testenv.Require(t, "sh")
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	var (
		mu     sync.Mutex
		bodies [][]byte
		sigs   []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get("Webhook-Signature"))
		mu.Unlock()
	}))
	defer recv.Close()
	state := filepath.Join(t.TempDir(), "state")
	d := startDev(t, "--sandbox", state, "--webhook", recv.URL+"/hooks")
	info, err := sandbox.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if info.API == nil || info.API.BALs[0] != "dpi@"+sandbox.Hopital || !strings.Contains(d.out.String(), "HTTP API     "+info.API.URL) {
		t.Fatalf("sandbox.json api %+v; output:\n%s\n%s", info.API, d.out, d.errb)
	}
	_, rest, ok := strings.Cut(d.out.String(), "Send the sample lettre de liaison with the HTTP API, then read its status:\n")
	if !ok {
		t.Fatalf("no curl lines:\n%s", d.out)
	}
	lines := strings.SplitN(rest, "\n", 3)
	send, status := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	if !strings.HasPrefix(send, "curl ") || !strings.HasPrefix(status, "curl ") {
		t.Fatalf("printed lines %q %q", send, status)
	}
	cmd := exec.Command(sh, "-c", send)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var sent httpapi.SendResponse
	if err := cmd.Run(); err != nil || strings.TrimSpace(stderr.String()) != "HTTP 202" ||
		json.Unmarshal([]byte(stdout.String()), &sent) != nil || sent.MessageID == "" {
		t.Fatalf("send as printed: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	to := "marie.durand@" + sandbox.Cabinet
	if len(sent.Recipients) != 1 || sent.Recipients[0].Address != to || sent.Recipients[0].Status != "accepted" {
		t.Fatalf("send answer %+v", sent)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := exec.Command(sh, "-c", status).Output()
		var st httpapi.StatusResponse
		if err != nil || json.Unmarshal(out, &st) != nil || st.MessageID != sent.MessageID || len(st.Recipients) != 1 ||
			st.Recipients[0].Address != to {
			t.Fatalf("status as printed: %v\n%s", err, out)
		}
		if st.Recipients[0].Status == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status still %q", st.Recipients[0].Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The practice's BAL applicative is served too, to its own certificate only.
	code := func(addr, path string) string {
		b := info.BAL(addr)
		out, err := exec.Command(sh, "-c", "curl -sS -o /dev/null -w '%{http_code}' --cert "+b.CertFile+" --key "+b.KeyFile+
			" --cacert "+info.CAFile+" "+info.API.URL+path).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		return string(out)
	}
	cab := "logiciel@" + sandbox.Cabinet
	if c := code(cab, "/bals/"+cab+"/received"); c != "200" {
		t.Errorf("the practice's BAL on its own list: %s", c)
	}
	if c := code(info.API.BALs[0], "/bals/"+cab+"/received"); c != "403" {
		t.Errorf("the hospital's certificate on the practice's BAL: %s", c)
	}

	_, rest, _ = strings.Cut(d.out.String(), "signed (header Webhook-Signature, HMAC-SHA256) with secret ")
	secret := strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0])
	if len(secret) < 32 {
		t.Fatalf("no webhook secret printed:\n%s", d.out)
	}
	for want := []string{webhook.EventAccepted, webhook.EventDelivered}; len(want) > 0; {
		mu.Lock()
		got := map[string]bool{}
		for i, b := range bodies {
			var e webhook.Event
			if err := webhook.Verify([]byte(secret), sigs[i], b, time.Now(), 0); err != nil || json.Unmarshal(b, &e) != nil {
				mu.Unlock()
				t.Fatalf("webhook: %v\n%s", err, b)
			}
			if e.MessageID == sent.MessageID && e.BAL == info.API.BALs[0] {
				got[e.Type] = true
			}
		}
		mu.Unlock()
		for len(want) > 0 && got[want[0]] {
			want = want[1:]
		}
		if len(want) > 0 && time.Now().After(deadline) {
			t.Fatalf("no %s webhook for %s (%d received)", want[0], sent.MessageID, len(bodies))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
