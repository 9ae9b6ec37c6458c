package hl7bridge_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7BridgeORU: an ORU^R01 (v2.5) carrying an N1 and a structured LDL-SES together, as
// CI-SIS Trans-CDA-R2 allows, becomes one mail whose XDM holds both documents; the
// recipient's software opens it with the patient's INS. A structured document alone, without
// a PDF copy, is refused.
func TestHL7BridgeORU(t *testing.T) {
	e := startBridge(t, nil)
	cdaB64 := func(k cda.Kind) string {
		in := cda.Sample(k)
		in.ID.Extension += "-" + string(k) // two documents, two ids
		d, err := cda.Build(in)
		if err != nil {
			t.Fatal(err)
		}
		x, err := cda.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(x)
	}
	oru := func(id string, kinds ...cda.Kind) []byte {
		m := hl7v2.New(hl7v2.Standard())
		m.Segments[0].Set(3, "SIL").Set(4, "LABO").Set(5, "PFI").Set(6, "HOP").Set(7, "20261207093000").
			Set(9, "ORU", "R01", "ORU_R01").Set(10, id).Set(11, "P").Set(12, "2.5").Set(18, "UNICODE UTF-8")
		m.Add("PID").SetValue(3, 0, hl7v2.Value{{"279035121518989"}, {""}, {""}, {"ASIP-SANTE-INS-NIR", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
		m.Add("ORC").Set(1, "NW")
		m.Add("OBR").Set(1, "1").Set(4, "11502-2", "CR d'examens biologiques", "LN")
		for i, k := range kinds {
			m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11502-2", "", "LN").Set(4, string(rune('1'+i))).
				Set(5, "", "TEXT", "XML", "Base64", cdaB64(k)).Set(11, "F")
		}
		m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "", "X.400", doc)
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if a := send(t, e, oru("ORU-1", cda.KindN1, cda.KindLDLSES)); a.Segment("MSA").Get(1, 1) != "AA" {
		out, _ := a.Encode()
		t.Fatalf("ACK %q", out)
	}
	ack := send(t, e, oru("ORU-2", cda.KindLDLSES))
	if code, _, _ := hl7v2.AckOf(ack); code != "AE" || ack.Segment("ERR").Get(3, 1) != "101" {
		out, _ := ack.Encode()
		t.Fatalf("structured alone: %q", out)
	}
	recv := sandboxClient(t, e.dir, doc)
	got := make(chan *bal.Incoming, 1)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(wctx, func(_ context.Context, in *bal.Incoming) error {
			select {
			case got <- in:
			default:
			}
			return nil
		}, nil)
	}()
	defer func() { stop(); <-done }()
	select {
	case in := <-got:
		if n := len(in.Documents()); n != 2 || in.INS.Value != "279035121518989" {
			t.Fatalf("%d documents, INS %q", n, in.INS.Value)
		}
	case <-ctx.Done():
		t.Fatal("no mail")
	}
}
