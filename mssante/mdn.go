package mssante

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Receipt errors.
var (
	// ErrReportLoop refuses to answer a DSN, an MDN or an integration error mail with an MDN or
	// an error mail (RFC 8098 §3: never an MDN in answer to an MDN).
	ErrReportLoop = errors.New("mssante: no receipt in answer to a receipt")
	// ErrMDNNotRequested: the original has no Disposition-Notification-To.
	ErrMDNNotRequested = errors.New("mssante: no MDN was requested")
	// ErrMDNReturnPath: Disposition-Notification-To is not the envelope sender (RFC 8098 §2.1).
	ErrMDNReturnPath = errors.New("mssante: Disposition-Notification-To differs from Return-Path")
	// ErrNothingToSend: processing succeeded and no MDN was requested.
	ErrNothingToSend = errors.New("mssante: nothing to send")
)

// MDNCode is an application error code of an integration receipt (CI-SIS, codes 900–906).
type MDNCode int

// The integration error codes. The labels are written without accents (they travel in
// header-like fields); the CI-SIS text read gives their meaning, not their exact wording.
const (
	CodeDocumentVersion   MDNCode = 900 // wrong document version
	CodeReplaceNotAllowed MDNCode = 901 // author not allowed to replace or delete the document
	CodeUnknownPatient    MDNCode = 902
	CodeNoINS             MDNCode = 903 // no INS in the document
	CodeINSMismatch       MDNCode = 904
	CodeINSIncomplete     MDNCode = 905
	CodeOther             MDNCode = 906
)

var codeLabels = map[MDNCode]string{
	CodeDocumentVersion:   "Version du document incorrecte",
	CodeReplaceNotAllowed: "Auteur non autorise a remplacer ou supprimer le document",
	CodeUnknownPatient:    "Patient inconnu",
	CodeNoINS:             "Absence d'INS dans le document",
	CodeINSMismatch:       "INS incoherent",
	CodeINSIncomplete:     "INS incomplet",
	CodeOther:             "Autre erreur",
}

// Valid reports whether c is one of 900–906.
func (c MDNCode) Valid() bool { _, ok := codeLabels[c]; return ok }

// Label is the default label of the code.
func (c MDNCode) Label() string { return codeLabels[c] }

func (c MDNCode) String() string {
	if !c.Valid() {
		return fmt.Sprintf("MDNCode(%d)", int(c))
	}
	return fmt.Sprintf("%d %s", int(c), c.Label())
}

// DefaultDispositionMode is the action/sending mode of automatic processing receipts.
const DefaultDispositionMode = "automatic-action/MDN-sent-automatically"

// MDN is a message disposition notification (RFC 8098) as MSSanté uses it for integration
// receipts: Disposition "processed", or "processed/Error: <code>^<label>" on failure.
type MDN struct {
	ReportingUA       string
	OriginalRecipient string
	FinalRecipient    string
	OriginalMessageID string // without angle brackets
	Mode              string // e.g. automatic-action/MDN-sent-automatically
	Type              string // "processed", "displayed", "deleted", …
	// Error is the code of an error disposition (0: none). An error that carries no 900–906
	// code (a bare RFC 8098 error modifier, AS2's "processed/error: authentication-failed")
	// reads as CodeOther, its text in ErrorLabel.
	Error      MDNCode
	ErrorLabel string
}

// Disposition formats the Disposition field value.
func (n *MDN) Disposition() string {
	mode, typ := n.Mode, n.Type
	if mode == "" {
		mode = DefaultDispositionMode
	}
	if typ == "" {
		typ = "processed"
	}
	v := mode + "; " + typ
	if n.Error != 0 {
		label := n.ErrorLabel
		if label == "" {
			label = n.Error.Label()
		}
		v += fmt.Sprintf("/Error: %d^%s", int(n.Error), label)
	}
	return v
}

