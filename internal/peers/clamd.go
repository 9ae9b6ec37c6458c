package peers

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// Clamd is a throw-away clamd (ClamAV daemon) listening on a Unix socket.
type Clamd struct {
	// Socket is the path of its LocalSocket.
	Socket string
	// Malware is content it detects, as MSSante.Test.Malware; StreamMaxLength is 1 MiB.
	Malware []byte
}

// StartClamd starts a clamd whose only signature is the MD5 of content made here (sigtool
// --md5 into a .hdb, as the public signature download is not reachable from the tests), and
// waits until it answers zPING.
func StartClamd(t testing.TB) *Clamd {
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
	deadline := time.Now().Add(20 * time.Second)
	for !pong(sock) {
		if time.Now().After(deadline) {
			t.Fatalf("clamd not ready:\n%s", readLog(filepath.Join(dir, "clamd.log")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &Clamd{Socket: sock, Malware: evil}
}

// pong reports whether clamd answers zPING on sock (clamd(8)).
func pong(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(c, 64))
	return strings.HasPrefix(string(b), "PONG")
}

// MIMEWith is a message whose only attachment is attachment, base64-encoded as a DPI sends a
// document: what a scanner has to decode to find the content.
func MIMEWith(attachment []byte) string {
	return "From: <x@a.mssante.test>\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=doc.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(attachment) + "\r\n--b--\r\n"
}
