package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
	"github.com/mssante-go/sdk/transport/webhook"
)

// SendRequest is the JSON body of POST /v1/bals/{bal}/messages. Exactly one of Documents and
// XDM is given. The subject is not given: MSSanté computes it from the patient and the
// documents (XDM/1.0/DDM+…), as bal does.
type SendRequest struct {
	To []string `json:"to"`
	Cc []string `json:"cc,omitempty"`
	// Documents are CDA R2 documents with their PDF copy, packed into IHE_XDM.ZIP here. Each
	// CDA must pass the CI-SIS rules (cda.Validate).
	Documents []SendDocument `json:"documents,omitempty"`
	// XDM is an IHE_XDM.ZIP sent as it is (opened with the safe reader first); PDF is the
	// copy of its structured document, when it holds one.
	XDM []byte `json:"xdm,omitempty"`
	PDF []byte `json:"pdf,omitempty"`
	// INS, when given, must be the matricule INS of the documents' patient: a guard against
	// sending one patient's documents for another.
	INS string `json:"ins,omitempty"`
	// Text is the body of the mail; default a neutral sentence without health data.
	Text string `json:"text,omitempty"`
	// MDN asks the recipients' software for an integration receipt.
	MDN bool `json:"mdn,omitempty"`
	// DSN says which delivery notifications to ask for; default all (RFC 3461).
	DSN *DSNRequest `json:"dsn,omitempty"`
}

// SendDocument is one CDA document and its PDF copy (optional for an N1 document).
type SendDocument struct {
	CDA []byte `json:"cda"`
	PDF []byte `json:"pdf,omitempty"`
}

// DSNRequest are the RFC 3461 parameters.
type DSNRequest struct {
	Notify []string `json:"notify,omitempty"`
	Return string   `json:"ret,omitempty"`
}

// SendResponse answers a send once every accepted recipient is queued by the operator.
type SendResponse struct {
	MessageID  string            `json:"message_id"`
	Recipients []RecipientResult `json:"recipients"`
}

// RecipientResult is the submission server's answer for one recipient.
type RecipientResult struct {
	Address string `json:"address"`
	// Status is "accepted", "already_sent" (by an earlier request with this message),
	// "deferred" (refused for now: send again with the same Idempotency-Key) or "refused".
	Status string `json:"status"`
	Code   int    `json:"code,omitempty"`
	Text   string `json:"text,omitempty"`
}

func (h *Handler) send(w http.ResponseWriter, r *http.Request, q *request) {
	if r.ContentLength > h.o.MaxBodySize {
		writeProblem(w, problem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the body is larger than %d bytes", h.o.MaxBodySize)))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "message/rfc822") {
		writeProblem(w, problem(http.StatusUnsupportedMediaType, ProblemUnsupportedMedia,
			"send application/json (a SendRequest) or message/rfc822 (a message already written)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, problem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
				fmt.Sprintf("the body is larger than %d bytes", h.o.MaxBodySize)))
			return
		}
		writeProblem(w, problem(http.StatusBadRequest, ProblemInvalidRequest, "the body could not be read"))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !validKey(key) {
		writeProblem(w, problem(http.StatusBadRequest, ProblemInvalidRequest,
			"Idempotency-Key: 1 to 255 printable ASCII characters"))
		return
	}
	if key == "" {
		h.sendOnce(w, r, q, mt, body, "", nil)
		return
	}
	h.mu.Lock()
	if h.running[q.addr+"\n"+key] {
		h.mu.Unlock()
		writeProblem(w, problem(http.StatusConflict, ProblemInProgress, "a request with this Idempotency-Key is being served"))
		return
	}
	h.running[q.addr+"\n"+key] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.running, q.addr+"\n"+key)
		h.mu.Unlock()
	}()
	fp := sha256.Sum256(append([]byte(mt+"\n"), body...))
	rec, err := h.idem.get(q.addr, key)
	if err != nil {
		h.log.Error("httpapi: idempotency record", "bal", q.addr, "err", err)
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
		return
	}
	switch {
	case rec == nil:
		rec = &idemRecord{Fingerprint: hex.EncodeToString(fp[:]), Created: h.o.Now().UTC()}
	case rec.Fingerprint != hex.EncodeToString(fp[:]):
		writeProblem(w, problem(http.StatusUnprocessableEntity, ProblemIdempotencyMismatch,
			"this Idempotency-Key was used with another request"))
		return
	case rec.Status != 0:
		w.Header().Set("Idempotent-Replayed", "true")
		if rec.MessageID != "" {
			w.Header().Set("Location", "/v1/bals/"+q.addr+"/messages/"+rec.MessageID)
		}
		w.Header().Set("Content-Type", rec.Type)
		w.WriteHeader(rec.Status)
		w.Write(rec.Body)
		return
	}
	h.sendOnce(w, r, q, mt, body, key, rec)
}

