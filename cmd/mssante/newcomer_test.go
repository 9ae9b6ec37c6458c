package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
)

// jsonLines parses the --json output of a command: every line one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not one JSON object a line: %q: %v\n%s", l, err, out)
		}
		lines = append(lines, m)
	}
	return lines
}

// cli runs the binary's command line in-process.
func cli(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(ctx, args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

// What a newcomer does in the first hour, on one trust space: send with the submission server
// alone and no --nil, send an archive of "xdm pack", receive and save every attachment, read
// each table as JSON lines, and get a message that says what to do on each mistake.
func TestNewcomerSendReceiveJSON(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	info, work := sb.Info, t.TempDir()
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	b, op := info.BAL(from), info.OperatorOf(from)

	// Mistakes: one line that names what is missing.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "--sandbox", dir, "--from", from, "--to", to, "--cda", info.SampleCDA}, "--cda needs --pdf"},
		{[]string{"send", "--sandbox", dir, "--from", from, "--to", to}, "nothing to send"},
		{[]string{"send", "--sandbox", dir, "--from", from, "--pdf", info.SamplePDF}, "--to is required"},
		{[]string{"receive", "--sandbox", dir}, "--mailbox is required"},
	} {
		code, _, errs := cli(ctx, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, want 2 and one line with %q:\n%s", c.args, code, c.want, errs)
		}
	}

	// 1. The submission server alone (no --imap, no --wait, no DNS), and no --nil.
	code, out, errs := cli(ctx, "send", "--from", from, "--to", to, "--cda", info.SampleCDA, "--pdf", info.SamplePDF,
		"--submission", op.Submission, "--cert", b.CertFile, "--key", b.KeyFile, "--trust", info.CAFile, "--crl", info.CRLFile,
		"--whitelist", info.WhitelistFile, "--whitelist-pin", filepath.Join(filepath.Dir(info.WhitelistFile), sandboxSignerFile),
		"--state", filepath.Join(work, "a"))
	if code != 0 || !strings.Contains(out, "accepted") {
		t.Fatalf("send with --submission only: exit %d\n%s%s", code, out, errs)
	}

	// 2. An archive made by "xdm pack": a structured document needs its PDF copy.
	zip := filepath.Join(work, "IHE_XDM.ZIP")
	if code, out, errs := cli(ctx, "xdm", "pack", "--cda", info.SampleCDA, "-o", zip); code != 0 {
		t.Fatalf("xdm pack: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli(ctx, "send", "--sandbox", dir, "--from", from, "--to", to, "--xdm", zip, "--state", filepath.Join(work, "a")); code != 2 ||
		!strings.Contains(errs, "--pdf") {
		t.Errorf("--xdm of a structured document without --pdf: exit %d, %s", code, errs)
	}
	code, out, errs = cli(ctx, "send", "--sandbox", dir, "--from", from, "--to", to, "--xdm", zip, "--pdf", info.SamplePDF,
		"--state", filepath.Join(work, "a"), "--json")
	if code != 0 {
		t.Fatalf("send --xdm: exit %d\n%s%s", code, out, errs)
	}
	lines := jsonLines(t, out)
	if len(lines) != 2 || lines[0]["type"] != "sent" || lines[0]["message_id"] == "" || lines[1]["type"] != "recipient" ||
		lines[1]["recipient"] != to || lines[1]["state"] != "accepted" || lines[1]["code"] != float64(250) {
		t.Errorf("send --json:\n%s", out)
	}

	// 3. An ordinary attachment beside the text.
	note := &mssante.Message{From: mssante.MustAddress("", from), To: []mssante.Address{mssante.MustAddress("", to)}, Subject: "note",
		Text: "ci-joint", NIL: "TEST", Attachments: []mssante.Attachment{{Filename: "note.txt", ContentType: "text/plain", Data: []byte("hello\n")}}}
	var raw bytes.Buffer
	if _, err := note.WriteTo(&raw, nil); err != nil {
		t.Fatal(err)
	}
	if err := info.Submit(ctx, from, []string{to}, raw.Bytes()); err != nil {
		t.Fatal(err)
	}

	// Receive the three, --from under its new name, every attachment saved.
	saved := filepath.Join(work, "saved")
	code, out, errs = cli(ctx, "receive", "--sandbox", dir, "--mailbox", to, "--state", filepath.Join(work, "b"), "--count", "3",
		"--for", "90s", "--poll", "1s", "--save", saved, "--json")
	if code != 0 {
		t.Fatalf("receive: exit %d\n%s%s", code, out, errs)
	}
	var messages, withNote int
	for _, m := range jsonLines(t, out) {
		if m["type"] != "message" {
			continue
		}
		messages++
		if m["decision"] != "accepted" {
			t.Errorf("decision %v", m["decision"])
		}
		files, _ := m["saved"].([]any)
		names := map[string]bool{}
		for _, f := range files {
			if _, err := os.Stat(f.(string)); err != nil {
				t.Errorf("listed as saved: %v", err)
			}
			names[filepath.Base(f.(string))] = true
		}
		if m["subject"] == "note" {
			withNote++
			if !names["note.txt"] {
				t.Errorf("the ordinary attachment is not saved: %v", m)
			}
			continue
		}
		if !names[mssante.XDMFilename] || len(files) != 3 || m["ins"] != "279035121518989" {
			t.Errorf("want the archive, the CDA and the PDF saved: %v", m)
		}
	}
	if messages != 3 || withNote != 1 {
		t.Errorf("%d messages, %d with the note:\n%s", messages, withNote, out)
	}

	// The tables as JSON lines.
	pin := filepath.Join(filepath.Dir(info.WhitelistFile), sandboxSignerFile)
	code, _, errs = cli(ctx, "whitelist", "lookup", sandbox.Hopital, "--file", info.WhitelistFile)
	if code != 1 || !strings.Contains(errs, "add --pin "+pin) || strings.Count(errs, "\n") != 1 {
		t.Errorf("lookup on the sandbox's list without --pin: exit %d, %s", code, errs)
	}
	code, out, errs = cli(ctx, "whitelist", "lookup", sandbox.Hopital, "--file", info.WhitelistFile, "--pin", pin, "--json")
	if l := jsonLines(t, out); code != 0 || len(l) != 1 || l[0]["domain"] != sandbox.Hopital || l[0]["operator_dn"] != op.CertDN {
		t.Errorf("whitelist lookup --json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli(ctx, "cert", "inspect", "--json", info.CAFile)
	if l := jsonLines(t, out); code != 0 || len(l) != 2 || l[0]["subject"] == "" || l[1]["index"] != float64(2) {
		t.Errorf("cert inspect --json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli(ctx, "cert", "check", "--json", "--warn", "1d", b.CertFile)
	if l := jsonLines(t, out); code != 0 || l[0]["status"] != "ok" || l[0]["days_left"].(float64) < 1 {
		t.Errorf("cert check --json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli(ctx, "xdm", "inspect", "--json", zip)
	if l := jsonLines(t, out); code != 0 || len(l) != 2 || l[0]["type"] != "subset" || l[1]["type"] != "document" || l[1]["cda_ok"] != true {
		t.Errorf("xdm inspect --json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli(ctx, "doctor", "--sandbox", dir, "--domain", sandbox.Hopital, "--json")
	l := jsonLines(t, out)
	if code != 0 || len(l) < 5 {
		t.Errorf("doctor --json: exit %d\n%s%s", code, out, errs)
	}
	for _, c := range l {
		if c["status"] == "fail" || c["check"] == "" {
			t.Errorf("doctor --json: %v", c)
		}
	}
	code, out, errs = cli(ctx, "selftest", "--sandbox", dir, "--json", "--state", filepath.Join(work, "c"))
	l = jsonLines(t, out)
	if code != 0 || len(l) != 4 {
		t.Fatalf("selftest --json: exit %d\n%s%s", code, out, errs)
	}
	for i, c := range l {
		if c["status"] != "ok" || c["check"] != []float64{1, 2, 2, 3}[i] {
			t.Errorf("selftest --json: %v", c)
		}
	}
}

// Every implicit-TLS port of "mssante dev" answers a client it cannot negotiate with
// protocol_version, IMAPS as the SMTP ports.
func TestDevPortsProtocolVersionAlert(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	op := sb.Info.Operators[0]
	for _, addr := range []string{op.IMAPS, op.SubmissionTLS} {
		for _, v := range [][2]uint16{{tls.VersionTLS10, tls.VersionTLS11}, {tls.VersionTLS13, tls.VersionTLS13}} {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v[0], MaxVersion: v[1]})
			if err == nil {
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
				t.Errorf("%s, TLS %x–%x: %v, want the protocol_version alert", addr, v[0], v[1], err)
			}
		}
	}
}
