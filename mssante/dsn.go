package mssante

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// DSNAction is the Action of one recipient in a delivery status notification (RFC 3464 §2.3.3).
type DSNAction string

// The DSN actions.
const (
	ActionFailed    DSNAction = "failed"
	ActionDelayed   DSNAction = "delayed"
	ActionDelivered DSNAction = "delivered"
	ActionRelayed   DSNAction = "relayed"
	ActionExpanded  DSNAction = "expanded"
)

// Final reports whether the action ends the recipient's delivery (all but delayed).
func (a DSNAction) Final() bool { return a != ActionDelayed }

// DSNRecipient is the per-recipient part of a DSN.
type DSNRecipient struct {
	FinalRecipient    string // address (the "rfc822;" type removed)
	OriginalRecipient string // ORCPT, when the MTA kept it
	Action            DSNAction
	Status            string // enhanced status code, e.g. 5.1.1
	RemoteMTA         string
	DiagnosticCode    string // e.g. "smtp; 550 5.1.1 unknown user"
	LastAttemptDate   time.Time
	WillRetryUntil    time.Time
}

// DSN is a delivery status notification (RFC 3464): the per-message fields and one entry per
// recipient.
type DSN struct {
	ReportingMTA       string // "dns; mx.example.org" written as the name only
	OriginalEnvelopeID string // ENVID given at submission
	ArrivalDate        time.Time
	Recipients         []DSNRecipient
}

// stripType removes the "rfc822;" / "dns;" address type of a DSN field value.
func stripType(v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, " @<") {
		return strings.TrimSpace(rest)
	}
	return strings.TrimSpace(v)
}

func parseDSNDate(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	var h mail.Header
	h.Set("Date", v)
	t, err := h.Date()
	if err != nil {
		return time.Time{}
	}
	return t
}

func parseDSNFields(b []byte) (*DSN, error) {
	blocks, err := readFieldBlocks(b, 1001)
	if err != nil {
		return nil, err
	}
	if len(blocks) < 2 {
		return nil, fmt.Errorf("%w: DSN without per-recipient fields", ErrMalformed)
	}
	msg := blocks[0]
	d := &DSN{
		ReportingMTA:       stripType(msg.Get("Reporting-MTA")),
		OriginalEnvelopeID: strings.TrimSpace(msg.Get("Original-Envelope-Id")),
		ArrivalDate:        parseDSNDate(msg.Get("Arrival-Date")),
	}
	if d.ReportingMTA == "" {
		return nil, fmt.Errorf("%w: DSN without Reporting-MTA", ErrMalformed)
	}
	for _, h := range blocks[1:] {
		r := DSNRecipient{
			FinalRecipient:    strings.ToLower(stripType(h.Get("Final-Recipient"))),
			OriginalRecipient: strings.ToLower(stripType(h.Get("Original-Recipient"))),
			Action:            DSNAction(strings.ToLower(strings.TrimSpace(h.Get("Action")))),
			Status:            strings.TrimSpace(h.Get("Status")),
			RemoteMTA:         stripType(h.Get("Remote-MTA")),
			DiagnosticCode:    strings.Join(strings.Fields(h.Get("Diagnostic-Code")), " "),
			LastAttemptDate:   parseDSNDate(h.Get("Last-Attempt-Date")),
			WillRetryUntil:    parseDSNDate(h.Get("Will-Retry-Until")),
		}
		if r.FinalRecipient == "" || r.Status == "" {
			return nil, fmt.Errorf("%w: DSN recipient without Final-Recipient or Status", ErrMalformed)
		}
		switch r.Action {
		case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		default:
			return nil, fmt.Errorf("%w: DSN action %q", ErrMalformed, r.Action)
		}
		if !validStatus(r.Status) {
			return nil, fmt.Errorf("%w: DSN status %q", ErrMalformed, r.Status)
		}
		d.Recipients = append(d.Recipients, r)
	}
	return d, nil
}

// validStatus checks an RFC 3463 status code: class.subject.detail.
func validStatus(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "2" && p[0] != "4" && p[0] != "5") {
		return false
	}
	return allDigits(p[1]) && len(p[1]) <= 3 && allDigits(p[2]) && len(p[2]) <= 3
}

