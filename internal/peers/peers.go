// Package peers starts the throw-away real servers the tests talk to: a Postfix
// (postfix -c DIR) and a Dovecot (dovecot -c FILE), each with its own folder, listening on
// free ports of 127.0.0.1, and stopped in t.Cleanup: Dovecot with client certificates and SASL
// EXTERNAL, Postfix with client certificates; a clamd; and a PostgreSQL cluster (initdb in a
// temporary folder, a Unix socket only).
//
// Both daemons run as root (their unprivileged processes as "postfix" and "mail"): without
// root the tests are skipped, or fail when MSSANTE_REQUIRE_PEERS=1.
package peers

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// requireRoot ends the test unless it runs as root: skipped, or failed when peers are
// required.
func requireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testenv.PeersRequired() {
		t.Fatalf("peers: the throw-away %s runs as root (MSSANTE_REQUIRE_PEERS=1)", what)
	}
	t.Skipf("peers: the throw-away %s runs as root", what)
}

// TempDir returns a new folder with a short path (Unix socket paths are limited to 108
// bytes, too short for t.TempDir under Postfix and Dovecot) that the unprivileged mail
// processes can traverse; it is removed in t.Cleanup.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// writePKI writes the PEM files a daemon reads into dir: server.crt.pem and server.key.pem
// for cert, and ca.pem (root and intermediate of p) for the client certificates it trusts.
func writePKI(t testing.TB, dir string, p *testpki.PKI, cert *testpki.Leaf) (crt, key, ca string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	crt, key, err := cert.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(dir, "ca.pem")
	WriteFile(t, ca, string(append(append([]byte{}, p.RootPEM()...), p.IntermediatePEM()...)))
	return crt, key, ca
}

// WriteFile writes data to path (mode 0644) or ends the test.
func WriteFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Chown gives path to owner ("user:group"), as the unprivileged processes of the daemons
// need, or ends the test.
func Chown(t testing.TB, owner, path string) {
	t.Helper()
	if out, err := exec.Command("chown", owner, path).CombinedOutput(); err != nil {
		t.Fatalf("peers: chown %s %s: %v %s", owner, path, err, out)
	}
}

// Run runs a command that may leave a daemon behind, or ends the test with its output. The
// output goes to a file, not a pipe: the daemon would keep a pipe open and Wait would never
// return. postfix prints its errors only to a terminal, so it runs under script(1).
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if filepath.Base(name) == "postfix" {
		cmd = exec.Command("script", "-qec", strings.Join(append([]string{name}, args...), " "), "/dev/null")
	}
	out, err := os.CreateTemp("", "peerscmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("peers: %s %v: %v\n%s", name, args, err, b)
	}
}

// WaitListen waits until every address accepts TCP connections (20 s at most in all), or
// ends the test.
func WaitListen(t testing.TB, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := dialTCP(a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("peers: %s did not start listening: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// SMTPSink starts Postfix's smtp-sink on a free loopback port with the extra arguments args
// (for example "-f", "RCPT", "-B", "550 5.1.1 unknown user" to refuse every recipient), and
// returns its address; it is stopped in t.Cleanup.
func SMTPSink(t testing.TB, args ...string) string {
	t.Helper()
	bin := testenv.Require(t, "smtp-sink")
	addr := addrOf(testenv.FreePort(t))
	cmd := exec.Command(bin, append(append([]string{"-u", "nobody"}, args...), addr, "16")...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("peers: smtp-sink: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	WaitListen(t, addr)
	return addr
}

// readMaildir returns the messages of the Maildir dir (new and cur), in file-name order.
func readMaildir(dir string) []string {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			names = append(names, filepath.Join(dir, sub, e.Name()))
		}
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Base(names[i]) < filepath.Base(names[j]) })
	var out []string
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readPID reads a daemon's pid file.
func readPID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// alive reports whether process pid still exists.
func alive(pid string) bool {
	var n int
	for _, c := range pid {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	if n <= 0 {
		return false
	}
	return syscall.Kill(n, 0) == nil
}

// waitGone waits (5 s at most) until none of pids is alive.
func waitGone(pids []string) {
	for i := 0; i < 100; i++ {
		any := false
		for _, p := range pids {
			any = any || alive(p)
		}
		if !any {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
