package bal

import (
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// Report is what a DSN (RFC 3464), an MDN (RFC 8098) or an MSSanté integration error mail
// says about a sent message: the status changes of its recipients. Watch applies it to the
// outbox; a reader of a mailbox store other than Watch (a node's API) applies it to its own
// records with Record.Apply, so that both read receipts the same way.
type Report struct {
	// EnvelopeID is the DSN's Original-Envelope-Id, "" when it gives none (and for an MDN).
	EnvelopeID string
	// MessageID is the reported message's Message-ID, without angle brackets: the MDN's
	// Original-Message-ID, the In-Reply-To of an error mail, the Message-ID of the headers
	// a DSN returns; "" when the report names none.
	MessageID string
	// Changes are the recipients' new statuses (Recipient, Status, SMTPCode, MDNCode and
	// Detail set).
	Changes []Receipt
}

// ReadReport reads the report msg carries; nil for an ordinary message, or a report that
// names no recipient or no message (nobody's to wait for).
func ReadReport(msg *mssante.Message) *Report {
	rep := &Report{}
	switch msg.Kind {
	case mssante.KindDSN:
		if msg.DSN == nil {
			return nil
		}
		rep.EnvelopeID = msg.DSN.OriginalEnvelopeID
		rep.MessageID = originalMessageID(msg.Original)
		for _, r := range msg.DSN.Recipients {
			rr := Receipt{Recipient: r.OriginalRecipient, Detail: r.Status, SMTPCode: diagnosticCode(r.DiagnosticCode)}
			if rr.Recipient == "" {
				rr.Recipient = r.FinalRecipient
			}
			switch r.Action {
			case mssante.ActionDelivered, mssante.ActionRelayed, mssante.ActionExpanded:
				rr.Status = StatusDelivered
			case mssante.ActionFailed:
				rr.Status = StatusFailed
			case mssante.ActionDelayed:
				rr.Status = StatusDelayed
			default:
				continue
			}
			rep.Changes = append(rep.Changes, rr)
		}
	case mssante.KindMDN:
		if msg.MDN == nil {
			return nil
		}
		rep.MessageID = trimAngles(msg.MDN.OriginalMessageID)
		rr := Receipt{Recipient: msg.MDN.OriginalRecipient}
		if rr.Recipient == "" {
			rr.Recipient = msg.MDN.FinalRecipient
		}
		// Only "processed" without an error says the software integrated the message.
		switch typ := strings.ToLower(msg.MDN.Type); {
		case msg.MDN.Error != 0:
			rr.Status, rr.MDNCode, rr.Detail = StatusError, msg.MDN.Error, msg.MDN.ErrorLabel
		case typ == "processed":
			rr.Status = StatusProcessed
		case typ == "displayed" || typ == "dispatched": // dispatched: RFC 3798, obsolete
			rr.Status = StatusDisplayed
		case typ == "deleted" || typ == "denied" || typ == "failed": // denied, failed: RFC 3798
			rr.Status, rr.Detail = StatusError, "MDN "+typ
		default:
			return nil // a disposition type of no known meaning
		}
		rep.Changes = append(rep.Changes, rr)
	case mssante.KindIntegrationError:
		// The plain error mail: it answers (In-Reply-To) our message, from the recipient.
		if len(msg.InReplyTo) == 0 {
			return nil
		}
		rep.MessageID = trimAngles(msg.InReplyTo[0])
		rep.Changes = append(rep.Changes, Receipt{Recipient: msg.From.Addr, Status: StatusError,
			MDNCode: msg.Integration, Detail: msg.Integration.Label()})
	default:
		return nil
	}
	if rep.EnvelopeID == "" && rep.MessageID == "" {
		return nil
	}
	return rep
}

// Apply records the changes of a report in r, at now, and returns the receipts of those that
// changed something: a change for a recipient r does not have, or that would not move its
// status forward (a duplicate or out-of-order receipt, or after a final status), is ignored.
func (r *Record) Apply(changes []Receipt, now time.Time) []Receipt {
	var out []Receipt
	for _, c := range changes {
		st := r.recipient(c.Recipient)
		if st == nil || st.Status.Final(r.MDNRequested) || c.Status.rank() <= st.Status.rank() {
			continue
		}
		st.Status, st.Code, st.MDNCode, st.Detail, st.Updated = c.Status, c.SMTPCode, c.MDNCode, c.Detail, now
		out = append(out, r.receipt(st))
	}
	return out
}