// ParseDSN reads a message that must be a DSN and returns its report and the whole message.
func ParseDSN(r io.Reader, opts *ReadOptions) (*DSN, *Message, error) {
	m, err := ReadMessage(r, opts)
	if err != nil {
		return nil, nil, err
	}
	if m.Kind != KindDSN {
		return nil, m, fmt.Errorf("%w: not a delivery status notification", ErrMalformed)
	}
	return m.DSN, m, nil
}

// DSNEnvelope is the mail around a DSN the connector builds.
type DSNEnvelope struct {
	From      Address // the reporting MTA's MAILER-DAEMON or postmaster
	To        Address // the envelope sender of the original message
	MessageID string  // generated on From's domain when empty
	Date      time.Time
	Text      string // human-readable part; a neutral default when empty (no health data)
	// Original is the returned message (RET=FULL) or its header (RET=HDRS when HeadersOnly).
	Original    []byte
	HeadersOnly bool
}

// BuildDSN writes a multipart/report; report-type=delivery-status message (RFC 3464, RFC 6522)
// with the human part, the message/delivery-status part and the original message or header.
// The subject follows the actions: failure, delay, or success (delivered, relayed, expanded).
func BuildDSN(w io.Writer, env *DSNEnvelope, d *DSN, opts *ComposeOptions) (int64, error) {
	if env == nil || d == nil || len(d.Recipients) == 0 || d.ReportingMTA == "" {
		return 0, fmt.Errorf("%w: a DSN needs an envelope, a Reporting-MTA and recipients", ErrInvalidMessage)
	}
	for _, a := range []Address{env.From, env.To} {
		if _, err := NewAddress(a.Name, a.Addr); err != nil {
			return 0, err
		}
	}
	fields, subject, err := dsnFields(d)
	if err != nil {
		return 0, err
	}
	text := env.Text
	if text == "" {
		text = defaultDSNText(d)
	}
	return writeReport(w, opts, reportSpec{
		from: env.From, to: env.To, messageID: env.MessageID, date: env.Date, subject: subject,
		reportType: "delivery-status", text: text, fieldsType: "message/delivery-status", fields: fields,
		original: env.Original, originalHeaders: env.HeadersOnly,
	})
}

func dsnFields(d *DSN) ([]byte, string, error) {
	var b strings.Builder
	line := func(k, v string) error {
		if hasCtl(v) {
			return fmt.Errorf("%w: DSN field %s", ErrHeaderInjection, k)
		}
		if v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
		return nil
	}
	date := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC1123Z)
	}
	if err := line("Reporting-MTA", "dns; "+d.ReportingMTA); err != nil {
		return nil, "", err
	}
	if err := line("Original-Envelope-Id", d.OriginalEnvelopeID); err != nil {
		return nil, "", err
	}
	line("Arrival-Date", date(d.ArrivalDate))
	subject := "Successful Mail Delivery Report"
	for _, r := range d.Recipients {
		switch r.Action {
		case ActionFailed:
			subject = "Undelivered Mail Returned to Sender"
		case ActionDelayed:
			if subject != "Undelivered Mail Returned to Sender" {
				subject = "Delayed Mail (still being retried)"
			}
		case ActionDelivered, ActionRelayed, ActionExpanded:
		default:
			return nil, "", fmt.Errorf("%w: DSN action %q", ErrInvalidMessage, r.Action)
		}
		if !validStatus(r.Status) {
			return nil, "", fmt.Errorf("%w: DSN status %q", ErrInvalidMessage, r.Status)
		}
		if r.FinalRecipient == "" {
			return nil, "", fmt.Errorf("%w: DSN recipient without Final-Recipient", ErrInvalidMessage)
		}
		b.WriteString("\r\n")
		for _, kv := range [][2]string{
			{"Final-Recipient", "rfc822; " + r.FinalRecipient},
			{"Original-Recipient", prefixed("rfc822; ", r.OriginalRecipient)},
			{"Action", string(r.Action)},
			{"Status", r.Status},
			{"Remote-MTA", prefixed("dns; ", r.RemoteMTA)},
			{"Diagnostic-Code", r.DiagnosticCode},
			{"Last-Attempt-Date", date(r.LastAttemptDate)},
			{"Will-Retry-Until", date(r.WillRetryUntil)},
		} {
			if err := line(kv[0], kv[1]); err != nil {
				return nil, "", err
			}
		}
	}
	return []byte(b.String()), subject, nil
}

