package hl7bridge_test

import (
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
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// mdmReq is an MDM of CI-SIS Trans-CDA-R2 ("Evénements déclenchants", TXA and ORC sections):
// the event, ORC-1 and the document's OBX-11 say the action (T02 NW F, T10 RO C, T04 CA D);
// TXA-12 is the CDA's id and TXA-13 the replaced one's, as extension^^root^ISO.
type mdmReq struct {
	id, event, orc, obx11 string
	txa12, txa13          *cda.OID
	cda                   []byte
	to                    []string
	extra                 string // segments appended as they are
}

func ei(o *cda.OID) []string {
	if o.Extension == "" {
		return []string{o.Root}
	}
	return []string{o.Extension, "", o.Root, "ISO"}
}

func (r mdmReq) encode(t *testing.T) []byte {
	t.Helper()
	m := hl7v2.New(hl7v2.Standard())
	m.Segments[0].Set(3, "DPI-X").Set(4, "HOP").Set(5, "PFI").Set(6, "HOP").Set(7, "20261207093000").
		Set(9, "MDM", r.event, "MDM_T02").Set(10, r.id).Set(11, "P").Set(12, "2.6").Set(17, "FRA").Set(18, "UNICODE UTF-8").
		Set(21, "2.1", "CISIS_CDA_HL7_V2")
	m.Add("EVN").Set(2, "20261207093000")
	m.Add("PID").SetValue(3, 0, hl7v2.Value{{"279035121518989"}, {""}, {""}, {"ASIP-SANTE-INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
	m.Add("PV1").Set(1, "1").Set(2, "I")
	if r.orc != "" {
		m.Add("ORC").Set(1, r.orc)
	}
	m.Add("OBR").Set(1, "1").Set(4, "11490-0", "Lettre de sortie", "LN")
	txa := m.Add("TXA").Set(1, "1").Set(2, "11490-0").Set(3, "TEXT").Set(17, "AU")
	if r.txa12 != nil {
		txa.Set(12, ei(r.txa12)...)
	}
	if r.txa13 != nil {
		txa.Set(13, ei(r.txa13)...)
	}
	m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "Lettre de sortie", "LN").
		Set(5, "", "text", "XML", "Base64", base64.StdEncoding.EncodeToString(r.cda)).Set(11, r.obx11)
	for _, a := range r.to {
		m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "NET", "X.400", a)
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(out, r.extra...)
}

// versions builds version 1 of the sample N1 document and version 2, which replaces it
// (relatedDocument RPLC, same setId).
func versions(t *testing.T) (v1, v2 []byte, id1, id2 cda.OID) {
	t.Helper()
	in := cda.Sample(cda.KindN1)
	in.ID.Extension += "-v1"
	id1 = in.ID
	d, err := cda.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if v1, err = cda.Marshal(d); err != nil {
		t.Fatal(err)
	}
	in.ID.Extension = strings.TrimSuffix(in.ID.Extension, "-v1") + "-v2"
	in.Version, in.Replaces = 2, &id1
	id2 = in.ID
	if d, err = cda.Build(in); err != nil {
		t.Fatal(err)
	}
	if v2, err = cda.Marshal(d); err != nil {
		t.Fatal(err)
	}
	return v1, v2, id1, id2
}

// TestHL7BridgeReplace: python3-hl7's mllp_send, as the DPI, sends the first version of a
// document (MDM^T02, ORC NW, OBX-11 F) and then its replacement (MDM^T10, ORC RO, OBX-11 C,
// TXA-13 naming the first); both are answered AA. The recipient's software reads, in the XDM
// metadata of the second mail, the RPLC association to the entry it got in the first, and the
// default body says it is a new version.
func TestHL7BridgeReplace(t *testing.T) {
	sender := testenv.Require(t, "mllp_send")
	e := startBridge(t, nil)
	v1, v2, id1, id2 := versions(t)
	host, port, _ := net.SplitHostPort(e.addr)
	mllpSend := func(msg []byte, id string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "mdm.hl7")
		if err := os.WriteFile(f, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sender, "--loose", "-p", port, "-f", f, host).CombinedOutput()
		if err != nil {
			t.Fatalf("mllp_send: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("MSA|AA|"+id)) {
			t.Fatalf("ACK from the bridge:\n%q", out)
		}
	}
	recv := sandboxClient(t, e.dir, doc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := make(chan *bal.Incoming, 2)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(wctx, func(_ context.Context, in *bal.Incoming) error {
			if strings.HasPrefix(in.MessageID, "hl7-") {
				got <- in
			}
			return nil
		}, nil)
	}()
	defer func() { stop(); <-done }()
	wait := func() *bal.Incoming {
		t.Helper()
		select {
		case in := <-got:
			if n := len(in.Documents()); n != 1 {
				t.Fatalf("%d documents (XDM error %v)", n, in.XDMError)
			}
			return in
		case <-ctx.Done():
			t.Fatal("no mail")
		}
		return nil
	}

	mllpSend(mdmReq{id: "V1", event: "T02", orc: "NW", obx11: "F", txa12: &id1, cda: v1, to: []string{doc}}.encode(t), "V1")
	first := wait().Documents()[0].Entry
	mllpSend(mdmReq{id: "V2", event: "T10", orc: "RO", obx11: "C", txa12: &id2, txa13: &id1, cda: v2, to: []string{doc}}.encode(t), "V2")
	in := wait()
	second := in.Documents()[0].Entry
	if second.Replaces == "" || second.Replaces != first.EntryUUID || second.UniqueID == first.UniqueID {
		t.Fatalf("replacement entry %s (%s) replaces %q; first entry %s (%s)", second.EntryUUID, second.UniqueID, second.Replaces, first.EntryUUID, first.UniqueID)
	}
	if !strings.Contains(in.Message.Text, "nouvelle version") {
		t.Fatalf("body %q", in.Message.Text)
	}
}

// TestHL7BridgeReplaceRefusals: each message whose event, ORC-1, OBX-11, TXA and CDA do not
// say the same thing, and each deletion, is answered AE with an ERR naming the field, and
// nothing is mailed.
func TestHL7BridgeReplaceRefusals(t *testing.T) {
	e := startBridge(t, nil)
	v1, v2, id1, id2 := versions(t)
	other := cda.OID{Root: id1.Root, Extension: "autre"}
	ok := mdmReq{event: "T10", orc: "RO", obx11: "C", txa12: &id2, txa13: &id1, cda: v2, to: []string{doc}}
	with := func(id string, f func(r *mdmReq)) []byte {
		r := ok
		r.id = id
		f(&r)
		return r.encode(t)
	}
	for _, tc := range []struct {
		name      string
		msg       []byte
		err2      string // ERR-2.1 and ERR-2.3: segment and field
		err3      string // ERR-3.1
		wantField string
	}{
		{"T10 without TXA-13", with("X1", func(r *mdmReq) { r.txa13 = nil }), "TXA", "101", "13"},
		{"T10 whose TXA-13 is not the replaced document", with("X2", func(r *mdmReq) { r.txa13 = &other }), "TXA", "207", "13"},
		{"T10 whose TXA-12 is not the CDA's id", with("X3", func(r *mdmReq) { r.txa12 = &other }), "TXA", "207", "12"},
		{"T10 with a CDA that replaces nothing", with("X4", func(r *mdmReq) { r.cda, r.txa12 = v1, &id1 }), "OBX", "101", "5"},
		{"T10 with OBX-11 F", with("X5", func(r *mdmReq) { r.obx11 = "F" }), "OBX", "207", "11"},
		{"T10 with ORC-1 NW", with("X6", func(r *mdmReq) { r.orc = "NW" }), "ORC", "207", "1"},
		{"T10 with OBX-11 outside table 0085's F, C, D", with("X7", func(r *mdmReq) { r.obx11 = "X" }), "OBX", "103", "11"},
		{"T02 of a CDA that replaces another", with("X8", func(r *mdmReq) { r.event, r.orc, r.obx11 = "T02", "NW", "F" }), "OBX", "207", "5"},
		{"T04 deletion", with("X9", func(r *mdmReq) { r.event, r.orc, r.obx11 = "T04", "CA", "D" }), "MSH", "201", "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := send(t, e, tc.msg)
			code, _, _ := hl7v2.AckOf(ack)
			errSeg := ack.Segment("ERR")
			if code != "AE" || errSeg == nil || errSeg.Get(3, 1) != tc.err3 || errSeg.Get(2, 1) != tc.err2 || errSeg.Get(2, 3) != tc.wantField {
				out, _ := ack.Encode()
				t.Fatalf("ACK %q", strings.ReplaceAll(string(out), "\r", "\n"))
			}
		})
	}
	if n := countMails(t, e, doc, "hl7-"); n != 0 {
		t.Fatalf("%d mails sent for refused messages", n)
	}
}

// TestHL7BridgeORUActions: in an ORU^R01, OBX-11 says the action (CI-SIS Trans-CDA-R2): C with
// ORC-1 RO and a CDA that replaces another is mailed as a replacement (AA); D (a deletion), C
// with ORC-1 NW, and C with a CDA that replaces nothing are refused AE, and nothing of those is
// mailed.
func TestHL7BridgeORUActions(t *testing.T) {
	e := startBridge(t, nil)
	v1, v2, _, _ := versions(t)
	oru := func(id, orc, obx11 string, doc1 []byte) []byte {
		m := hl7v2.New(hl7v2.Standard())
		m.Segments[0].Set(3, "SIL").Set(4, "LABO").Set(5, "PFI").Set(6, "HOP").Set(7, "20261207093000").
			Set(9, "ORU", "R01", "ORU_R01").Set(10, id).Set(11, "P").Set(12, "2.5").Set(18, "UNICODE UTF-8")
		m.Add("PID").SetValue(3, 0, hl7v2.Value{{"279035121518989"}, {""}, {""}, {"ASIP-SANTE-INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
		m.Add("ORC").Set(1, orc)
		m.Add("OBR").Set(1, "1").Set(4, "11490-0", "Lettre de sortie", "LN")
		m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "", "LN").
			Set(5, "", "TEXT", "XML", "Base64", base64.StdEncoding.EncodeToString(doc1)).Set(11, obx11)
		m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "", "X.400", doc)
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name, code, err2, err3 string
		msg                    []byte
	}{
		{"deletion", "AE", "OBX", "207", oru("O1", "CA", "D", v2)},
		{"replacement with ORC-1 NW", "AE", "ORC", "207", oru("O2", "NW", "C", v2)},
		{"replacement of nothing", "AE", "OBX", "101", oru("O3", "RO", "C", v1)},
		{"replacement", "AA", "", "", oru("O4", "RO", "C", v2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack := send(t, e, tc.msg)
			code, _, _ := hl7v2.AckOf(ack)
			errSeg := ack.Segment("ERR")
			if errSeg == nil {
				errSeg = &hl7v2.Segment{}
			}
			if code != tc.code || errSeg.Get(2, 1) != tc.err2 || errSeg.Get(3, 1) != tc.err3 {
				out, _ := ack.Encode()
				t.Fatalf("ACK %q", strings.ReplaceAll(string(out), "\r", "\n"))
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.info.WaitFor(ctx, doc, func(raw []byte) bool { return bytes.Contains(raw, []byte("hl7-")) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := countMails(t, e, doc, "hl7-"); n != 1 {
		t.Fatalf("%d mails, want the replacement alone", n)
	}
}
