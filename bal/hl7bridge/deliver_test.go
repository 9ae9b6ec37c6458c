package hl7bridge_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7BridgeDeliver: a practice's software mails two documents to the hospital's BAL
// applicative; the bridge hands each to the DPI as an MDM^T02 over MLLP (the mail's body in
// OBX 2); the DPI accepts the first (AA) and refuses the second (AE, ERR-5 902, unknown
// patient), whichever order they come in; the sender gets the MDNs "processed" and
// "processed/Error 902".
func TestHL7BridgeDeliver(t *testing.T) {
	got := make(chan *hl7v2.Message, 4)
	var n atomic.Int32
	dpiSrv, err := mllp.NewServer(&mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		m, err := hl7v2.Parse(b, nil)
		if err != nil {
			return nil, err
		}
		o := hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "D" + m.ControlID(), Time: time.Now()}
		if code, _ := m.Type(); code == "MDM" {
			got <- m
			n.Add(1)
			if body := m.All("OBX")[1].Get(5, 5); body == base64.StdEncoding.EncodeToString([]byte("Bonjour 1")) {
				o.Code = hl7v2.AckError
				o.Errors = []hl7v2.ErrorDetail{{Condition: hl7v2.CondApplication, AppCode: "902", AppText: "Identifiant patient inconnu", AppCodeSystem: "applicationErrorCode"}}
			}
		}
		ack, err := hl7v2.Ack(m, o)
		if err != nil {
			return nil, err
		}
		return ack.Encode()
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go dpiSrv.Serve(l)
	defer dpiSrv.Close()
	dpiClient := mllp.Dial(l.Addr().String(), nil)
	defer dpiClient.Close()

	e := startBridge(t, dpiClient)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, wstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- e.client.Watch(wctx, e.bridge.Deliver, &bal.WatchOptions{OnReceipt: e.bridge.OnReceipt})
	}()
	defer func() { wstop(); <-done }()

	sender := sandboxClient(t, e.dir, doc)
	var ids []string
	for i := range 2 {
		msg, err := bal.NewDocumentMessage(mssante.MustAddress("Cabinet", doc), []mssante.Address{mssante.MustAddress("DPI", dpi)},
			cda.Sample(cda.KindN1), &bal.DocumentOptions{WantMDN: true, Text: fmt.Sprintf("Bonjour %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := sender.Send(ctx, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MessageID)
	}
	want := []struct {
		status bal.Status
		code   mssante.MDNCode
	}{{bal.StatusProcessed, 0}, {bal.StatusError, 902}}
	for i, id := range ids {
		rs, err := sender.Await(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Status != want[i].status || rs[0].MDNCode != want[i].code {
			t.Fatalf("message %d: receipts %+v", i, rs)
		}
	}
	for range 2 {
		m := <-got
		pid, obx := m.Segment("PID"), m.Segment("OBX")
		if m.Header(21, 2) != "CISIS_CDA_HL7_LPS" || pid.Get(3, 1) != "279035121518989" || pid.Get(3, 5) != "INS" ||
			obx.Get(5, 4) != "Base64" || m.All("PRT")[0].Get(15, 4) != doc {
			out, _ := m.Encode()
			t.Fatalf("MDM to the DPI: %.400q", out)
		}
		xml, err := base64.StdEncoding.DecodeString(obx.Get(5, 5))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := cda.ParseBytes(xml, nil); err != nil || !d.IsN1() {
			t.Fatalf("CDA handed to the DPI: %v", err)
		}
	}
}