func prefixed(p, v string) string {
	if v == "" {
		return ""
	}
	return p + v
}

func defaultDSNText(d *DSN) string {
	var b strings.Builder
	b.WriteString("This is the mail system at host " + d.ReportingMTA + ".\n\n")
	for _, r := range d.Recipients {
		fmt.Fprintf(&b, "<%s>: %s (%s)", r.FinalRecipient, r.Action, r.Status)
		if r.DiagnosticCode != "" {
			b.WriteString(": " + r.DiagnosticCode)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// reportSpec is what a multipart/report message (DSN or MDN) is made of.
type reportSpec struct {
	from, to        Address
	messageID       string
	inReplyTo       string
	date            time.Time
	subject         string
	productNIL      string
	reportType      string
	text            string
	fieldsType      string
	fields          []byte
	original        []byte
	originalHeaders bool
}

func writeReport(w io.Writer, opts *ComposeOptions, s reportSpec) (int64, error) {
	if hasCtl(s.subject) || hasCtl(s.productNIL) {
		return 0, ErrHeaderInjection
	}
	if s.messageID == "" {
		r, err := opts.random(16)
		if err != nil {
			return 0, err
		}
		s.messageID = r + "@" + s.from.Domain()
	}
	if err := checkMsgID(s.messageID); err != nil {
		return 0, err
	}
	if s.inReplyTo != "" {
		if err := checkMsgID(s.inReplyTo); err != nil {
			return 0, err
		}
	}
	if s.date.IsZero() {
		s.date = opts.now()
	}
	var h mail.Header
	setRaw(&h, "MIME-Version", "1.0")
	setRaw(&h, "Auto-Submitted", "auto-replied")
	if s.productNIL != "" {
		setRaw(&h, HeaderNIL, s.productNIL)
	}
	if s.inReplyTo != "" {
		h.SetMsgIDList("References", []string{s.inReplyTo})
		h.SetMsgIDList("In-Reply-To", []string{s.inReplyTo})
	}
	h.SetMessageID(s.messageID)
	h.SetSubject(s.subject)
	h.SetDate(s.date)
	h.SetAddressList("To", addrList([]Address{s.to}))
	h.SetAddressList("From", addrList([]Address{s.from}))
	cw := &countWriter{w: w, max: opts.maxSize()}
	mw, err := newMultipart(topEmitter(cw, &h.Header.Header), "multipart/report", map[string]string{"report-type": s.reportType}, opts)
	if err != nil {
		return cw.n, err
	}
	if err := writeText(mw.CreatePart, "text/plain", s.text); err != nil {
		return cw.n, err
	}
	var fh textproto.Header
	fh.Set("Content-Type", s.fieldsType)
	pw, err := mw.CreatePart(fh)
	if err != nil {
		return cw.n, err
	}
	if _, err := pw.Write(s.fields); err != nil {
		return cw.n, err
	}
	if s.original != nil {
		if err := writeOriginal(mw.CreatePart, s.original, s.originalHeaders); err != nil {
			return cw.n, err
		}
	}
	return cw.n, mw.Close()
}

// writeOriginal attaches a message (message/rfc822) or its header (text/rfc822-headers) as
// it is, declared 8bit when it has bytes above 127.
func writeOriginal(emit emitter, original []byte, headersOnly bool) error {
	var h textproto.Header
	if !isASCII(string(original)) {
		h.Set("Content-Transfer-Encoding", "8bit")
	}
	if headersOnly {
		if i := headerEnd(original); i >= 0 {
			original = original[:i]
		}
		h.Set("Content-Type", "text/rfc822-headers")
	} else {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "original.eml"}))
		h.Set("Content-Type", "message/rfc822")
	}
	w, err := emit(h)
	if err != nil {
		return err
	}
	_, err = w.Write(original)
	return err
}

// headerEnd returns the length of the header block of a raw message, -1 if none.
func headerEnd(b []byte) int {
	s := string(b)
	i, j := strings.Index(s, "\r\n\r\n"), strings.Index(s, "\n\n")
	switch {
	case i >= 0 && (j < 0 || i <= j):
		return i + 2
	case j >= 0:
		return j + 1
	}
	return -1
}
