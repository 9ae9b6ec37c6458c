package hl7bridge

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// The business acknowledgements of CI-SIS Trans-CDA-R2 (structure ZAM_Z01, table AckMetierZAM):
// ZAM^Z02 from a DSN (delivery to the recipient's mailbox), ZAM^Z03 from an MDN (read or
// integrated), one per recipient, sent to the DPI's MLLP endpoint (Options.DPI) from a durable
// queue.

// OnReceipt turns a final receipt of a message the bridge sent into ZAM^Z02 or ZAM^Z03 and
// queues it durably (an fsynced file under Options.StateDir) before it returns, so that a
// receipt bal has consumed is never lost; Run sends the queue to the DPI. Pass it as
// bal.WatchOptions.OnReceipt of the watcher of Options.Client. Receipts of other messages,
// and intermediate statuses, are ignored.
func (b *Bridge) OnReceipt(ctx context.Context, r bal.Receipt) {
	if b.opts.DPI == nil {
		return
	}
	local, _, _ := strings.Cut(r.MessageID, "@")
	rest, ok := strings.CutPrefix(local, "hl7-")
	if !ok {
		return
	}
	_, hexID, _ := strings.Cut(rest, "-")
	orig, err := hex.DecodeString(hexID)
	if err != nil || len(orig) == 0 {
		return
	}
	zam, ok := b.zam(r, string(orig))
	if !ok {
		return
	}
	out, err := zam.Encode()
	if err != nil {
		b.log.Error("hl7bridge: ZAM not encoded", "err", err)
		return
	}
	// Names sort in queueing order: the DPI gets the ZAMs in the order of the receipts.
	name := fmt.Sprintf("%020d-%s.hl7", b.opts.Now().UnixNano(), zam.ControlID())
	if err := writeFileSync(filepath.Join(b.zamDir(), name), out); err != nil {
		b.log.Error("hl7bridge: ZAM not queued", "err", err)
		return
	}
	select {
	case b.zamKick <- struct{}{}:
	default:
	}
}

func (b *Bridge) zamDir() string { return filepath.Join(b.opts.StateDir, "zam") }

// Run sends the queued ZAMs to Options.DPI, oldest first, until ctx ends: each one is sent
// again, with a backoff capped at Options.MaxRetryWait, until the DPI answers AA (an AE is
// logged and the ZAM set aside under zam/refused). Run it beside the watcher; the queue
// survives restarts.
func (b *Bridge) Run(ctx context.Context) error {
	if b.opts.DPI == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	wait := time.Second
	for {
		sent, err := b.sendQueued(ctx)
		if err != nil {
			b.log.Warn("hl7bridge: ZAM not acknowledged, retrying", "err", err)
		} else {
			wait = time.Second
		}
		d := wait
		if err == nil && !sent {
			d = time.Minute // idle: a kick from OnReceipt ends the wait
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.zamKick:
		case <-time.After(d):
		}
		if err != nil {
			wait = min(2*wait, b.opts.MaxRetryWait)
		}
	}
}

// sendQueued sends the queue in order and stops at the first ZAM the DPI did not take.
func (b *Bridge) sendQueued(ctx context.Context) (sent bool, err error) {
	entries, err := os.ReadDir(b.zamDir())
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".hl7") {
			continue
		}
		path := filepath.Join(b.zamDir(), e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return sent, err
		}
		ack, err := b.opts.DPI.Send(ctx, data)
		if err != nil {
			return sent, err
		}
		switch code, _, _ := hl7v2.AckOf(ack); code {
		case hl7v2.AckAccept:
			err = os.Remove(path)
		case hl7v2.AckError:
			b.log.Warn("hl7bridge: DPI refused a ZAM, set aside", "file", e.Name())
			err = os.Rename(path, filepath.Join(b.zamDir(), "refused", e.Name()))
		default:
			return sent, fmt.Errorf("hl7bridge: DPI answered %q to a ZAM", code)
		}
		if err != nil {
			return sent, err
		}
		sent = true
	}
	return sent, nil
}

// zam builds the ZAM for a final receipt; orig is the MSH-10 of the DPI's message.
func (b *Bridge) zam(r bal.Receipt, orig string) (*hl7v2.Message, bool) {
	var event, ackCode, ackText, who, whoText string
	okStatus := false
	switch r.Status {
	case bal.StatusDelivered, bal.StatusFailed:
		event, ackCode, ackText = "Z02", "ACK_RECEPTION_MSS", "Accusé de réception MSSanté"
		who, whoText = "DESTINATAIRE_MSS", "Destinataire MSSanté"
		okStatus = r.Status == bal.StatusDelivered
	case bal.StatusProcessed, bal.StatusDisplayed, bal.StatusError:
		event, ackCode, ackText = "Z03", "ACK_LECTURE_MSS", "Accusé de lecture"
		who, whoText = "LECTEUR_MSS", "Lecteur du courriel MSSanté"
		okStatus = r.Status != bal.StatusError
	default:
		return nil, false
	}
	m := hl7v2.New(hl7v2.Standard())
	m.Segments[0].Set(3, b.opts.Application).Set(4, b.opts.Facility).
		Set(7, b.opts.Now().Format("20060102150405")).Set(9, "ZAM", event, "ZAM_Z01").
		Set(10, b.controlID()).Set(11, "P").Set(12, "2.6").Set(17, "FRA").Set(18, "UNICODE UTF-8").
		Set(21, "2.1", "CISIS_CDA_HL7_V2")
	yn := "N"
	if okStatus {
		yn = "Y"
	}
	m.Add("OBX").Set(1, "1").Set(2, "CWE").Set(3, ackCode, ackText, "AckMetierZAM").Set(4, orig).
		Set(5, yn, "", "expandedYes-NoIndicator").Set(11, "F")
	m.Add("OBX").Set(1, "2").Set(2, "XTN").Set(3, who, whoText, "AckMetierZAM").
		Set(5, "", "", "X.400", r.Recipient).Set(11, "F")
	if !okStatus {
		e := m.Add("ERR").Set(3, "207", "Application error", "messageErrorCondition").Set(4, "E")
		switch {
		case r.SMTPCode > 0:
			e.Set(5, strconv.Itoa(r.SMTPCode), r.Detail, "SMTPERRORCODE")
		case r.MDNCode != 0:
			e.Set(5, strconv.Itoa(int(r.MDNCode)), r.Detail, "applicationErrorCode")
		}
	}
	return m, true
}
