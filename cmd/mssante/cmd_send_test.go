package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// On the trust space of "mssante dev": "mssante send" builds a lettre de liaison from a PDF
// and the patient's fields, sends it from the hospital's DPI to the practice's software and
// waits for the receipts; "mssante receive" on the practice's BAL prints the message with
// its INS and document, saves it, and accepts it; send then prints the DSN and the MDN.
func TestSendReceiveDev(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	work := t.TempDir()
	pdf := filepath.Join(work, "lettre.pdf")
	if err := os.WriteFile(pdf, samplepdf.Page("Lettre de liaison (test)"), 0o600); err != nil {
		t.Fatal(err)
	}
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	const ins = "279035121518989"

	var rout, rerr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"receive", "--dev", dir, "--from", to, "--state", filepath.Join(work, "b"),
			"--count", "1", "--for", "90s", "--poll", "1s", "--save", filepath.Join(work, "saved")}, &env{stdout: &rout, stderr: &rerr})
	}()

	var out, errb bytes.Buffer
	code := run(ctx, []string{"send", "--dev", dir, "--from", from, "--to", to, "--state", filepath.Join(work, "a"),
		"--pdf", pdf, "--ins", ins, "--ins-oid", mssante.OIDINSNIRTest, "--birth-name", "PAT-TROIS", "--given", "DOMINIQUE",
		"--birth-date", "1979-03-28", "--sex", "F", "--birth-place", "51215", "--author-id", "801234567897", "--author-family", "DAVID",
		"--author-given", "Charles", "--org-id", "1750803447", "--org-name", "Hôpital Exemple", "--nil", "DEV000000",
		"--mdn", "--wait", "90s"}, &env{stdout: &out, stderr: &errb})
	if code != 0 {
		t.Fatalf("send: exit %d\n%s\n%s\nreceive:\n%s%s", code, out.String(), errb.String(), rout.String(), rerr.String())
	}
	for _, want := range []string{to, "accepted", ": processed (final)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("send output lacks %q:\n%s", want, out.String())
		}
	}
	// The DSN and the MDN travel apart through the cabinet's queue. Send prints the DSN when
	// it comes first; one coming after the final MDN is ignored (one final status per
	// recipient), but it still reaches the BAL.
	if !strings.Contains(out.String(), ": delivered") {
		id, _, _ := strings.Cut(strings.TrimPrefix(out.String(), "Message-ID "), "\n")
		if _, err := sb.Info.WaitFor(ctx, from, func(raw []byte) bool {
			return bytes.Contains(raw, []byte("Action: delivered")) && bytes.Contains(raw, []byte(id))
		}); err != nil || !strings.HasPrefix(id, "<") {
			t.Errorf("no delivered DSN for %q: %v\n%s", id, err, out.String())
		}
	}
	if c := <-done; c != 0 {
		t.Fatalf("receive: exit %d\n%s\n%s", c, rout.String(), rerr.String())
	}
	for _, want := range []string{"from     " + from, "INS " + ins, "XDM/1.0/DDM+", "document 11490-0", "→ accepted"} {
		if !strings.Contains(rout.String(), want) {
			t.Errorf("receive output lacks %q:\n%s", want, rout.String())
		}
	}
	saved, _ := filepath.Glob(filepath.Join(work, "saved", "*", "*"))
	if len(saved) != 3 {
		t.Errorf("saved files %v, want the archive, the CDA and the PDF", saved)
	}
}

func TestSendUsageErrors(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	pdf := filepath.Join(t.TempDir(), "x.pdf")
	os.WriteFile(pdf, []byte("%PDF-1.4"), 0o600)
	for _, args := range [][]string{
		{"send"},
		{"send", "--to", "a@b.example"},
		{"send", "--from", "x@a.example", "--to", "not an address", "--pdf", pdf},
		{"send", "--from", "x@a.example", "--to", "y@b.example", "--pdf", pdf}, // no patient fields
		{"receive", "--from", "x@a.example", "--reject", "42"},
	} {
		if code := run(ctx, args, e); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, errb.String())
		}
	}
	// Without a whitelist nothing is sent (fail closed).
	errb.Reset()
	code := run(ctx, []string{"send", "--from", "x@a.example", "--to", "y@b.example", "--pdf", pdf, "--state", t.TempDir(),
		"--submission", "127.0.0.1:1", "--ins", "279035121518989", "--ins-oid", mssante.OIDINSNIRTest, "--birth-name", "X",
		"--given", "Y", "--birth-date", "1979-03-28", "--sex", "F", "--birth-place", "51215", "--author-id", "801234567897", "--author-family", "Z", "--author-given", "W",
		"--org-id", "1750803447", "--org-name", "O"}, e)
	if code != 2 || !strings.Contains(errb.String(), "--whitelist is required") {
		t.Errorf("no whitelist: exit %d, %s", code, errb.String())
	}
}

