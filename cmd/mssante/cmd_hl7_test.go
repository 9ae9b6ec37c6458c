package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// hl7MDM is an MDM^T02 of CI-SIS Trans-CDA-R2 carrying the sample N1 document for to.
func hl7MDM(t *testing.T, id, to string) []byte {
	t.Helper()
	d, err := cda.Build(cda.Sample(cda.KindN1))
	if err != nil {
		t.Fatal(err)
	}
	xml, err := cda.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	m := hl7v2.New(hl7v2.Standard())
	m.Segments[0].Set(3, "DPI").Set(4, "HOP").Set(5, "PFI").Set(6, "HOP").Set(7, "20261207093000").
		Set(9, "MDM", "T02", "MDM_T02").Set(10, id).Set(11, "P").Set(12, "2.6")
	m.Add("PID").SetValue(3, 0, hl7v2.Value{{"279035121518989"}, {""}, {""}, {"ASIP-SANTE-INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
	m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "Lettre de sortie", "LN").
		Set(5, "", "text", "XML", "Base64", base64.StdEncoding.EncodeToString(xml)).Set(11, "F")
	m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "NET", "X.400", to)
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHL7ServeCommand runs "mssante hl7 serve --config" for the hospital's BAL applicative of a
// trust space; python3-hl7's mllp_send, as the DPI, sends an MDM^T02 and gets AA, and the
// mail reaches the practice.
func TestHL7ServeCommand(t *testing.T) {
	send := testenv.Require(t, "mllp_send")
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	startSandbox(t, ctx, dir)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "serve.toml")
	conf := fmt.Sprintf("hostname = \"ignored.example\"\n[hl7]\nlisten = \"127.0.0.1:0\"\nbal = \"dpi@%s\"\nsandbox = %q\nstate_dir = %q\n",
		sandbox.Hopital, dir, t.TempDir())
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb testenv.Buffer
	sctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- run(sctx, []string{"hl7", "serve", "--config", cfg}, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	}()
	defer func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	}()
	re := regexp.MustCompile(`MLLP on (127\.0\.0\.1:\d+)`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		} else if ctx.Err() != nil {
			t.Fatalf("no listener: %s %s", out.String(), errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	to := "marie.durand@" + sandbox.Cabinet
	f := filepath.Join(t.TempDir(), "mdm.hl7")
	if err := os.WriteFile(f, hl7MDM(t, "CLI-1", to), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	got, err := exec.Command(send, "--loose", "-p", port, "-f", f, host).CombinedOutput()
	if err != nil || !bytes.Contains(got, []byte("MSA|AA|CLI-1")) {
		t.Fatalf("mllp_send: %v\n%q", err, got)
	}
	if _, err := info.WaitFor(ctx, to, func(raw []byte) bool {
		return bytes.Contains(raw, []byte("Message-Id: <hl7-")) || bytes.Contains(raw, []byte("Message-ID: <hl7-"))
	}); err != nil {
		t.Fatal(err)
	}
	// The server also answers a Go MLLP client, and refuses a message off the whitelist.
	c := mllp.Dial(addr, nil)
	defer c.Close()
	ack, err := c.Send(ctx, hl7MDM(t, "CLI-2", "dr@hors-liste.example.fr"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := hl7v2.AckOf(ack); code != "AE" || ack.Segment("ERR").Get(5, 1) != "550" {
		e, _ := ack.Encode()
		t.Fatalf("ACK %q", e)
	}
}

// TestHL7ServeConfigErrors: a file without [hl7], or with a wrong one, exits 2 naming it.
func TestHL7ServeConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ conf, want string }{
		"no section": {"hostname = \"x\"\n", "no [hl7] section"},
		"bad bal":    {"[hl7]\nlisten = \"127.0.0.1:0\"\nbal = \"nope\"\nsandbox = \"/x\"\nstate_dir = \"/x\"\n", "hl7.bal"},
		"no state":   {"[hl7]\nlisten = \"127.0.0.1:0\"\nbal = \"a@b.fr\"\nsandbox = \"/x\"\n", "hl7.state_dir"},
		"no conn":    {"[hl7]\nlisten = \"127.0.0.1:0\"\nbal = \"a@b.fr\"\nstate_dir = \"/x\"\n", "without sandbox"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(cfg, []byte(tc.conf), 0o600)
			code, _, stderr := runCmd(t, "hl7", "serve", "--config", cfg)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	if code, _, _ := runCmd(t, "hl7"); code != 2 {
		t.Fatalf("hl7 without serve: exit %d", code)
	}
}
