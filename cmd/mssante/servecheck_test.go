package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// tree lists every file and folder under dir with its mode, to show that a command created,
// removed or changed nothing.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, m := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("--check created %s", p)
		} else if b != m {
			t.Errorf("--check changed %s: %s, was %s", p, m, b)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("--check removed %s", p)
		}
	}
}

// edit rewrites the fixture's configuration with old replaced by new.
func (f *serveFixture) edit(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("configuration lacks %q", old)
	}
	if err := os.WriteFile(f.config, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// listServer serves the fixture's whitelist over HTTPS with the fixture's server certificate
// (it names localhost), answering status instead when it is not 200.
func (f *serveFixture) listServer(t *testing.T, status int) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != http.StatusOK {
			http.Error(w, "no", status)
			return
		}
		http.ServeFile(w, r, filepath.Join(f.dir, "whitelist.xml"))
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{f.server.TLSCertificate()}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return fmt.Sprintf("https://localhost:%d/listeblanchemssante.xml", s.Listener.Addr().(*net.TCPAddr).Port)
}

// useURL switches the fixture from a whitelist file to url with a cache file.
func (f *serveFixture) useURL(t *testing.T, url string) string {
	cache := filepath.Join(f.dir, "cache.xml")
	f.edit(t, fmt.Sprintf("file = %q", filepath.Join(f.dir, "whitelist.xml")), fmt.Sprintf("url = %q\ncache_file = %q", url, cache))
	return cache
}

// A good configuration passes --check with one ok line per check, and --check creates no
// file or folder: not the spool, the audit log, the mailboxes nor the whitelist cache.
func TestServeCheckCreatesNothing(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	cache := f.useURL(t, f.listServer(t, http.StatusOK))
	before := tree(t, f.dir)
	code, out, stderr := runCmd(t, "serve", "--config", f.config, "--check")
	if code != 0 || !strings.HasSuffix(out, "configuration OK\n") {
		t.Fatalf("--check: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"ok    tls.key_file: ", "ok    certificate: CN=mx.x.mssante.test", "ok    hostname: mx.x.mssante.test",
		"ok    certificate chain: ", "ok    tls.crl_files: ", "ok    whitelist: https://localhost:", "info  whitelist.cache_file: ",
		"ok    listed: x.mssante.test", fmt.Sprintf("ok    relay: 127.0.0.1:%d can be bound", f.relay), "ok    spool_dir: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	sameTree(t, before, tree(t, f.dir))
	for _, p := range []string{f.spool, filepath.Join(f.dir, "audit"), f.maildir, cache} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("--check created %s", p)
		}
	}
}

