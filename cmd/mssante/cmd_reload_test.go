package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// notifySocket is the service manager's end of $NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	path string
	c    *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, path: path, c: c}
}

// next returns the next datagram, which must start with prefix.
func (s *notifySocket) next(prefix string) string {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 4096)
	n, err := s.c.Read(b)
	if err != nil {
		s.t.Fatalf("waiting for %q: %v", prefix, err)
	}
	if !strings.HasPrefix(string(b[:n]), prefix) {
		s.t.Fatalf("notification %q, want %q first", b[:n], prefix)
	}
	return string(b[:n])
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mssante serve as systemd runs it (a child process with $NOTIFY_SOCKET) and mssante reload
// as ExecReload= runs it: READY=1 once listening (with what is not ready), RELOADING=1 then
// READY=1 around each reload, the outcome as the exit status of mssante reload, changed
// routes applied and other changes named, a failed reload reported and the previous state
// kept, /readyz 503 then 200, STOPPING=1 at the end.
func TestServeNotifyAndReload(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	entries := []whitelist.Entry{
		{Domain: ourDomain, OperatorDNs: []string{transport.SubjectDN(f.server.Cert)}},
		{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(f.peer.Cert)}},
	}
	f.writeWhitelist(t, time.Now().Add(-whitelist.DefaultMaxAge-time.Hour), entries)
	ns := newNotifySocket(t)

	if code, _, stderr := runCmd(t, "reload", "--config", f.config); code != 1 || !strings.Contains(stderr, "no \"mssante serve\" is running on the spool") {
		t.Errorf("reload without serve: exit %d %q", code, stderr)
	}

	var logs testenv.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "MSSANTE_SERVE_HELPER="+f.config, "NOTIFY_SOCKET="+ns.path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ready := ns.next("READY=1\n")
	if !strings.Contains(ready, "STATUS=listening; not ready: whitelist: the list held was generated ") {
		t.Errorf("first notification %q", ready)
	}
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", f.metrics)
	if code, body := httpGet(t, readyz); code != 503 || !strings.HasPrefix(body, "whitelist: ") {
		t.Errorf("/readyz with an old list: %d %q", code, body)
	}

	// A fresh list and a reload: ready.
	f.writeWhitelist(t, time.Now(), entries)
	code, out, stderr := runCmd(t, "reload", "--config", f.config)
	if code != 0 || out != fmt.Sprintf("process %d reloaded\n", cmd.Process.Pid) {
		t.Errorf("reload: exit %d %q %q", code, out, stderr)
	}
	ns.next("RELOADING=1\nMONOTONIC_USEC=")
	if got := ns.next("READY=1\n"); got != "READY=1\nSTATUS=reloaded" {
		t.Errorf("after reload: %q", got)
	}
	if code, body := httpGet(t, readyz); code != 200 || body != "ready\n" {
		t.Errorf("/readyz after reload: %d %q", code, body)
	}

	// Changed routes are applied, other settings are named.
	orig, _ := os.ReadFile(f.config)
	os.WriteFile(f.config, append(orig, "[delivery]\nroutes = { \"a.mssante.test\" = \"127.0.0.1:1\" }\n[limits]\nmax_recipients = 7\n"...), 0o600)
	code, out, stderr = runCmd(t, "reload", "--config", f.config)
	if want := "reloaded; applied delivery.routes; restart needed for: limits.max_recipients"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("reload with changes: exit %d %q %q, want %q", code, out, stderr, want)
	}
	ns.next("RELOADING=1\n")
	ns.next("READY=1\nSTATUS=reloaded; applied delivery.routes; restart needed for: limits.max_recipients")
	waitUntil(t, "restart-needed log line", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "restart needed for: limits.max_recipients")
	})

	// A file that does not load is refused before the node is disturbed.
	os.WriteFile(f.config, append(orig, "[limits\n"...), 0o600)
	if code, _, stderr := runCmd(t, "reload", "--config", f.config); code != 1 || !strings.Contains(stderr, "nothing reloaded") {
		t.Errorf("reload of a broken file: exit %d %q", code, stderr)
	}
	// A key that does not load fails in the node, which keeps its certificate and says why.
	os.WriteFile(f.config, orig, 0o600)
	key := filepath.Join(f.dir, "server.key.pem")
	keyPEM, _ := os.ReadFile(key)
	os.WriteFile(key, []byte("garbage"), 0o600)
	code, _, stderr = runCmd(t, "reload", "--config", f.config)
	if code != 1 || !strings.Contains(stderr, "reload failed, previous configuration kept: node: certificate") {
		t.Errorf("reload with a broken key: exit %d %q", code, stderr)
	}
	ns.next("RELOADING=1\n")
	ns.next("READY=1\nSTATUS=reload failed, previous configuration kept: node: certificate")
	os.WriteFile(key, keyPEM, 0o600)
	c, err := f.relayClient()
	if err != nil {
		t.Fatalf("relay after a failed reload: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("relay after a failed reload: %v", err)
	}
	c.Close()

	// A plain SIGHUP (the kill -HUP of older units) reloads too.
	cmd.Process.Signal(syscall.SIGHUP)
	ns.next("RELOADING=1\n")
	ns.next("READY=1\nSTATUS=reloaded")

	cmd.Process.Signal(syscall.SIGTERM)
	ns.next("STOPPING=1\n")
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
	}
}
