package bal

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// replyMessage is an MDN (RFC 8098) or an error mail answering a received message. It
// streams the original from the spool when written.
type replyMessage struct {
	c    *Client
	m    *Incoming
	code int
	mdn  bool
	to   string
}

// buildReply returns the answer a decision calls for, or nil when none is due: accepted
// without MDN request, or a message that is itself an automatic reply (RFC 3834 §2, no
// loops between two robots).
func (c *Client) buildReply(m *Incoming, code int) (Message, error) {
	if strings.EqualFold(strings.TrimSpace(m.Header.Get("Auto-Submitted")), "auto-replied") {
		return nil, nil
	}
	if code == 0 && !m.MDNRequested {
		return nil, nil
	}
	to := m.replyTarget()
	if to == "" {
		return nil, nil
	}
	return &replyMessage{c: c, m: m, code: code, mdn: m.MDNRequested, to: to}, nil
}

// WriteTo writes the reply. Its Message-ID is derived from the original's, so the outbox
// sends it once even if the decision is replayed after a restart.
func (r *replyMessage) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	c, m := r.c, r.m
	_, dom, _ := splitAddress(c.opts.Address)
	kind := "err"
	if r.mdn {
		kind = "mdn"
	}
	var h mail.Header
	h.SetDate(c.opts.Now())
	h.SetAddressList("From", []*mail.Address{{Address: c.opts.Address}})
	h.SetAddressList("To", []*mail.Address{{Address: r.to}})
	h.SetMessageID(kind + "-" + envelopeID(m.MessageID) + "@" + dom)
	if !strings.HasPrefix(m.MessageID, "uid-") {
		h.SetMsgIDList("In-Reply-To", []string{m.MessageID})
		h.SetMsgIDList("References", []string{m.MessageID})
	}
	subj, _ := m.Header.Subject()
	if r.code != 0 {
		// spec/mssante.md §4.4: "[KO Intégration système !][<code>] XDM/1.0/DDM+…"
		subj = fmt.Sprintf("[KO Intégration système !][%d] %s", r.code, subj)
	} else {
		// The subject of a success MDN is not fixed by the texts read (UNCONFIRMED).
		subj = "Accusé de traitement : " + subj
	}
	h.SetSubject(subj)
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("MIME-Version", "1.0")
	if c.opts.NIL != "" {
		h.Set("X-MSS-NIL", c.opts.NIL)
	}
	label := rejectLabels[r.code]
	if r.mdn {
		h.SetContentType("multipart/report", map[string]string{"report-type": "disposition-notification"})
	} else {
		h.SetContentType("multipart/mixed", nil)
	}
	mw, err := message.CreateWriter(cw, h.Header)
	if err != nil {
		return cw.n, err
	}
	var text string
	if r.code == 0 {
		text = "Le message a été intégré automatiquement.\r\n"
	} else {
		text = fmt.Sprintf("Le message n'a pas pu être intégré : %d^%s\r\n", r.code, label)
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	pw, err := mw.CreatePart(th)
	if err != nil {
		return cw.n, err
	}
	io.WriteString(pw, text)
	pw.Close()

	if r.mdn {
		// RFC 8098 §3.2; the error form is the MSSanté convention (spec/mssante.md §4.4).
		disp := "automatic-action/MDN-sent-automatically; processed"
		if r.code != 0 {
			disp += fmt.Sprintf("/Error: %d^%s", r.code, label)
		}
		var dh message.Header
		dh.SetContentType("message/disposition-notification", nil)
		pw, err := mw.CreatePart(dh)
		if err != nil {
			return cw.n, err
		}
		fmt.Fprintf(pw, "Reporting-UA: %s\r\n", c.opts.ReportingUA)
		if or := m.Header.Get("Original-Recipient"); or != "" {
			fmt.Fprintf(pw, "Original-Recipient: %s\r\n", oneLine(or))
		}
		fmt.Fprintf(pw, "Final-Recipient: rfc822;%s\r\n", c.opts.Address)
		if !strings.HasPrefix(m.MessageID, "uid-") {
			fmt.Fprintf(pw, "Original-Message-ID: <%s>\r\n", m.MessageID)
		}
		fmt.Fprintf(pw, "Disposition: %s\r\n", disp)
		pw.Close()
	}

	// The original, attachments included (spec/mssante.md §4.4).
	var oh message.Header
	oh.SetContentType("message/rfc822", nil)
	oh.SetContentDisposition("attachment", map[string]string{"filename": "original.eml"})
	pw, err = mw.CreatePart(oh)
	if err != nil {
		return cw.n, err
	}
	orig, err := m.Open()
	if err != nil {
		return cw.n, err
	}
	_, err = io.Copy(pw, orig)
	orig.Close()
	if err != nil {
		return cw.n, err
	}
	pw.Close()
	return cw.n, mw.Close()
}

// oneLine removes line breaks from a header value copied into a report.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
