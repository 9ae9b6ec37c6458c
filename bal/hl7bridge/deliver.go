package hl7bridge

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
	"github.com/mssante-go/sdk/mssante/xdm"
)

// ErrDPI reports that the DPI did not take a received document now (no ACK, or AR without an
// integration code): bal leaves the mail in the mailbox and hands it again later.
var ErrDPI = errors.New("hl7bridge: DPI did not take the document now")

// Deliver hands each CDA document of a received mail to the DPI (Options.DPI) as the MDM^T02
// of CI-SIS Trans-CDA-MSS, or its MDM^T10 for a new version that replaces another (the CDA's
// relatedDocument RPLC; TXA-12 and TXA-13 the two ids): the CDA in OBX-1 (base64), the patient's INS in PID-3 with the
// traits of the CDA, the sender and this BAL in PRT (SB, RCT), the mail's body in an OBX. Use
// it as the bal.Handler of the watcher of Options.Client. The DPI's ACK becomes the MDN: AA
// for every document gives "processed"; an AE or AR whose ERR-5 holds a code 900–906 gives
// "processed/Error" with that code, an AE without one the code 906; no ACK, or an AR without
// a code, leaves the mail to be handed again (ErrDPI). The MSH-10 derives from the mail's
// Message-ID and the document's rank, so the DPI recognises a document handed twice.
func (b *Bridge) Deliver(ctx context.Context, in *bal.Incoming) error {
	if b.opts.DPI == nil {
		return bal.ErrLeave
	}
	docs := in.Documents()
	if len(docs) == 0 {
		return bal.Reject(mssante.CodeOther)
	}
	for i, d := range docs {
		msg, err := b.mdmToDPI(in, d, i)
		if err != nil {
			b.log.Warn("hl7bridge: received document not converted", "message_id", in.MessageID, "err", err)
			return bal.Reject(mssante.CodeOther)
		}
		ack, err := b.opts.DPI.Send(ctx, msg)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDPI, err)
		}
		code, _, _ := hl7v2.AckOf(ack)
		if code == hl7v2.AckAccept {
			continue
		}
		if e := ack.Segment("ERR"); e != nil {
			if n, err := strconv.Atoi(e.Get(5, 1)); err == nil && mssante.MDNCode(n).Valid() {
				return bal.Reject(mssante.MDNCode(n))
			}
		}
		if code == hl7v2.AckError {
			return bal.Reject(mssante.CodeOther)
		}
		return ErrDPI
	}
	return nil
}

func (b *Bridge) mdmToDPI(in *bal.Incoming, d xdm.Document, rank int) ([]byte, error) {
	if d.CDA == nil || in.INS.IsZero() {
		return nil, errors.New("no CDA or no INS")
	}
	// A new version names the one it replaces in its relatedDocument RPLC, from which the XDM
	// metadata's RPLC association is made: it goes to the DPI as a replacement (T10, ORC-1 RO,
	// OBX-11 C, TXA-13 the replaced id). An association without that relatedDocument leaves
	// TXA-13 unknown: refused rather than handed as a first transmission.
	event, order, status := "T02", "NW", "F"
	parent := replacedID(d.CDA)
	switch {
	case parent != nil:
		event, order, status = "T10", "RO", "C"
	case d.Entry.Replaces != "":
		return nil, errors.New("RPLC association without relatedDocument RPLC in the CDA")
	}
	h := sha256.Sum256([]byte(in.MessageID + "\x00" + strconv.Itoa(rank)))
	m := hl7v2.New(hl7v2.Standard())
	m.Segments[0].Set(3, b.opts.Application).Set(4, b.opts.Facility).
		Set(7, b.opts.Now().Format("20060102150405")).Set(9, "MDM", event, "MDM_T02").
		Set(10, "MSS"+hex.EncodeToString(h[:12])).Set(11, "P").Set(12, "2.6").Set(17, "FRA").
		Set(18, "UNICODE UTF-8").Set(21, "1.1", "CISIS_CDA_HL7_LPS")
	m.Add("EVN").Set(2, b.opts.Now().Format("20060102150405"))
	pid := m.Add("PID")
	pid.SetValue(3, 0, hl7v2.Value{{in.INS.Value}, {""}, {""}, {"ASIP-SANTE-INS-NIR", in.INS.OID, "ISO"}, {"INS"}})
	if p := in.Patient; p != nil {
		pid.Set(5, p.BirthName, p.FirstGivenName, "", "", "", "", "L")
		if !p.BirthDate.IsZero() {
			pid.Set(7, p.BirthDate.Format("20060102"))
		}
		pid.Set(8, string(p.Sex))
	}
	m.Add("PV1").Set(1, "1").Set(2, "N")
	code, display := "", ""
	if c := d.CDA.Code; c != nil {
		code, display = c.Code, c.DisplayName
	}
	m.Add("ORC").Set(1, order)
	m.Add("OBR").Set(1, "1").Set(4, code, display, "LN")
	txa := m.Add("TXA").Set(1, "1").Set(2, code).Set(3, "TEXT").Set(17, "AU")
	if d.CDA.ID != nil {
		txa.Set(12, eiOf(d.CDA.ID)...)
	}
	if parent != nil {
		txa.Set(13, eiOf(parent)...)
	}
	m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, code, display, "LN").
		Set(5, "", "text", "XML", "Base64", base64.StdEncoding.EncodeToString(d.Data)).Set(11, status)
	if msg := in.Message; msg != nil {
		m.Add("PRT").Set(2, "UC").Set(4, "SB", "", "participation").Set(15, "", "", "X.400", msg.From.Addr)
		m.Add("PRT").Set(2, "UC").Set(4, "RCT", "", "participation").Set(15, "", "", "X.400", b.opts.From.Addr)
		if msg.Text != "" {
			m.Add("OBX").Set(1, "2").Set(2, "ED").Set(3, "1", msg.Subject).
				Set(5, "", "text", "", "Base64", base64.StdEncoding.EncodeToString([]byte(msg.Text))).Set(11, "F")
		}
	}
	return m.Encode()
}

// eiOf writes a CDA id as the EI of TXA-12 and TXA-13 (CI-SIS Trans-CDA-MSS, as
// Trans-CDA-R2): extension^^root^ISO, or the root alone.
func eiOf(id *cda.II) []string {
	if id.Extension == "" {
		return []string{id.Root}
	}
	return []string{id.Extension, "", id.Root, "ISO"}
}
