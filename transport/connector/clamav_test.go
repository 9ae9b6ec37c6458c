package connector

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
)

// startClamd starts a throw-away clamd whose only signature is the MD5 of a file made here
// (sigtool --md5 into a .hdb, as the public signature download is not reachable), and returns
// the client and the content it detects.
func startClamd(t *testing.T) (*ClamAV, []byte) {
	t.Helper()
	clamd := testenv.Require(t, "clamd")
	sigtool := testenv.Require(t, "sigtool")
	dir, err := os.MkdirTemp("/var/tmp", "mssante-clamd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	os.Mkdir(db, 0o755)
	var rb [16]byte
	rand.Read(rb[:])
	evil := []byte("MSSANTE-TEST-MALWARE " + hex.EncodeToString(rb[:]) + "\n")
	sample := filepath.Join(dir, "sample.bin")
	os.WriteFile(sample, evil, 0o644)
	sig, err := exec.Command(sigtool, "--md5", sample).Output()
	if err != nil {
		t.Fatalf("sigtool: %v", err)
	}
	// sigtool names the signature after the file; give it a stable name.
	f := strings.Split(strings.TrimSpace(string(sig)), ":")
	if len(f) < 3 {
		t.Fatalf("sigtool output %q", sig)
	}
	os.WriteFile(filepath.Join(db, "test.hdb"), []byte(f[0]+":"+f[1]+":MSSante.Test.Malware\n"), 0o644)
	sock := filepath.Join(dir, "clamd.sock")
	conf := fmt.Sprintf("LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nLogFile %s/clamd.log\nStreamMaxLength 1M\nUser root\n", sock, db, dir)
	cf := filepath.Join(dir, "clamd.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command(clamd, "-c", cf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &ClamAV{Network: "unix", Addr: sock}
	waitFor(t, "clamd ready", func() bool { return c.Ping(context.Background()) == nil }, func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "clamd.log"))
		return string(b)
	})
	return c, evil
}

func mimeWith(attachment []byte) string {
	return "From: <x@a.mssante.test>\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=doc.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(attachment) + "\r\n--b--\r\n"
}

func TestClamAVReal(t *testing.T) {
	clam, evil := startClamd(t)
	ctx := context.Background()
	if err := clam.Scan(ctx, strings.NewReader(mimeWith([]byte("a clean document\n")))); err != nil {
		t.Fatalf("clean: %v", err)
	}
	var ve *VirusError
	if err := clam.Scan(ctx, strings.NewReader(mimeWith(evil))); !errors.As(err, &ve) || ve.Signature != "MSSante.Test.Malware.UNOFFICIAL" && ve.Signature != "MSSante.Test.Malware" {
		t.Fatalf("infected: %v", err)
	}
	// Over clamd's StreamMaxLength (1 MiB here): clamd answers an error, never "OK".
	if err := clam.Scan(ctx, strings.NewReader(strings.Repeat("x", 2<<20))); !errors.Is(err, ErrScanner) {
		t.Fatalf("over limit: %v", err)
	}

	// Through the relay listener: 554 5.7.1 for the infected message, audited; 451 4.7.1
	// when clamd is not there.
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: clam})
	trust(a, b)
	c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, mimeWith(evil), nil, nil); got != "554 5.7.1" {
		t.Fatalf("infected via relay: %s", got)
	}
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, mimeWith([]byte("clean\n")), nil, nil); got != "ok" {
		t.Fatalf("clean via relay: %s", got)
	}
	down := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: &ClamAV{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock")}})
	trust(a, down)
	c, _ = dialSMTP(t, down.relayAddr, clientTLS(a.server, p))
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, mimeWith([]byte("clean\n")), nil, nil); got != "451 4.7.1" {
		t.Fatalf("scanner down: %s", got)
	}
	b.audit.Close()
	log, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	if !strings.Contains(string(log), `"code":"554 5.7.1","reason":"virus: MSSante.Test.Malware`) {
		t.Fatalf("audit:\n%s", log)
	}
}

func TestParseClamReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"stream: OK\x00", "ok"},
		{"stream: Eicar-Signature FOUND\x00", "virus Eicar-Signature"},
		{"INSTREAM size limit exceeded. ERROR\x00", "error"},
		{"stream:  FOUND", "error"},
		{"", "error"},
		{"stream: OK trailing", "error"},
	} {
		err := parseClamReply(tc.in)
		var ve *VirusError
		got := "ok"
		switch {
		case errors.As(err, &ve):
			got = "virus " + ve.Signature
		case errors.Is(err, ErrScanner):
			got = "error"
		case err != nil:
			got = "other"
		}
		if got != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}
