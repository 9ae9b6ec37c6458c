package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7DevBridge: "mssante dev" runs the HL7v2 bridge of dpi@hopital on the MLLP ports of
// sandbox.json. A test DPI (python3-hl7's mllp_send) sends an MDM^T02 asking for a read
// receipt to the practice's software, which integrates it; the DPI's own MLLP listener then
// gets the ZAM^Z03 naming its MSH-10.
func TestHL7DevBridge(t *testing.T) {
	send := testenv.Require(t, "mllp_send")
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	dir := t.TempDir()
	d := startDev(t, "--sandbox", dir)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.HL7 == nil || info.HL7.BAL != "dpi@"+sandbox.Hopital || !strings.Contains(d.out.String(), "MLLP on "+info.HL7.Listen) {
		t.Fatalf("sandbox.json hl7 %+v; output:\n%s\n%s", info.HL7, d.out, d.errb)
	}
	zams := make(chan *hl7v2.Message, 8)
	dpiSrv, err := mllp.NewServer(&mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		m, err := hl7v2.Parse(b, nil)
		if err != nil {
			return nil, err
		}
		zams <- m
		ack, err := hl7v2.Ack(m, hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "D1", Time: time.Now()})
		if err != nil {
			return nil, err
		}
		return ack.Encode()
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", info.HL7.DPI)
	if err != nil {
		t.Fatal(err)
	}
	go dpiSrv.Serve(l)
	defer dpiSrv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	to := "logiciel@" + sandbox.Cabinet
	o, err := bal.OptionsFromSandbox(dir, to)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL, o.PollInterval = t.TempDir(), "DEV000000", time.Second
	recv, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	wctx, wstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- recv.Watch(wctx, func(context.Context, *bal.Incoming) error { return nil }, nil) }()
	defer func() { wstop(); <-done }()

	msg := append(hl7MDM(t, "DEV-1", to), []byte("OBX|2|CWE|ACK_LECTURE_MSS^Accus\xc3\xa9 de lecture^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r")...)
	f := filepath.Join(t.TempDir(), "mdm.hl7")
	if err := os.WriteFile(f, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(info.HL7.Listen)
	got, err := exec.Command(send, "--loose", "-p", port, "-f", f, host).CombinedOutput()
	if err != nil || !bytes.Contains(got, []byte("MSA|AA|DEV-1")) {
		t.Fatalf("mllp_send: %v\n%q", err, got)
	}
	for {
		select {
		case z := <-zams:
			if _, ev := z.Type(); ev == "Z03" {
				if obx := z.All("OBX"); obx[0].Get(4, 1) != "DEV-1" || obx[0].Get(5, 1) != "Y" || obx[1].Get(5, 4) != to {
					out, _ := z.Encode()
					t.Fatalf("ZAM^Z03 %q", out)
				}
				return
			}
		case <-ctx.Done():
			t.Fatalf("no ZAM^Z03 reached the DPI\n%s", d.errb)
		}
	}
}