func parseMDNFields(b []byte) (*MDN, error) {
	blocks, err := readFieldBlocks(b, 1)
	if err != nil {
		return nil, err
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("%w: empty disposition notification", ErrMalformed)
	}
	h := blocks[0]
	n := &MDN{
		ReportingUA:       strings.TrimSpace(h.Get("Reporting-UA")),
		OriginalRecipient: strings.ToLower(stripType(h.Get("Original-Recipient"))),
		FinalRecipient:    strings.ToLower(stripType(h.Get("Final-Recipient"))),
		OriginalMessageID: strings.Trim(strings.TrimSpace(h.Get("Original-Message-Id")), "<>"),
	}
	disp := strings.Join(strings.Fields(h.Get("Disposition")), " ")
	if n.FinalRecipient == "" || disp == "" {
		return nil, fmt.Errorf("%w: MDN without Final-Recipient or Disposition", ErrMalformed)
	}
	mode, rest, ok := strings.Cut(disp, ";")
	if !ok {
		return nil, fmt.Errorf("%w: MDN Disposition %q", ErrMalformed, disp)
	}
	n.Mode = strings.TrimSpace(mode)
	rest = strings.TrimSpace(rest)
	typ, mods, _ := strings.Cut(rest, "/")
	n.Type = strings.ToLower(strings.TrimSpace(typ))
	if n.Type == "" {
		return nil, fmt.Errorf("%w: MDN Disposition %q", ErrMalformed, disp)
	}
	// The MSSanté form: processed/Error: 902^label. RFC 8098 has the bare modifier "error"
	// with the text in a separate Error field; AS2 (RFC 4130 §7.4.3) writes
	// processed/error: authentication-failed. An error without a 900–906 code reads as 906
	// (CodeOther) with its text as the label: never a success, and never left unanswered.
	errText, isErr := "", false
	if _, after, ok := cutFold(mods, "error:"); ok {
		errText, isErr = after, true
	} else if e := h.Get("Error"); e != "" {
		errText, isErr = e, true
	} else {
		for _, m := range strings.Split(mods, ",") {
			isErr = isErr || strings.EqualFold(strings.TrimSpace(m), "error")
		}
	}
	if isErr {
		errText = strings.TrimSpace(errText)
		code, label, _ := strings.Cut(errText, "^")
		if c := MDNCode(atoi(code)); allDigits(code) && len(code) == 3 && c.Valid() {
			n.Error, n.ErrorLabel = c, strings.TrimSpace(label)
		} else {
			n.Error, n.ErrorLabel = CodeOther, errText
		}
	}
	return n, nil
}