// An existing CDA and its PDF copy become a mail with the archive, the PDF and the patient.
func TestMessageFromCDA(t *testing.T) {
	doc, err := cda.Build(cda.Sample(cda.KindLDLSES))
	if err != nil {
		t.Fatal(err)
	}
	xml, err := cda.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ldl.xml")
	os.WriteFile(path, xml, 0o600)
	m, err := messageFromCDA(mssante.MustAddress("", "dpi@a.example"), []mssante.Address{mssante.MustAddress("", "b@b.example")},
		path, samplepdf.Page("copie"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.XDM) == 0 || m.Patient == nil || m.Patient.INS.Value != "279035121518989" || len(m.Documents) != 1 {
		t.Fatalf("message %+v", m)
	}
	if _, err := messageFromCDA(mssante.MustAddress("", "dpi@a.example"), nil, path, nil); err == nil {
		t.Fatal("structured CDA without its PDF copy accepted")
	}
}

// "mssante send" with a TLS mode that does not fit the port fails at once with one line that
// says what the port speaks and what to use, for each way round.
func TestSendWrongTLSMode(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	info := sb.Info
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	b, op := info.BAL(from), info.OperatorOf(from)
	for _, tc := range []struct {
		mode []string
		want string
	}{
		{[]string{"--submission", op.SubmissionTLS}, "expects implicit TLS (it answered with TLS, not a greeting): add --submission-tls, or use its STARTTLS port"},
		{[]string{"--submission", op.Submission, "--submission-tls"}, "speaks plain text first (it answered \"220 "},
		{[]string{"--submission", op.Submission, "--submission-tls"}, "remove --submission-tls to use STARTTLS"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"send", "--from", from, "--to", to, "--cda", info.SampleCDA, "--pdf", info.SamplePDF,
			"--cert", b.CertFile, "--key", b.KeyFile, "--trust", info.CAFile, "--crl", info.CRLFile,
			"--whitelist", info.WhitelistFile, "--state", t.TempDir()}, tc.mode...)
		code := run(ctx, args, &env{stdout: &out, stderr: &errb})
		msg := strings.TrimSpace(errb.String())
		t.Log(msg)
		if code == 0 || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%v: exit %d\n%s\n%s", tc.mode, code, out.String(), errb.String())
		}
		if strings.Contains(msg, "closed network connection") {
			t.Errorf("%v: %s", tc.mode, msg)
		}
	}
	// The same for IMAP, with receive's flag.
	var out, errb bytes.Buffer
	code := run(ctx, []string{"receive", "--mailbox", from, "--state", t.TempDir(), "--imap", op.IMAPS, "--for", "30s",
		"--submission", op.Submission, "--cert", b.CertFile, "--key", b.KeyFile, "--trust", info.CAFile, "--crl", info.CRLFile,
		"--whitelist", info.WhitelistFile}, &env{stdout: &out, stderr: &errb})
	if msg := strings.TrimSpace(errb.String()); code == 0 || !strings.Contains(msg, "the IMAP server "+op.IMAPS+" expects implicit TLS") ||
		!strings.Contains(msg, "add --imap-tls") {
		t.Errorf("receive --imap on the implicit-TLS port: exit %d\n%s", code, msg)
	}
}

// The receipt lines of "mssante send --wait --json" and "mssante receive --json" name each
// code by its meaning, and keep "code" as it was for the scripts that read it.
func TestReceiptJSONCodes(t *testing.T) {
	for _, tc := range []struct {
		r    bal.Receipt
		want map[string]any
	}{
		{bal.Receipt{Status: bal.StatusDelivered, Detail: "2.0.0"}, map[string]any{}},
		{bal.Receipt{Status: bal.StatusFailed, SMTPCode: 550, Detail: "5.1.1", Final: true},
			map[string]any{"smtp_code": float64(550), "code": float64(550)}},
		{bal.Receipt{Status: bal.StatusError, MDNCode: mssante.CodeUnknownPatient, Detail: "Patient inconnu", Final: true},
			map[string]any{"mdn_code": float64(902), "code": float64(902)}},
	} {
		var out bytes.Buffer
		printReceipt(&env{stdout: &out}, tc.r, true)
		var got map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"code", "smtp_code", "mdn_code"} {
			if got[k] != tc.want[k] {
				t.Errorf("%s: %q = %v, want %v", out.String(), k, got[k], tc.want[k])
			}
		}
	}
}

// startSandbox starts the trust space of "mssante dev" in dir for one test; it stops when
// the test ends.
func startSandbox(t *testing.T, ctx context.Context, dir string) *sandbox.Sandbox {
	t.Helper()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}
