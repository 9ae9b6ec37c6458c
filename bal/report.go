package bal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on what a received report may hold (untrusted input).
const (
	maxReportPart       = 256 << 10 // a delivery-status or disposition-notification part
	maxReportRecipients = 1000
	maxReportParts      = 10
)

// report is a DSN (RFC 3464) or an MDN (RFC 8098) received, reduced to what matching needs.
type report struct {
	mdn bool
	// envelopeID is the DSN's Original-Envelope-Id; messageID the MDN's
	// Original-Message-ID, or the Message-ID of the returned headers of a DSN.
	envelopeID, messageID string
	recipients            []reportRecipient
}

type reportRecipient struct {
	address string // Original-Recipient when present (it is what we sent), else Final-Recipient
	status  Status
	code    int    // SMTP reply code of a DSN's Diagnostic-Code, or 900–906 of an MDN error
	detail  string // the Status (x.y.z) of a DSN, or the text of an MDN error
}

// parseReport reads msg and returns the report it is, or nil when it is not a
// multipart/report of type delivery-status or disposition-notification.
func parseReport(r io.Reader) (*report, error) {
	e, err := message.Read(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("bal: report: %w", err)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || !strings.EqualFold(mt, "multipart/report") {
		return nil, nil
	}
	rt := strings.ToLower(params["report-type"])
	if rt != "delivery-status" && rt != "disposition-notification" {
		return nil, nil
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil, nil
	}
	rep := &report{mdn: rt == "disposition-notification"}
	found := false
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bal: report: %w", err)
		}
		if i >= maxReportParts {
			return nil, fmt.Errorf("bal: report: more than %d parts", maxReportParts)
		}
		pt, _, _ := p.Header.ContentType()
		pt = strings.ToLower(pt)
		switch {
		case pt == "message/delivery-status" && !rep.mdn, pt == "message/global-delivery-status" && !rep.mdn:
			if err := rep.readDSN(p.Body); err != nil {
				return nil, err
			}
			found = true
		case pt == "message/disposition-notification" && rep.mdn, pt == "message/global-disposition-notification" && rep.mdn:
			if err := rep.readMDN(p.Body); err != nil {
				return nil, err
			}
			found = true
		case pt == "text/rfc822-headers" || pt == "message/rfc822" || pt == "message/global-headers":
			if rep.messageID == "" {
				h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(p.Body, maxReportPart)))
				if err == nil {
					rep.messageID = trimAngles(h.Get("Message-Id"))
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("bal: report: no %s part", rt)
	}
	return rep, nil
}

// readDSN reads the per-message block and the per-recipient blocks (RFC 3464 §2.2, §2.3).
func (rep *report) readDSN(body io.Reader) error {
	br := bufio.NewReader(io.LimitReader(body, maxReportPart))
	msg, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("bal: DSN: %w", err)
	}
	rep.envelopeID = strings.TrimSpace(msg.Get("Original-Envelope-Id"))
	for len(rep.recipients) < maxReportRecipients {
		if _, err := br.Peek(1); err != nil {
			break
		}
		h, err := textproto.ReadHeader(br)
		if err != nil {
			return fmt.Errorf("bal: DSN recipient: %w", err)
		}
		if h.Len() == 0 {
			continue
		}
		addr := typedAddress(h.Get("Original-Recipient"))
		if addr == "" {
			addr = typedAddress(h.Get("Final-Recipient"))
		}
		rr := reportRecipient{address: addr, detail: strings.TrimSpace(h.Get("Status"))}
		switch strings.ToLower(strings.TrimSpace(h.Get("Action"))) {
		case "delivered", "relayed", "expanded":
			rr.status = StatusDelivered
		case "failed":
			rr.status = StatusFailed
		case "delayed":
			rr.status = StatusDelayed
		default:
			continue
		}
		rr.code = diagnosticCode(h.Get("Diagnostic-Code"))
		if addr != "" {
			rep.recipients = append(rep.recipients, rr)
		}
	}
	return nil
}

// readMDN reads the disposition-notification fields (RFC 8098 §3.2).
func (rep *report) readMDN(body io.Reader) error {
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(body, maxReportPart)))
	if err != nil {
		return fmt.Errorf("bal: MDN: %w", err)
	}
	rep.messageID = trimAngles(h.Get("Original-Message-Id"))
	addr := typedAddress(h.Get("Original-Recipient"))
	if addr == "" {
		addr = typedAddress(h.Get("Final-Recipient"))
	}
	st, code, text, ok := parseDisposition(h.Get("Disposition"))
	if !ok || addr == "" {
		return fmt.Errorf("bal: MDN: no usable Disposition or recipient")
	}
	if code == 0 {
		// RFC 8098 §3.2.7 puts the text of an error in an Error field.
		if c, t := parseErrorCode(h.Get("Error")); c != 0 {
			code, text = c, t
		}
	}
	rep.recipients = []reportRecipient{{address: addr, status: st, code: code, detail: text}}
	return nil
}

// parseDisposition reads "automatic-action/MDN-sent-automatically; processed" or
// "…; processed/Error: 902^Patient inconnu" (MSSanté convention, spec/mssante.md §4.4).
func parseDisposition(v string) (st Status, code int, text string, ok bool) {
	_, rest, found := strings.Cut(v, ";")
	if !found {
		return "", 0, "", false
	}
	typ, mod, _ := strings.Cut(strings.TrimSpace(rest), "/")
	switch strings.ToLower(strings.TrimSpace(typ)) {
	case "processed", "displayed":
		st = StatusProcessed
	case "deleted":
		st = StatusError
	default:
		return "", 0, "", false
	}
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(mod)), "error") {
		st = StatusError
		_, after, _ := strings.Cut(mod, ":")
		code, text = parseErrorCode(after)
	}
	return st, code, text, true
}

// parseErrorCode reads "902^Patient inconnu"; code is 0 unless it is 900–999.
func parseErrorCode(s string) (int, string) {
	c, t, _ := strings.Cut(strings.TrimSpace(s), "^")
	n, err := strconv.Atoi(strings.TrimSpace(c))
	if err != nil || n < 900 || n > 999 {
		return 0, strings.TrimSpace(s)
	}
	return n, strings.TrimSpace(t)
}

// typedAddress reads "rfc822; someone@example.org".
func typedAddress(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
		return ""
	}
	return trimAngles(addr)
}

// diagnosticCode reads the reply code of "smtp; 550 5.1.1 <x>: unknown user".
func diagnosticCode(v string) int {
	_, d, ok := strings.Cut(v, ";")
	if !ok {
		return 0
	}
	d = strings.TrimSpace(d)
	if len(d) < 3 {
		return 0
	}
	n, err := strconv.Atoi(d[:3])
	if err != nil {
		return 0
	}
	return n
}

func trimAngles(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	return strings.TrimSuffix(s, ">")
}
