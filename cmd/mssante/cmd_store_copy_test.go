package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/imapd"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// copyMessage is message i of the store that TestStoreCopy copies.
func copyMessage(i int) string {
	return "From: a@b.test\r\nTo: dr.martin@a.test\r\nSubject: message " + string(rune('0'+i)) +
		"\r\nMessage-ID: <copy" + string(rune('0'+i)) + "@b.test>\r\n\r\nbody " + strings.Repeat("x", 100*i) + "\r\n"
}

// A populated SQLite store (three BALs, a password, a certificate DN, a member, a listing
// change journalled, a second folder subscribed, messages with flags and a keyword, one
// expunged so that the UIDs have a gap) is copied into PostgreSQL by "mssante store copy";
// Python's imaplib then reads it over our IMAP server on the PostgreSQL store, logging in
// with the password copied: same UIDVALIDITY, same UIDs, flags, keyword, bodies and
// subscription. A second copy into the same database is refused.
func TestStoreCopy(t *testing.T) {
	py := testenv.Require(t, "python3")
	pg := peers.StartPostgres(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "mailbox")
	src, err := mailbox.OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const per, app, org, pw = "dr.martin@a.test", "dpi@a.test", "secretariat@a.test", "correct horse battery"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(src.AddBAL(ctx, &mailbox.BAL{Address: per, Type: mailbox.PER, Owner: "810000000001"}))
	must(src.SetPassword(ctx, per, pw))
	must(src.AddBAL(ctx, &mailbox.BAL{Address: app, Type: mailbox.APP, CertDN: "CN=dpi@a.test,O=HOPITAL,C=FR"}))
	must(src.AddBAL(ctx, &mailbox.BAL{Address: org, Type: mailbox.ORG, Owner: "1234567890"}))
	must(src.AddMember(ctx, org, "810000000002"))
	structure := "1234567890"
	if _, err := src.ChangeListing(ctx, app, mailbox.ListingChange{Structure: &structure}); err != nil {
		t.Fatal(err)
	}
	must(src.CreateMailbox(ctx, per, "Archives"))
	must(src.SetSubscribed(ctx, per, "Archives", true))
	for i := 1; i <= 5; i++ {
		if _, err := src.Append(ctx, per, "INBOX", strings.NewReader(copyMessage(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	inbox, err := src.Mailbox(ctx, per, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.StoreFlags(ctx, inbox.ID, []uint32{3}, mailbox.FlagsAdd, []string{`\Flagged`, `\Seen`, "$Handled"})
	must(err)
	_, err = src.StoreFlags(ctx, inbox.ID, []uint32{2}, mailbox.FlagsAdd, []string{`\Deleted`})
	must(err)
	_, err = src.Expunge(ctx, inbox.ID, nil)
	must(err)
	if _, err := src.Append(ctx, per, "Archives", strings.NewReader(copyMessage(6)), nil); err != nil {
		t.Fatal(err)
	}
	must(src.Close())

	code, out, errOut := runCmd(t, "store", "copy", "--from", dir, "--to", pg.DSN(), "--json")
	if code != 0 {
		t.Fatalf("store copy: exit %d\n%s%s", code, out, errOut)
	}
	var n copyLine
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if n.BALs != 3 || n.Members != 1 || n.Listings != 1 || n.Publications == 0 || n.Folders < 3 || n.Messages != 5 || n.Audit == 0 {
		t.Errorf("copy counts: %+v", n)
	}
	code, out, errOut = runCmd(t, "store", "copy", "--from", dir, "--to", pg.DSN())
	if code != 1 || !strings.Contains(errOut, "the target store is not empty (3 BALs)") {
		t.Errorf("second copy: exit %d\n%s%s", code, out, errOut)
	}

	dst, err := mailbox.OpenPostgres(ctx, pg.DSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if b, err := dst.BALByCertDN(ctx, "CN=dpi@a.test,O=HOPITAL,C=FR"); err != nil || b.Address != app {
		t.Errorf("certificate DN after the copy: %v, %v", b, err)
	}
	if held, err := dst.BALsHeldBy(ctx, "810000000002"); err != nil || len(held) != 1 || held[0] != org {
		t.Errorf("members after the copy: %v, %v", held, err)
	}
	if l, err := dst.Listing(ctx, app); err != nil || l.Structure != structure {
		t.Errorf("listing after the copy: %+v, %v", l, err)
	}
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := p.Server("localhost", &testpki.LeafOptions{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, p.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := imapd.New(&imapd.Options{Store: dst, TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()},
		MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(l)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	script := `
import imaplib, ssl, sys
port, ca, user, pw, uidvalidity, want4 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(cafile=ca))
m.login(user, pw)
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK" and data[0] == b"4", data
typ, data = m.response("UIDVALIDITY")
assert data[0].decode() == uidvalidity, (data, uidvalidity)
typ, data = m.uid("SEARCH", None, "ALL")
assert data[0].split() == [b"1", b"3", b"4", b"5"], data
typ, data = m.uid("FETCH", "3", "(FLAGS)")
flags = data[0].decode()
assert "\\Flagged" in flags and "\\Seen" in flags and "$Handled" in flags, flags
typ, data = m.uid("SEARCH", None, "UNSEEN")
assert data[0].split() == [b"1", b"4", b"5"], data
typ, data = m.uid("FETCH", "4", "(BODY.PEEK[])")
assert data[0][1].decode() == want4, data
typ, data = m.lsub()
assert any(b'"Archives"' in d or b" Archives" in d for d in data), data
typ, data = m.select("Archives", readonly=True)
assert typ == "OK" and data[0] == b"1", data
m.logout()
print("ok")
`
	cmd := exec.CommandContext(ctx, py, "-c", script, port, caFile, per, pw, strconv.FormatUint(uint64(inbox.UIDValidity), 10), copyMessage(4))
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("imaplib on the PostgreSQL copy: %v\n%s", err, out)
	}
}

// A copy that cannot finish leaves the target empty, so that it can be run again: here a
// message file is missing from the source. Usage errors and a folder that is no store are
// refused before anything is opened.
func TestStoreCopyRefusals(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "mailbox")
	src, err := mailbox.OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.AddBAL(ctx, &mailbox.BAL{Address: "dr@a.test", Type: mailbox.PER}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := src.Append(ctx, "dr@a.test", "INBOX", strings.NewReader(copyMessage(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	if len(blobs) != 2 {
		t.Fatalf("message files: %v", blobs)
	}
	os.Remove(blobs[1])
	code, out, errOut := runCmd(t, "store", "copy", "--from", dir, "--to", pg.DSN())
	if code != 1 || !strings.Contains(errOut, "mailbox: copy: messages:") {
		t.Fatalf("copy with a message file missing: exit %d\n%s%s", code, out, errOut)
	}
	dst, err := mailbox.OpenPostgres(ctx, pg.DSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if bals, err := dst.ListBALs(ctx); err != nil || len(bals) != 0 {
		t.Errorf("the target after a failed copy: %d BALs, %v", len(bals), err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"store", "copy", "--to", pg.DSN()}, 2, "copy needs --from"},
		{[]string{"store", "copy", "--from", dir}, 2, "one of --to and --config"},
		{[]string{"store", "copy", "--from", t.TempDir(), "--to", pg.DSN()}, 1, "is not a mailbox store (no index.db)"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q", c.args[1:], code, errOut)
		}
	}
}
