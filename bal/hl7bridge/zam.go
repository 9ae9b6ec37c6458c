package hl7bridge

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// The business acknowledgements of CI-SIS Trans-CDA-R2 (structure ZAM_Z01, table AckMetierZAM):
// ZAM^Z02 from a DSN (delivery to the recipient's mailbox), ZAM^Z03 from an MDN (read or
// integrated), one per recipient, sent to the DPI's MLLP endpoint (Options.DPI).

// OnReceipt turns a final receipt of a message the bridge sent into ZAM^Z02 or ZAM^Z03 and
// sends it to Options.DPI, retrying (with backoff) until the DPI answers AA or ctx ends; an AE
// from the DPI is logged and not retried. Pass it as bal.WatchOptions.OnReceipt of the watcher
// of Options.Client. Receipts of other messages, and intermediate statuses, are ignored.
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
	wait := time.Second
	for {
		ack, err := b.opts.DPI.Send(ctx, out)
		if err == nil {
			code, _, _ := hl7v2.AckOf(ack)
			if code == hl7v2.AckAccept {
				return
			}
			if code == hl7v2.AckError {
				b.log.Warn("hl7bridge: DPI refused a ZAM", "control_id", zam.ControlID())
				return
			}
		}
		b.log.Warn("hl7bridge: ZAM not acknowledged, retrying", "control_id", zam.ControlID(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, b.opts.MaxRetryWait)
	}
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