// sendOnce builds and submits the message; with a key, the record is saved with the chosen
// Message-ID before submission and with the answer after.
func (h *Handler) sendOnce(w http.ResponseWriter, r *http.Request, q *request, mt string, body []byte, key string, rec *idemRecord) {
	var (
		msg  *mssante.Message
		opts *bal.SendOptions
		prob *Problem
	)
	if mt == "application/json" {
		msg, opts, prob = h.buildMessage(q.addr, body)
	} else {
		opts, prob = rawOptions(r)
	}
	answer := func(status int, ctype string, v any) {
		b, _ := json.Marshal(v)
		if rec != nil && status != http.StatusInternalServerError && status != http.StatusBadGateway && status != http.StatusServiceUnavailable {
			rec.Status, rec.Body, rec.Type = status, b, ctype
			if err := h.idem.put(q.addr, key, rec, false); err != nil {
				h.log.Error("httpapi: idempotency record", "bal", q.addr, "err", err)
			}
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		w.Write(b)
	}
	if prob != nil {
		answer(prob.Status, "application/problem+json", prob)
		return
	}
	if msg != nil && rec != nil {
		if rec.MessageID == "" {
			var b [16]byte
			rand.Read(b[:])
			rec.MessageID = hex.EncodeToString(b[:]) + "@" + msg.From.Domain()
			if err := h.idem.put(q.addr, key, rec, true); err != nil {
				h.log.Error("httpapi: idempotency record", "bal", q.addr, "err", err)
				writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
				return
			}
		}
		msg.MessageID = rec.MessageID
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.o.SendTimeout)
	defer cancel()
	var res *bal.SendResult
	var err error
	if msg != nil {
		res, err = h.sender.Send(ctx, q.caller, q.addr, msg, opts)
	} else {
		res, err = h.sender.SendRaw(ctx, q.caller, q.addr, bytes.NewReader(body), opts)
	}
	if res != nil && rec != nil && rec.MessageID == "" {
		rec.MessageID = res.MessageID
	}
	resp := sendResponse(res)
	if res != nil {
		h.events(ctx, q.addr, res)
	}
	if err != nil {
		p := sendProblem(err)
		if errors.Is(err, bal.ErrAllRejected) {
			p.Recipients = resp.Recipients
			for _, rr := range resp.Recipients {
				if rr.Status == "deferred" {
					p.Status, p.Title, p.Type = http.StatusServiceUnavailable, http.StatusText(http.StatusServiceUnavailable), "urn:mssante-go:problem:"+ProblemSubmission
				}
			}
		}
		if p.Status >= 500 {
			h.log.Warn("httpapi: send failed", "bal", q.addr, "err", err)
			w.Header().Set("Retry-After", "30")
		}
		answer(p.Status, "application/problem+json", p)
		return
	}
	w.Header().Set("Location", "/v1/bals/"+q.addr+"/messages/"+res.MessageID)
	answer(http.StatusAccepted, "application/json", resp)
}

func sendResponse(res *bal.SendResult) *SendResponse {
	out := &SendResponse{Recipients: []RecipientResult{}}
	if res == nil {
		return out
	}
	out.MessageID = res.MessageID
	for _, rr := range res.Recipients {
		st := "accepted"
		switch {
		case rr.AlreadySent:
			st = "already_sent"
		case !rr.Accepted && rr.Temporary:
			st = "deferred"
		case !rr.Accepted:
			st = "refused"
		}
		out.Recipients = append(out.Recipients, RecipientResult{Address: rr.Address, Status: st, Code: rr.Code, Text: strings.TrimSpace(rr.Text)})
	}
	return out
}

// events publishes message.accepted for each recipient accepted now, message.failed for each
// refused for good.
func (h *Handler) events(ctx context.Context, addr string, res *bal.SendResult) {
	for _, rr := range res.Recipients {
		typ := ""
		switch {
		case rr.Accepted && !rr.AlreadySent:
			typ = webhook.EventAccepted
		case !rr.Accepted && !rr.Temporary:
			typ = webhook.EventFailed
		default:
			continue
		}
		h.publish(ctx, webhook.Event{ID: eventID(addr, typ, res.MessageID, rr.Address, ""), Type: typ, BAL: addr,
			MessageID: res.MessageID, Recipient: rr.Address, SMTPCode: rr.Code})
	}
}

// eventID is stable for one event, so that a receiver recognises it when bal reports it twice.
func eventID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "evt_" + hex.EncodeToString(sum[:16])
}

