package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// On "mssante dev": the example runs the bridge for the hospital's DPI; an MDM^T02 for the
// practice's software is acknowledged AA and the mail arrives; one for a domain off the liste
// blanche is refused AE, ERR-5 550.
func TestHL7BridgeExample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ectx, estop := context.WithCancel(ctx)
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ectx, []string{"--sandbox", dir, "--bal", "dpi@" + sandbox.Hopital, "--listen", "127.0.0.1:0",
			"--state", t.TempDir()}, &out)
	}()
	defer func() { estop(); <-done }()
	re := regexp.MustCompile(`MLLP on (\S+)`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("example stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	d, err := cda.Build(cda.Sample(cda.KindN1))
	if err != nil {
		t.Fatal(err)
	}
	xml, _ := cda.Marshal(d)
	mdm := func(id, to string) []byte {
		m := hl7v2.New(hl7v2.Standard())
		m.Segments[0].Set(3, "DPI").Set(4, "HOP").Set(9, "MDM", "T02", "MDM_T02").Set(10, id).Set(11, "P").Set(12, "2.6")
		m.Add("PID").SetValue(3, 0, hl7v2.Value{{d.RecordTargets[0].PatientRole.IDs[0].Extension}, {""}, {""}, {"INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
		m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "", "LN").Set(5, "", "text", "XML", "Base64", base64.StdEncoding.EncodeToString(xml)).Set(11, "F")
		m.Add("PRT").Set(4, "RCT").Set(15, "", "NET", "X.400", to)
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c := mllp.Dial(addr, nil)
	defer c.Close()
	to := "logiciel@" + sandbox.Cabinet
	ack, err := c.Send(ctx, mdm("EX-1", to))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := hl7v2.AckOf(ack); code != "AA" {
		t.Fatalf("ACK %s", code)
	}
	if _, err := sb.Info.WaitFor(ctx, to, func(raw []byte) bool { return bytes.Contains(raw, []byte("IHE_XDM.ZIP")) }); err != nil {
		t.Fatal(err)
	}
	ack, err = c.Send(ctx, mdm("EX-2", "dr@hors-liste.example.fr"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := hl7v2.AckOf(ack); code != "AE" || ack.Segment("ERR").Get(5, 1) != "550" {
		t.Fatalf("ACK %s", code)
	}
}
