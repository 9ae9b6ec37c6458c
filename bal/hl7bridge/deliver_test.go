package hl7bridge_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
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
	dpiClient := startDPI(t, func(m *hl7v2.Message, o *hl7v2.AckOptions) error {
		if code, _ := m.Type(); code == "MDM" {
			got <- m
			n.Add(1)
			if body := m.All("OBX")[1].Get(5, 5); body == base64.StdEncoding.EncodeToString([]byte("Bonjour 1")) {
				o.Code = hl7v2.AckError
				o.Errors = []hl7v2.ErrorDetail{{Condition: hl7v2.CondApplication, AppCode: "902", AppText: "Identifiant patient inconnu", AppCodeSystem: "applicationErrorCode"}}
			}
		}
		return nil
	}, nil)

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

// TestHL7BridgeDeliverReplace: a practice's software mails version 1 of a document and then
// version 2, which replaces it; the DPI gets the first as MDM^T02 (ORC-1 NW, OBX-11 F, TXA-12
// its id) and the second as MDM^T10 (ORC-1 RO, OBX-11 C, TXA-12 its id, TXA-13 the id of
// version 1), as CI-SIS Trans-CDA-MSS writes a replacement.
func TestHL7BridgeDeliverReplace(t *testing.T) {
	got, dpiClient := acceptingDPI(t)
	e := startBridge(t, dpiClient)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, wstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.client.Watch(wctx, e.bridge.Deliver, nil) }()
	defer func() { wstop(); <-done }()

	sender := sandboxClient(t, e.dir, doc)
	in := cda.Sample(cda.KindN1)
	in.ID.Extension += "-v1"
	id1 := in.ID
	v2 := *in
	v2.ID.Extension, v2.Version, v2.Replaces = id1.Extension[:len(id1.Extension)-3]+"-v2", 2, &id1
	for _, doc1 := range []*cda.Input{in, &v2} {
		msg, err := bal.NewDocumentMessage(mssante.MustAddress("Cabinet", doc), []mssante.Address{mssante.MustAddress("DPI", dpi)}, doc1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sender.Send(ctx, msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range 2 {
		var m *hl7v2.Message
		select {
		case m = <-got:
		case <-ctx.Done():
			t.Fatal("the DPI got no MDM")
		}
		_, event := m.Type()
		txa, orc, obx := m.Segment("TXA"), m.Segment("ORC"), m.Segment("OBX")
		var ok bool
		switch txa.Get(12, 1) {
		case id1.Extension:
			ok = event == "T02" && orc.Get(1, 1) == "NW" && obx.Get(11, 1) == "F" && txa.Get(13, 1) == ""
		case v2.ID.Extension:
			ok = event == "T10" && orc.Get(1, 1) == "RO" && obx.Get(11, 1) == "C" &&
				txa.Get(13, 1) == id1.Extension && txa.Get(13, 3) == id1.Root && txa.Get(13, 4) == "ISO"
		}
		if !ok || txa.Get(12, 3) != id1.Root || seen[event] {
			out, _ := m.Encode()
			t.Fatalf("MDM to the DPI: %.600q", out)
		}
		seen[event] = true
	}
}

// withRPLC rewrites an IHE_XDM.ZIP so that its METADATA.XML adds an RPLC association from its
// document entry to an entry the recipient never got, the CDA staying a first version.
func withRPLC(t *testing.T, z []byte) []byte {
	t.Helper()
	r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := zip.NewWriter(&out)
	for _, f := range r.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f.Name, "METADATA.XML") {
			entry := regexp.MustCompile(`<ExtrinsicObject id="([^"]+)"`).FindSubmatch(data)
			if entry == nil {
				t.Fatal("no document entry in METADATA.XML")
			}
			data = bytes.Replace(data, []byte("</RegistryObjectList>"), []byte(`<Association id="urn:uuid:5b1f3c2e-0d6a-4f7e-9c1b-2a3d4e5f6a7b" associationType="urn:ihe:iti:2007:AssociationType:RPLC" sourceObject="`+
				string(entry[1])+`" targetObject="urn:uuid:0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b"></Association></RegistryObjectList>`), 1)
		}
		fw, err := w.Create(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestHL7BridgeDeliverRPLCWithoutParent: a mail whose XDM metadata say the document replaces
// another while the CDA names no version it replaces cannot give TXA-13: the DPI gets nothing
// and the sender gets the MDN processed/Error with the code of an unprocessable document.
func TestHL7BridgeDeliverRPLCWithoutParent(t *testing.T) {
	got, dpiClient := acceptingDPI(t)
	e := startBridge(t, dpiClient)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, wstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.client.Watch(wctx, e.bridge.Deliver, nil) }()
	defer func() { wstop(); <-done }()

	sender := sandboxClient(t, e.dir, doc)
	msg, err := bal.NewDocumentMessage(mssante.MustAddress("Cabinet", doc), []mssante.Address{mssante.MustAddress("DPI", dpi)},
		cda.Sample(cda.KindN1), &bal.DocumentOptions{WantMDN: true})
	if err != nil {
		t.Fatal(err)
	}
	msg.XDM = withRPLC(t, msg.XDM)
	res, err := sender.Send(ctx, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := sender.Await(ctx, res.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Status != bal.StatusError || rs[0].MDNCode != mssante.CodeOther {
		t.Fatalf("receipts %+v", rs)
	}
	select {
	case m := <-got:
		out, _ := m.Encode()
		t.Fatalf("the DPI got %.300q", out)
	default:
	}
}

// serveDPI runs a DPI's MLLP endpoint on l until the test ends: it parses each message,
// lets answer change the acknowledgement (AA by default) or drop the message unanswered (an
// error: the connection is closed), and acknowledges.
func serveDPI(t *testing.T, l net.Listener, answer func(m *hl7v2.Message, o *hl7v2.AckOptions) error) {
	t.Helper()
	srv, err := mllp.NewServer(&mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		m, err := hl7v2.Parse(b, nil)
		if err != nil {
			return nil, err
		}
		o := hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "D" + m.ControlID(), Time: time.Now()}
		if answer != nil {
			if err := answer(m, &o); err != nil {
				return nil, err
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
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// startDPI is serveDPI on a new loopback port, with a client of it for the bridge.
func startDPI(t *testing.T, answer func(m *hl7v2.Message, o *hl7v2.AckOptions) error, opts *mllp.ClientOptions) *mllp.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveDPI(t, l, answer)
	c := mllp.Dial(l.Addr().String(), opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// acceptingDPI is a DPI's MLLP endpoint that answers AA to everything and passes on each MDM.
func acceptingDPI(t *testing.T) (<-chan *hl7v2.Message, *mllp.Client) {
	t.Helper()
	got := make(chan *hl7v2.Message, 4)
	c := startDPI(t, func(m *hl7v2.Message, _ *hl7v2.AckOptions) error {
		if code, _ := m.Type(); code == "MDM" {
			got <- m
		}
		return nil
	}, nil)
	return got, c
}
