package bal

import (
	"context"
	"fmt"
	"strings"
)

// Await waits until every recipient of the message messageID (as in SendResult, angle
// brackets optional), sent by this client, has its final status, and returns one Receipt per
// recipient of the outbox record, in its order. It needs no handler: it watches the mailbox
// for receipts only, as Watch does, and returns at once when the outbox already holds every
// final status (collected by an earlier Watch or Await).
//
// The messages that are not receipts are left in the mailbox, as a Handler returning ErrLeave
// leaves them, for the watcher of another state folder that integrates messages: this state
// folder will not hand them later. Await is therefore for a sender with a state folder of its
// own (see "Several processes on one BAL"); a client that also integrates messages collects
// its receipts with Watch and WatchOptions.OnReceipt. Do not call it while Watch runs on the
// same Client.
//
// A recipient the submission server has not accepted (StatusPending: send the message again)
// gets no receipt and is not waited for: it is reported as it stands, Final false. When ctx
// ends first, Await returns ctx's error with each recipient as it stands; it returns another
// error when watching cannot go on (see Watch), and fs.ErrNotExist when the outbox does not
// hold messageID.
func (c *Client) Await(ctx context.Context, messageID string) ([]Receipt, error) {
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(messageID), "<"), ">")
	rec, err := c.Status(id)
	if err != nil {
		return nil, fmt.Errorf("bal: await <%s>: %w", id, err)
	}
	final := map[string]Receipt{}
	waiting := map[string]bool{}
	for i := range rec.Recipients {
		st := &rec.Recipients[i]
		k := strings.ToLower(st.Address)
		switch {
		case st.Status.Final(rec.MDNRequested):
			final[k] = rec.receipt(st)
		case st.Status != StatusPending:
			waiting[k] = true
		}
	}
	if len(waiting) > 0 {
		wctx, cancel := context.WithCancel(ctx)
		werr := c.Watch(wctx, nil,
			&WatchOptions{ReceiptsOnly: true, OnReceipt: func(_ context.Context, r Receipt) {
				k := strings.ToLower(r.Recipient)
				if r.MessageID != rec.MessageID || !r.Final || !waiting[k] {
					return
				}
				final[k] = r
				delete(waiting, k)
				if len(waiting) == 0 {
					cancel()
				}
			}})
		cancel()
		if len(waiting) > 0 {
			if ctx.Err() != nil {
				werr = ctx.Err()
			}
			// Each recipient as it stands now, final or not.
			if now, err := c.Status(id); err == nil {
				rec = now
			}
			return awaited(rec, final), werr
		}
	}
	return awaited(rec, final), nil
}

// awaited lists, in the record's order, each recipient's final receipt, or its state when it
// has none.
func awaited(rec *Record, final map[string]Receipt) []Receipt {
	out := make([]Receipt, 0, len(rec.Recipients))
	for i := range rec.Recipients {
		st := &rec.Recipients[i]
		if r, ok := final[strings.ToLower(st.Address)]; ok {
			out = append(out, r)
		} else {
			out = append(out, rec.receipt(st))
		}
	}
	return out
}

// receipt is the Receipt that reports st, a recipient of r, as it stands.
func (r *Record) receipt(st *RecipientState) Receipt {
	return Receipt{MessageID: r.MessageID, EnvelopeID: r.EnvelopeID, Recipient: st.Address,
		Status: st.Status, SMTPCode: st.Code, MDNCode: st.MDNCode, Detail: st.Detail, Final: st.Status.Final(r.MDNRequested)}
}