func sendProblem(err error) *Problem {
	switch {
	case errors.Is(err, bal.ErrNotWhitelisted):
		return problem(http.StatusUnprocessableEntity, ProblemNotWhitelisted, err.Error())
	case errors.Is(err, bal.ErrMessage):
		return problem(http.StatusUnprocessableEntity, ProblemInvalidMessage, err.Error())
	case errors.Is(err, bal.ErrAllRejected):
		return problem(http.StatusUnprocessableEntity, ProblemAllRefused, "the submission server refused every recipient")
	case errors.Is(err, bal.ErrConfig):
		return problem(http.StatusInternalServerError, ProblemInternal, "the BAL client is misconfigured")
	default:
		return problem(http.StatusBadGateway, ProblemSubmission,
			"the submission server could not be reached or refused the session: send again with the same Idempotency-Key")
	}
}

func validKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(body []byte, v any) *Problem {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return problem(http.StatusBadRequest, ProblemMalformedJSON, "data after the JSON object")
		}
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return problem(http.StatusBadRequest, ProblemMalformedJSON, fmt.Sprintf("invalid JSON at byte %d", se.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, ProblemMalformedJSON, "the JSON ends early")
	case errors.As(err, &te):
		p := problem(http.StatusBadRequest, ProblemInvalidRequest, fmt.Sprintf("%s: expected %s", te.Field, te.Type))
		p.Errors = []ProblemItem{{Pointer: "/" + strings.ReplaceAll(te.Field, ".", "/"), Detail: "expected " + te.Type.String()}}
		return p
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := problem(http.StatusBadRequest, ProblemUnknownField, fmt.Sprintf("unknown field %q", name))
		p.Errors = []ProblemItem{{Pointer: "/" + name, Detail: "unknown field"}}
		return p
	default:
		// base64 errors of the []byte fields
		return problem(http.StatusBadRequest, ProblemInvalidRequest, "a field could not be decoded (documents are base64)")
	}
}