// Each way the service cannot work makes --check print its line and exit 1, and still
// creates nothing.
func TestServeCheckProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f *serveFixture)
		want  string
	}{
		{"whitelist URL 404, no cache", func(t *testing.T, f *serveFixture) {
			f.useURL(t, f.listServer(t, http.StatusNotFound))
		}, "/listeblanchemssante.xml: download: HTTP status 404 Not Found, and no cached list: the node would refuse every recipient (451 4.7.1)"},
		{"whitelist URL down, no cache", func(t *testing.T, f *serveFixture) {
			f.useURL(t, fmt.Sprintf("https://localhost:%d/listeblanchemssante.xml", testenv.FreePort(t)))
		}, "fail  whitelist: https://localhost:"},
		{"whitelist URL 404 beside a good cache", func(t *testing.T, f *serveFixture) {
			cache := f.useURL(t, f.listServer(t, http.StatusNotFound))
			copyFile(t, filepath.Join(f.dir, "whitelist.xml"), cache)
		}, "the cached list would never be refreshed"},
		{"wrong signer", func(t *testing.T, f *serveFixture) {
			f.edit(t, "signer = \"CN=liste-blanche.test", "signer = \"CN=someone-else.test")
		}, "signer is not the expected one"},
		{"port in use", func(t *testing.T, f *serveFixture) {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.relay))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, "fail  relay: 127.0.0.1:{relay} already in use by another program"},
		{"hostname not in the certificate", func(t *testing.T, f *serveFixture) {
			f.edit(t, `hostname = "mx.x.mssante.test"`, `hostname = "mail.x.mssante.test"`)
		}, "fail  hostname: the certificate does not name mail.x.mssante.test (names: mx.x.mssante.test, localhost)"},
		{"key readable by others", func(t *testing.T, f *serveFixture) {
			os.Chmod(filepath.Join(f.dir, "server.key.pem"), 0o644)
		}, "fail  tls.key_file: transport: private key {dir}/server.key.pem has mode 0644, open to group or others: chmod 600 {dir}/server.key.pem"},
		{"configuration readable by group", func(t *testing.T, f *serveFixture) {
			os.Chmod(f.config, 0o640)
		}, "fail  configuration: {dir}/serve.toml has mode 0640, open to group or others, and may hold BAL passwords: chmod 600 {dir}/serve.toml"},
		{"key of another certificate", func(t *testing.T, f *serveFixture) {
			os.WriteFile(filepath.Join(f.dir, "server.key.pem"), f.peer.KeyPEM(), 0o600)
		}, "fail  certificate: "},
		{"CRL past its next update", func(t *testing.T, f *serveFixture) {
			crl, err := f.pki.CRLAt(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(f.dir, "ca.crl"), crl, 0o644)
		}, "is past its next update"},
		{"CRL of another CA", func(t *testing.T, f *serveFixture) {
			other, err := testpki.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := other.CRL()
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(f.dir, "ca.crl"), crl, 0o644)
		}, "fail  tls.crl_files: "},
		{"state folder of another user", func(t *testing.T, f *serveFixture) {
			os.Mkdir(f.spool, 0o700)
			asUID(t, 4242) // the folder is the test's, not 4242's
		}, "fail  spool_dir: {dir}/spool belongs to "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newServeFixture(t, t.TempDir())
			tc.setup(t, f)
			before := tree(t, f.dir)
			code, out, stderr := runCmd(t, "serve", "--config", f.config, "--check")
			want := strings.NewReplacer("{dir}", f.dir, "{relay}", fmt.Sprint(f.relay)).Replace(tc.want)
			if code != 1 || !strings.Contains(out, want) || !strings.Contains(stderr, "problem(s): the service would not work") {
				t.Errorf("exit %d, want 1 and a line with %q:\n%s%s", code, want, out, stderr)
			}
			if strings.Contains(out, "configuration OK") {
				t.Errorf("says configuration OK:\n%s", out)
			}
			sameTree(t, before, tree(t, f.dir))
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// asUID makes the command believe it runs as uid for the rest of the test.
func asUID(t *testing.T, uid int) {
	old := euid
	euid = func() int { return uid }
	t.Cleanup(func() { euid = old })
}

// --json prints one object a line, one per check, the failed ones with status "fail".
func TestServeCheckJSON(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	os.Chmod(filepath.Join(f.dir, "server.key.pem"), 0o644)
	code, out, _ := runCmd(t, "serve", "--config", f.config, "--check", "--json")
	if code != 1 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	fails, n := 0, 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l struct{ Status, Check, Detail string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Check == "" || l.Detail == "" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		n++
		if l.Status == "fail" {
			fails++
			if l.Check != "tls.key_file" || !strings.Contains(l.Detail, "chmod 600") {
				t.Errorf("fail line %+v", l)
			}
		}
	}
	if fails != 1 || n < 10 {
		t.Errorf("%d lines, %d failed:\n%s", n, fails, out)
	}
}

// Run as root, serve, serve --check and bal refuse a state folder that belongs to another
// account, naming who to run as, and write nothing there.
func TestStateOwnerRefusal(t *testing.T) {
	owner := 65534
	if os.Geteuid() != 0 { // the same path without privileges: the test's folders are not root's
		owner = os.Getuid()
	}
	asUID(t, 0)
	name := userName(owner)
	f := newServeFixture(t, t.TempDir())
	own := func(p string) {
		t.Helper()
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(p, owner, owner); err != nil {
				t.Fatal(err)
			}
		}
	}
	own(f.spool)
	for _, args := range [][]string{{"serve", "--config", f.config}, {"serve", "--config", f.config, "--check"}} {
		before := tree(t, f.dir)
		code, out, stderr := runCmd(t, args...)
		want := fmt.Sprintf("the state folder %s belongs to %s, and files written there as root could not be opened by %[2]s: run as %[2]s (sudo -u %[2]s mssante %s)",
			f.spool, name, strings.Join(args, " "))
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%v: exit %d, want 1 and %q:\n%s%s", args, code, want, out, stderr)
		}
		sameTree(t, before, tree(t, f.dir))
	}

	store := filepath.Join(f.dir, "mailbox")
	own(store)
	code, _, stderr := runCmd(t, "bal", "list", "--store", store)
	if want := fmt.Sprintf("run as %[1]s (sudo -u %[1]s mssante bal …)", name); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("bal list: exit %d, want 1 and %q: %s", code, want, stderr)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 0 {
		t.Errorf("bal wrote in the store: %v", ents)
	}
	// A store not created yet is judged by the folder it would be created in.
	code, _, stderr = runCmd(t, "bal", "list", "--store", filepath.Join(store, "sub"))
	if code != 1 || !strings.Contains(stderr, "(where "+filepath.Join(store, "sub")+" would be created)") {
		t.Errorf("bal list in a folder to create: exit %d: %s", code, stderr)
	}
	// Root's own state is root's business.
	if os.Geteuid() == 0 {
		rootStore := filepath.Join(f.dir, "root-mailbox")
		if code, _, stderr := runCmd(t, "bal", "list", "--store", rootStore); code != 0 {
			t.Errorf("bal list on root's store: exit %d: %s", code, stderr)
		}
	}
}

// A key readable by others stops serve before it opens the queue; at 0600 it is accepted
// (the other serve tests run with their key at 0600).
func TestServeRefusesOpenKey(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	key := filepath.Join(f.dir, "server.key.pem")
	for _, mode := range []os.FileMode{0o644, 0o666, 0o640} {
		os.Chmod(key, mode)
		code, _, stderr := runCmd(t, "serve", "--config", f.config)
		want := fmt.Sprintf("has mode %04o, open to group or others: chmod 600 %s", mode, key)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("mode %04o: exit %d, want 1 and %q: %s", mode, code, want, stderr)
		}
	}
	os.Chmod(key, 0o600)
	if code, out, stderr := runCmd(t, "serve", "--config", f.config, "--check"); code != 0 {
		t.Errorf("0600: exit %d:\n%s%s", code, out, stderr)
	}
}
