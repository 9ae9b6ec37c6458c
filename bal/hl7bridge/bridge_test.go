package hl7bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/hl7bridge"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

var (
	dpi = "dpi@" + sandbox.Hopital
	doc = "logiciel@" + sandbox.Cabinet
)

type env struct {
	dir    string
	info   *sandbox.Info
	addr   string // the bridge's MLLP address
	client *bal.Client
	bridge *hl7bridge.Bridge
}

// startBridge runs a trust space, the bal client of the hospital's BAL applicative, the
// bridge and its MLLP server on loopback.
func startBridge(t *testing.T, dpiEndpoint *mllp.Client) *env {
	t.Helper()
	return startBridgeWith(t, dpiEndpoint, nil)
}

// startBridgeWith is startBridge with operators outside the trust space, made by extra from
// the sandbox folder before the sandbox starts (its PKI issues their certificates).
func startBridgeWith(t *testing.T, dpiEndpoint *mllp.Client, extra func(dir string) []sandbox.Extra) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	so := &sandbox.Options{Dir: dir}
	if extra != nil {
		so.Extra = extra(dir)
	}
	sb, err := sandbox.Start(ctx, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := bal.OptionsFromSandbox(dir, dpi)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br, err := hl7bridge.New(&hl7bridge.Options{Client: c, From: mssante.MustAddress("DPI", dpi), StateDir: t.TempDir(),
		DPI: dpiEndpoint, MaxRetryWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mllp.NewServer(&mllp.Options{Handler: br.Handle})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &env{dir: dir, info: info, addr: l.Addr().String(), client: c, bridge: br}
}

// mdm builds an MDM^T02 shaped as CI-SIS Trans-CDA-R2 says, with the sample N1 document.
func mdm(t *testing.T, id, ins string, to ...string) []byte {
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
	m.Segments[0].Set(3, "DPI-X").Set(4, "HOP").Set(5, "PFI").Set(6, "HOP").Set(7, "20261207093000").
		Set(9, "MDM", "T02", "MDM_T02").Set(10, id).Set(11, "P").Set(12, "2.6").Set(17, "FRA").Set(18, "UNICODE UTF-8").
		Set(21, "2.1", "CISIS_CDA_HL7_V2")
	m.Add("EVN").Set(2, "20261207093000")
	pid := m.Add("PID")
	if ins != "" {
		pid.SetValue(3, 0, hl7v2.Value{{ins}, {""}, {""}, {"ASIP-SANTE-INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
	}
	pid.Set(5, "PAT", "TEST")
	m.Add("PV1").Set(1, "1").Set(2, "I")
	m.Add("TXA").Set(1, "1").Set(2, "11490-0").Set(3, "TEXT").Set(17, "AU")
	m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "Lettre de sortie", "LN").
		Set(5, "", "text", "XML", "Base64", base64.StdEncoding.EncodeToString(xml)).Set(11, "F")
	m.Add("PRT").Set(2, "UC").Set(4, "SB", "", "participation")
	for _, a := range to {
		m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "NET", "X.400", a)
	}
	m.Add("OBX").Set(1, "2").Set(2, "CWE").Set(3, "ACK_LECTURE_MSS", "Accusé de lecture", "MetaDMPMSS").
		Set(5, "N", "", "expandedYes-NoIndicator").Set(11, "F")
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// send writes msg in one frame, even a malformed one, and reads the ACK.
func send(t *testing.T, e *env, msg []byte) *hl7v2.Message {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	if err := mllp.WriteFrame(conn, msg); err != nil {
		t.Fatal(err)
	}
	raw, err := mllp.ReadFrame(bufio.NewReader(conn), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := hl7v2.Parse(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func countMails(t *testing.T, e *env, addr, marker string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := e.info.Messages(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		if bytes.Contains(m, []byte(marker)) {
			n++
		}
	}
	return n
}

// TestHL7BridgeSend: python3-hl7's mllp_send, as the DPI, sends an MDM^T02; the ACK is AA; the
// mail reaches the recipient with the XDM; the same message sent again is answered AA from the
// journal and mailed once only.
func TestHL7BridgeSend(t *testing.T) {
	sender := testenv.Require(t, "mllp_send")
	e := startBridge(t, nil)
	reply := "secretariat.cardiologie@" + sandbox.Hopital
	msg := append(mdm(t, "MSG-PY-1", "279035121518989", doc), []byte("PRT||UC||REPLY^^participation|||||||||||^^X.400^"+reply+"\r")...)
	f := filepath.Join(t.TempDir(), "mdm.hl7")
	if err := os.WriteFile(f, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	out, err := exec.Command(sender, "--loose", "-p", port, "-f", f, host).CombinedOutput()
	if err != nil {
		t.Fatalf("mllp_send: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("MSA|AA|MSG-PY-1")) {
		t.Fatalf("ACK from the bridge:\n%q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	marker := "hl7-"
	if _, err := e.info.WaitFor(ctx, doc, func(raw []byte) bool {
		return bytes.Contains(raw, []byte(marker)) && bytes.Contains(raw, []byte("IHE_XDM.ZIP")) && bytes.Contains(raw, []byte("Reply-To: <"+reply+">"))
	}); err != nil {
		t.Fatal(err)
	}
	// The DPI did not get the ACK and sends again: AA, no second mail.
	ack := send(t, e, msg)
	if code, id, _ := hl7v2.AckOf(ack); code != "AA" || id != "MSG-PY-1" {
		t.Fatalf("duplicate: %s %s", code, id)
	}
	time.Sleep(2 * time.Second)
	if n := countMails(t, e, doc, marker); n != 1 {
		t.Fatalf("%d mails for one message", n)
	}
}

// TestHL7BridgeRefusals: each refusal is an AE with an ERR naming the cause, and nothing is
// mailed to anyone.
func TestHL7BridgeRefusals(t *testing.T) {
	e := startBridge(t, nil)
	for _, tc := range []struct {
		name string
		msg  []byte
		err3 string // ERR-3.1
		err5 string // ERR-5.1
	}{
		{"one recipient off the whitelist", mdm(t, "R1", "279035121518989", doc, "dr@hors-liste.example.fr"), "207", "550"},
		{"no INS", mdm(t, "R2", "", doc), "101", "903"},
		{"invalid INS", mdm(t, "R3", "279035121518988", doc), "102", "905"},
		{"INS not the CDA's", mdm(t, "R4", "180017500000035", doc), "207", "904"},
		{"no recipient", mdm(t, "R5", "279035121518989"), "101", ""},
		{"bad address", mdm(t, "R6", "279035121518989", "not an address"), "102", ""},
		{"patient recipient of a document invisible to the patient", append(mdm(t, "R13", "279035121518989", "279035121518989@patient.mssante.fr"),
			[]byte("OBX|3|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r")...), "207", ""},
		{"professional recipient of a document masked to professionals", append(mdm(t, "R14", "279035121518989", doc),
			[]byte("OBX|3|CWE|MASQUE_PS^Masqu\xc3\xa9 aux professionnels de Sant\xc3\xa9^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r")...), "207", ""},
		{"bad reply-to", append(mdm(t, "R12", "279035121518989", doc), []byte("PRT||UC||REPLY^^participation|||||||||||^^X.400^not an address\r")...), "102", ""},
		{"unsupported event", bytes.Replace(mdm(t, "R7", "279035121518989", doc), []byte("MDM^T02"), []byte("MDM^T04"), 1), "201", ""},
		{"unsupported type", bytes.Replace(mdm(t, "R8", "279035121518989", doc), []byte("MDM^T02"), []byte("ADT^A01"), 1), "200", ""},
		{"unsupported version", bytes.Replace(mdm(t, "R9", "279035121518989", doc), []byte("|P|2.6|"), []byte("|P|2.3|"), 1), "203", ""},
		{"malformed segment", append(mdm(t, "R10", "279035121518989", doc), []byte("pid|x\r")...), "199", ""},
		{"no CDA", []byte("MSH|^~\\&|DPI-X|HOP|PFI|HOP|20261207093000||MDM^T02^MDM_T02|R11|P|2.6\rPID|||279035121518989^^^A&1.2.250.1.213.1.4.10&ISO^INS\rPRT||UC||RCT|||||||||||^NET^X.400^" + doc + "\r"), "101", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := send(t, e, tc.msg)
			code, _, _ := hl7v2.AckOf(ack)
			errSeg := ack.Segment("ERR")
			// Sender and receiver swapped, as in the guide's examples.
			swapped := ack.Header(3, 1) == "PFI" && ack.Header(5, 1) == "DPI-X"
			if code != "AE" || errSeg == nil || errSeg.Get(3, 1) != tc.err3 || errSeg.Get(5, 1) != tc.err5 || !swapped {
				out, _ := ack.Encode()
				t.Fatalf("ACK %q", strings.ReplaceAll(string(out), "\r", "\n"))
			}
		})
	}
	if n := countMails(t, e, doc, "hl7-"); n != 0 {
		t.Fatalf("%d mails sent for refused messages", n)
	}
}

// TestHL7BridgeOversize: a message over the MLLP cap is answered AE 199 with its MSH-10, and
// nothing is mailed.
func TestHL7BridgeOversize(t *testing.T) {
	e := startBridge(t, nil)
	srv, err := mllp.NewServer(&mllp.Options{Handler: e.bridge.Handle, Oversize: e.bridge.Oversize, MaxMessageBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	c := mllp.Dial(l.Addr().String(), &mllp.ClientOptions{Attempts: 1})
	defer c.Close()
	ack, err := c.Send(context.Background(), mdm(t, "BIG-1", "279035121518989", doc))
	if err != nil {
		t.Fatal(err)
	}
	if code, id, _ := hl7v2.AckOf(ack); code != "AE" || id != "BIG-1" || ack.Segment("ERR").Get(3, 1) != "199" {
		out, _ := ack.Encode()
		t.Fatalf("ACK %q", out)
	}
	if n := countMails(t, e, doc, "hl7-"); n != 0 {
		t.Fatalf("%d mails", n)
	}
}