// buildMessage turns a SendRequest into the mail bal sends.
func (h *Handler) buildMessage(addr string, body []byte) (*mssante.Message, *bal.SendOptions, *Problem) {
	var req SendRequest
	if p := decodeStrict(body, &req); p != nil {
		return nil, nil, p
	}
	from, err := mssante.NewAddress("", addr)
	if err != nil {
		return nil, nil, problem(http.StatusInternalServerError, ProblemInternal, "")
	}
	bad := problem(http.StatusUnprocessableEntity, ProblemInvalidRequest, "the request is not valid")
	if len(req.To) == 0 {
		bad.Errors = append(bad.Errors, ProblemItem{Pointer: "/to", Detail: "at least one recipient"})
	}
	parse := func(list []string, field string) []mssante.Address {
		var out []mssante.Address
		for i, s := range list {
			a, err := mssante.NewAddress("", s)
			if err != nil {
				bad.Errors = append(bad.Errors, ProblemItem{Pointer: fmt.Sprintf("/%s/%d", field, i), Detail: "not an address"})
				continue
			}
			out = append(out, a)
		}
		return out
	}
	to, cc := parse(req.To, "to"), parse(req.Cc, "cc")
	if (len(req.Documents) == 0) == (req.XDM == nil) {
		bad.Errors = append(bad.Errors, ProblemItem{Pointer: "/documents", Detail: "give either documents or xdm"})
	}
	if req.PDF != nil && req.XDM == nil {
		bad.Errors = append(bad.Errors, ProblemItem{Pointer: "/pdf", Detail: "pdf goes with xdm; a CDA's copy goes in its document"})
	}
	so, perr := sendOptions(req.DSN)
	if perr != "" {
		bad.Errors = append(bad.Errors, ProblemItem{Pointer: "/dsn", Detail: perr})
	}
	if len(bad.Errors) > 0 {
		return nil, nil, bad
	}
	var msg *mssante.Message
	if req.XDM != nil {
		msg, err = bal.NewXDMMessage(from, to, req.XDM, req.PDF, &bal.DocumentOptions{Text: req.Text, WantMDN: req.MDN})
		if err != nil {
			p := problem(http.StatusUnprocessableEntity, ProblemInvalidDocument, "the IHE_XDM.ZIP fails the XDM checks")
			p.Errors = []ProblemItem{{Pointer: "/xdm", Detail: strings.TrimPrefix(err.Error(), bal.ErrMessage.Error()+": ")}}
			return nil, nil, p
		}
	} else {
		docs := make([]xdm.MailDocument, len(req.Documents))
		p := problem(http.StatusUnprocessableEntity, ProblemInvalidDocument, "a CDA document fails the CDA checks")
		for i, d := range req.Documents {
			ptr := fmt.Sprintf("/documents/%d/cda", i)
			doc, err := cda.ParseBytes(d.CDA, nil)
			if err != nil {
				p.Errors = append(p.Errors, ProblemItem{Pointer: ptr, Detail: "not a CDA R2 document"})
				continue
			}
			for _, f := range cda.Validate(doc).Errors() {
				p.Errors = append(p.Errors, ProblemItem{Pointer: ptr, Rule: f.Rule, Detail: f.Message})
			}
			docs[i] = xdm.MailDocument{CDA: d.CDA, PDF: d.PDF}
		}
		if len(p.Errors) > 0 {
			return nil, nil, p
		}
		text := req.Text
		if text == "" {
			text = "Veuillez trouver ci-joint un document médical.\n"
		}
		msg = &mssante.Message{From: from, To: to, Text: text, WantMDN: req.MDN}
		if _, err := xdm.Compose(msg, docs, nil); err != nil {
			p.Errors = []ProblemItem{{Pointer: "/documents", Detail: err.Error()}}
			return nil, nil, p
		}
	}
	msg.Cc = cc
	if req.INS != "" && (msg.Patient == nil || !strings.EqualFold(msg.Patient.INS.Value, req.INS)) {
		p := problem(http.StatusUnprocessableEntity, ProblemInvalidDocument, "the documents' patient does not have this INS")
		p.Errors = []ProblemItem{{Pointer: "/ins", Detail: "does not match the documents"}}
		return nil, nil, p
	}
	return msg, so, nil
}

// sendOptions checks the DSN wishes; bal checks them again.
func sendOptions(d *DSNRequest) (*bal.SendOptions, string) {
	if d == nil {
		return nil, ""
	}
	so := &bal.SendOptions{}
	for _, n := range d.Notify {
		switch v := bal.DSNNotify(strings.ToUpper(n)); v {
		case bal.NotifySuccess, bal.NotifyFailure, bal.NotifyDelay, bal.NotifyNever:
			so.Notify = append(so.Notify, v)
		default:
			return nil, "notify: SUCCESS, FAILURE, DELAY or NEVER"
		}
	}
	switch v := bal.DSNReturn(strings.ToUpper(d.Return)); v {
	case "", bal.ReturnHeaders, bal.ReturnFull:
		so.Return = v
	default:
		return nil, "ret: HDRS or FULL"
	}
	return so, ""
}

// rawOptions reads the DSN wishes of a raw message from the query: notify=SUCCESS,FAILURE&ret=HDRS.
func rawOptions(r *http.Request) (*bal.SendOptions, *Problem) {
	q := r.URL.Query()
	d := &DSNRequest{Return: q.Get("ret")}
	if n := q.Get("notify"); n != "" {
		d.Notify = strings.Split(n, ",")
	}
	so, perr := sendOptions(d)
	if perr != "" {
		p := problem(http.StatusBadRequest, ProblemInvalidRequest, perr)
		return nil, p
	}
	return so, nil
}