func cutFold(s, sep string) (string, string, bool) {
	i := strings.Index(strings.ToLower(s), sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// ParseDispositionNotification parses the fields of an MDN: the body of its
// message/disposition-notification part (RFC 8098 §3.1). ReadMessage and ParseMDN do this for
// an MDN received as mail; call it directly for an MDN that travels otherwise, such as the body
// of an AS2 answer (RFC 4130 §7), which has no From, or the report inside a multipart/signed
// MDN, which ReadMessage does not unwrap. Errors wrap ErrMalformed.
func ParseDispositionNotification(fields []byte) (*MDN, error) {
	return parseMDNFields(fields)
}

// ParseMDN reads a message that must be an MDN and returns its report and the whole message.
func ParseMDN(r io.Reader, opts *ReadOptions) (*MDN, *Message, error) {
	m, err := ReadMessage(r, opts)
	if err != nil {
		return nil, nil, err
	}
	if m.Kind != KindMDN {
		return nil, m, fmt.Errorf("%w: not a disposition notification", ErrMalformed)
	}
	return m.MDN, m, nil
}

// ReceiptOptions describe who answers a received message.
type ReceiptOptions struct {
	From        Address // the receiving BAL
	ReportingUA string  // product name/version, e.g. "dpi.example.org; MonDPI 4.2"
	NIL         string  // X-MSS-NIL of the answering product
	MessageID   string  // generated when empty
	Date        time.Time
	Text        string // human-readable text; a neutral default when empty
	Compose     *ComposeOptions
	// AnyReturnPath sends the MDN even when the Return-Path recorded at delivery differs from
	// Disposition-Notification-To, which RFC 8098 §2.1 advises against (ErrMDNReturnPath).
	AnyReturnPath bool
}

// KOSubject returns "[KO Intégration système !][<code>] <subject>", the subject of an error
// receipt.
func KOSubject(code MDNCode, subject string) string {
	return fmt.Sprintf("%s[%d] %s", KOSubjectPrefix, int(code), subject)
}

// WriteReceipt answers a received message after processing it: code 0 means processed, or one
// of 900–906. When the original asked for an MDN, an MDN is written (processed, or
// processed/Error with the KO subject); otherwise an error gives the plain error mail with
// the original attached as message/rfc822, and a success gives ErrNothingToSend. Receipts,
// DSNs and error mails are never answered (ErrReportLoop). original is the raw received
// message, re-attached as it is.
func WriteReceipt(w io.Writer, orig *Message, original []byte, code MDNCode, o *ReceiptOptions) (int64, error) {
	if orig == nil || o == nil {
		return 0, fmt.Errorf("%w: receipt without original or options", ErrInvalidMessage)
	}
	if orig.WantMDN {
		return BuildMDN(w, orig, original, code, o)
	}
	if orig.Kind != KindOrdinary {
		return 0, ErrReportLoop
	}
	if code == 0 {
		return 0, ErrNothingToSend
	}
	return BuildIntegrationError(w, orig, original, code, o)
}

func checkReceipt(orig *Message, code MDNCode, o *ReceiptOptions) error {
	if orig.Kind != KindOrdinary || orig.MDN != nil || orig.DSN != nil {
		return ErrReportLoop
	}
	if code != 0 && !code.Valid() {
		return fmt.Errorf("%w: error code %d is not one of 900-906", ErrInvalidMessage, int(code))
	}
	if _, err := NewAddress(o.From.Name, o.From.Addr); err != nil {
		return err
	}
	if hasCtl(o.ReportingUA) || hasCtl(o.NIL) || hasCtl(o.From.Name) {
		return ErrHeaderInjection
	}
	return nil
}

// BuildMDN writes the MDN answering orig (RFC 8098): a multipart/report of the human text, the
// message/disposition-notification fields and the original message (so its attachments come
// back). It is sent to the Disposition-Notification-To address.
func BuildMDN(w io.Writer, orig *Message, original []byte, code MDNCode, o *ReceiptOptions) (int64, error) {
	if err := checkReceipt(orig, code, o); err != nil {
		return 0, err
	}
	if !orig.WantMDN || len(orig.DispositionNotificationTo) == 0 {
		return 0, ErrMDNNotRequested
	}
	if orig.HasReturnPath && !o.AnyReturnPath && !strings.EqualFold(orig.ReturnPath, orig.DispositionNotificationTo[0].Addr) {
		return 0, ErrMDNReturnPath
	}
	n := &MDN{
		ReportingUA:       o.ReportingUA,
		FinalRecipient:    o.From.Addr,
		OriginalMessageID: orig.MessageID,
		Mode:              DefaultDispositionMode,
		Type:              "processed",
		Error:             code,
	}
	var b strings.Builder
	if n.ReportingUA != "" {
		b.WriteString("Reporting-UA: " + n.ReportingUA + "\r\n")
	}
	b.WriteString("Final-Recipient: rfc822; " + n.FinalRecipient + "\r\n")
	if n.OriginalMessageID != "" {
		if err := checkMsgID(n.OriginalMessageID); err != nil {
			return 0, err
		}
		b.WriteString("Original-Message-ID: <" + n.OriginalMessageID + ">\r\n")
	}
	b.WriteString("Disposition: " + n.Disposition() + "\r\n")
	subject := "Accusé de traitement : " + orig.Subject // the CI-SIS gives no success wording
	if code != 0 {
		subject = KOSubject(code, orig.Subject)
	}
	text := o.Text
	if text == "" {
		text = receiptText(orig, code)
	}
	inReplyTo := ""
	if orig.MessageID != "" && checkMsgID(orig.MessageID) == nil {
		inReplyTo = orig.MessageID
	}
	return writeReport(w, o.Compose, reportSpec{
		from: o.From, to: orig.DispositionNotificationTo[0], messageID: o.MessageID, inReplyTo: inReplyTo,
		date: o.Date, subject: subject, productNIL: o.NIL, reportType: "disposition-notification", text: text,
		fieldsType: "message/disposition-notification", fields: []byte(b.String()), original: original,
	})
}

func receiptText(orig *Message, code MDNCode) string {
	if code == 0 {
		return "Le message a été intégré.\n"
	}
	return fmt.Sprintf("Le message n'a pas pu être intégré : erreur %d (%s).\n", int(code), code.Label())
}

// BuildIntegrationError writes the plain error mail sent when integration failed and no MDN
// was requested: subject "[KO Intégration système !][<code>] <original subject>", to the
// Reply-To (or From) of the original, with the original attached as message/rfc822.
func BuildIntegrationError(w io.Writer, orig *Message, original []byte, code MDNCode, o *ReceiptOptions) (int64, error) {
	if err := checkReceipt(orig, code, o); err != nil {
		return 0, err
	}
	if code == 0 {
		return 0, fmt.Errorf("%w: an error mail needs an error code", ErrInvalidMessage)
	}
	if o.NIL == "" {
		return 0, fmt.Errorf("%w: X-MSS-NIL (product reference) is required on every mail", ErrInvalidMessage)
	}
	to := orig.From
	if len(orig.ReplyTo) > 0 {
		to = orig.ReplyTo[0]
	}
	text := o.Text
	if text == "" {
		text = receiptText(orig, code)
	}
	m := &Message{From: o.From, To: []Address{to}, MessageID: o.MessageID, Date: o.Date,
		Subject: KOSubject(code, orig.Subject), Text: text, NIL: o.NIL}
	if orig.MessageID != "" && checkMsgID(orig.MessageID) == nil {
		m.InReplyTo = []string{orig.MessageID}
		m.References = []string{orig.MessageID}
	}
	c, err := m.prepare(o.Compose)
	if err != nil {
		return 0, err
	}
	h := c.header()
	cw := &countWriter{w: w, max: o.Compose.maxSize()}
	mw, err := newMultipart(topEmitter(cw, &h.Header.Header), "multipart/mixed", nil, o.Compose)
	if err != nil {
		return cw.n, err
	}
	if err := writeBody(mw.CreatePart, c.Text, "", o.Compose); err != nil {
		return cw.n, err
	}
	if err := writeOriginal(mw.CreatePart, original, false); err != nil {
		return cw.n, err
	}
	return cw.n, mw.Close()
}
