// Package testenv holds what the tests of every package share to reach real peers: finding the
// binaries of the external programs they drive (openssl, slapd, Postfix, Dovecot, xmlsec1, …) and
// free loopback ports.
//
// A test that needs an external program calls [Require]. When the program is missing the test
// is skipped on a developer's machine, but fails when MSSANTE_REQUIRE_PEERS=1, which the README's
// test command (and so CI) sets after installing every peer: a skipped peer test never counts as
// a pass there.
package testenv

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// sbinDirs are searched after PATH: Debian installs daemons there and a non-root PATH lacks them.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/lib/postfix/sbin", "/usr/lib/dovecot"}

// PeersRequired reports whether missing peers must fail tests instead of skipping them.
func PeersRequired() bool { return os.Getenv("MSSANTE_REQUIRE_PEERS") == "1" }

// LookPath finds an external program in PATH or in the system binary folders.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

// Require returns the path of the external program name, or ends the test: skipped when peers
// are optional, failed when MSSANTE_REQUIRE_PEERS=1.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := LookPath(name)
	if err == nil {
		return p
	}
	if PeersRequired() {
		t.Fatalf("testenv: %s is required (MSSANTE_REQUIRE_PEERS=1) but not installed: run scripts/install-peers.sh", name)
	}
	t.Skipf("testenv: %s not installed (scripts/install-peers.sh installs it)", name)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for external servers that
// must be told their port in a configuration file. Go servers take a listener on 127.0.0.1:0.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SharedData returns the path of a file of the project's public test data: the real ANS liste
// blanche and IGC-Santé root kept in ../shared/data beside the checkout (MSSANTE_DATA_DIR
// overrides the folder). A missing file skips the test, or fails it when MSSANTE_REQUIRE_PEERS=1,
// since CI lays that folder beside the checkout.
func SharedData(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("MSSANTE_DATA_DIR")
	if dir == "" {
		dir = filepath.Join(moduleRoot(), "..", "shared", "data")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if PeersRequired() {
			t.Fatalf("testenv: shared data %s is required (MSSANTE_REQUIRE_PEERS=1): %v", name, err)
		}
		t.Skipf("testenv: shared data %s not available (set MSSANTE_DATA_DIR): %v", name, err)
	}
	return p
}

// moduleRoot is the folder holding go.mod above the test's working directory ("." if none).
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return "."
		}
	}
}

// Buffer is a bytes.Buffer that a server, a process or a connection may write while the test
// reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// JSONRecords parses the records a slog JSON handler wrote in text, one object a line (empty
// lines are passed over), and returns those whose message is msg, every record when msg is "".
func JSONRecords(t testing.TB, text, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q: %v", line, err)
		}
		if msg == "" || r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}
