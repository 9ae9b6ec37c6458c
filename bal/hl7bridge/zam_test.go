package hl7bridge_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/hl7bridge"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7BridgeZAM: the DPI sends an MDM^T02 asking for a read receipt; the recipient's
// software integrates the mail and answers its MDN; the bridge's watcher turns the receipts
// into ZAM^Z03 (and ZAM^Z02 from a DSN when one comes), queued and sent by Run to the DPI's
// MLLP endpoint, which drops the first one unanswered: Run sends it again until it is
// acknowledged.
func TestHL7BridgeZAM(t *testing.T) {
	zams := make(chan *hl7v2.Message, 16)
	var calls atomic.Int32
	dpiClient := startDPI(t, func(m *hl7v2.Message, _ *hl7v2.AckOptions) error {
		if calls.Add(1) == 1 {
			return errors.New("DPI busy") // connection closed, no ACK
		}
		zams <- m
		return nil
	}, &mllp.ClientOptions{Attempts: 1, AckTimeout: 10 * time.Second})

	e := startBridge(t, dpiClient)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recv := sandboxClient(t, e.dir, doc)
	done := make(chan error, 2)
	go func() { done <- recv.Watch(ctx, func(context.Context, *bal.Incoming) error { return nil }, nil) }()
	go func() {
		done <- e.client.Watch(ctx, func(context.Context, *bal.Incoming) error { return bal.ErrLeave },
			&bal.WatchOptions{OnReceipt: e.bridge.OnReceipt})
	}()
	go e.bridge.Run(ctx)
	defer func() { cancel(); <-done; <-done }()

	msg := bytes.Replace(mdm(t, "MSG-ZAM-1", "279035121518989", doc),
		[]byte("ACK_LECTURE_MSS^Accus\xc3\xa9 de lecture^MetaDMPMSS||N"), []byte("ACK_LECTURE_MSS^Accus\xc3\xa9 de lecture^MetaDMPMSS||Y"), 1)
	if code, _, _ := hl7v2.AckOf(send(t, e, msg)); code != "AA" {
		t.Fatalf("ACK %s", code)
	}
	for {
		select {
		case z := <-zams:
			code, event := z.Type()
			obx := z.All("OBX")
			if code != "ZAM" || len(obx) != 2 || obx[0].Get(4, 1) != "MSG-ZAM-1" || obx[1].Get(5, 4) != doc {
				out, _ := z.Encode()
				t.Fatalf("ZAM %q", out)
			}
			if event == "Z03" {
				if obx[0].Get(3, 1) != "ACK_LECTURE_MSS" || obx[0].Get(5, 1) != "Y" || z.Segment("ERR") != nil {
					out, _ := z.Encode()
					t.Fatalf("ZAM^Z03 %q", out)
				}
				if calls.Load() < 2 {
					t.Fatal("the unacknowledged ZAM was not sent again")
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no ZAM^Z03 reached the DPI")
		}
	}
}

func sandboxClient(t *testing.T, dir, addr string) *bal.Client {
	t.Helper()
	o, err := bal.OptionsFromSandbox(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	o.MinBackoff, o.MaxBackoff, o.PollInterval = 20*time.Millisecond, 500*time.Millisecond, 2*time.Second
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHL7BridgeZAMQueueSurvivesRestart: a receipt that arrives while the DPI is down is queued
// on disk; a bridge started again on the same state folder delivers its ZAM^Z02 (with the SMTP
// code of a failed delivery in ERR-5) once the DPI listens.
func TestHL7BridgeZAMQueueSurvivesRestart(t *testing.T) {
	e := startBridge(t, nil)
	state := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // the DPI is down

	down := mllp.Dial(addr, &mllp.ClientOptions{Attempts: 1, AckTimeout: time.Second})
	defer down.Close()
	first, err := hl7bridge.New(&hl7bridge.Options{Client: e.client, From: mssante.MustAddress("", dpi), StateDir: state, DPI: down})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rctx, rstop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- first.Run(rctx) }()
	first.OnReceipt(ctx, bal.Receipt{MessageID: "hl7-0123456789abcdef-" + hex.EncodeToString([]byte("MSG-42")) + "@" + sandbox.Hopital,
		Recipient: doc, Status: bal.StatusFailed, SMTPCode: 550, Detail: "5.1.1", Final: true})
	first.OnReceipt(ctx, bal.Receipt{MessageID: "<other@" + sandbox.Hopital + ">", Recipient: doc, Status: bal.StatusFailed, Final: true})
	time.Sleep(500 * time.Millisecond)
	rstop()
	<-ran

	zams := make(chan *hl7v2.Message, 4)
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	serveDPI(t, l, func(m *hl7v2.Message, _ *hl7v2.AckOptions) error {
		zams <- m
		return nil
	})
	up := mllp.Dial(addr, nil)
	defer up.Close()
	second, err := hl7bridge.New(&hl7bridge.Options{Client: e.client, From: mssante.MustAddress("", dpi), StateDir: state, DPI: up})
	if err != nil {
		t.Fatal(err)
	}
	go second.Run(ctx)
	select {
	case z := <-zams:
		obx, errSeg := z.All("OBX"), z.Segment("ERR")
		if _, ev := z.Type(); ev != "Z02" || obx[0].Get(4, 1) != "MSG-42" || obx[0].Get(5, 1) != "N" ||
			errSeg == nil || errSeg.Get(5, 1) != "550" || errSeg.Get(5, 3) != "SMTPERRORCODE" {
			out, _ := z.Encode()
			t.Fatalf("ZAM %q", out)
		}
	case <-ctx.Done():
		t.Fatal("the queued ZAM was not sent after the restart")
	}
	select {
	case z := <-zams:
		t.Fatalf("a ZAM for a message the bridge did not send: %v", z.ControlID())
	case <-time.After(time.Second):
	}
}
