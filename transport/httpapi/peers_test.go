package httpapi_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/httpapi"
)

// curl, with the BAL applicative's client certificate, sends a lettre de liaison and reads its
// status; without the certificate it gets 401; with another BAL's, 403.
func TestAPICurlClientCertificate(t *testing.T) {
	curl := testenv.Require(t, "curl")
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	hop := startAPI(t, info, from, nil)
	body := filepath.Join(t.TempDir(), "letter.json")
	if err := os.WriteFile(body, letter(t, info, to, false), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(hop.hostport)
	base := "https://" + hop.serverName + ":" + port
	run := func(withCert bool, args ...string) (int, []byte) {
		t.Helper()
		a := []string{"-sS", "--max-time", "120", "--cacert", hop.caFile, "--resolve", hop.serverName + ":" + port + ":127.0.0.1",
			"-o", "-", "-w", "\n%{http_code}"}
		if withCert {
			a = append(a, "--cert", hop.certFile, "--key", hop.keyFile)
		}
		out, err := exec.Command(curl, append(a, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		i := strings.LastIndexByte(string(out), '\n')
		var code int
		json.Unmarshal(out[i+1:], &code)
		return code, out[:i]
	}
	code, out := run(true, "-H", "Content-Type: application/json", "-H", "Idempotency-Key: curl-1", "--data-binary", "@"+body,
		base+"/v1/bals/"+from+"/messages")
	var sent httpapi.SendResponse
	if code != 202 || json.Unmarshal(out, &sent) != nil || sent.MessageID == "" {
		t.Fatalf("send: %d %s", code, out)
	}
	code, out = run(true, base+"/v1/bals/"+from+"/messages/"+sent.MessageID)
	var st httpapi.StatusResponse
	if code != 200 || json.Unmarshal(out, &st) != nil || len(st.Recipients) != 1 {
		t.Fatalf("status: %d %s", code, out)
	}
	if code, out = run(false, base+"/v1/bals/"+from+"/messages/"+sent.MessageID); code != 401 {
		t.Fatalf("without certificate: %d %s", code, out)
	}
	if code, out = run(true, base+"/v1/bals/"+to+"/received"); code != 403 {
		t.Fatalf("another BAL: %d %s", code, out)
	}
}

// @redocly/cli, installed by scripts/install-peers.sh at a pinned version, finds neither error
// nor warning in the OpenAPI document.
func TestAPIRedoclyLint(t *testing.T) {
	redocly := testenv.Require(t, "redocly")
	f := filepath.Join(t.TempDir(), "openapi.yaml")
	if err := os.WriteFile(f, httpapi.OpenAPI(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(redocly, "lint", "--format=stylish", f)
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil || regexp.MustCompile(`You have \d+ warning`).Match(out) {
		t.Fatalf("redocly lint: %v\n%s", err, out)
	}
}
