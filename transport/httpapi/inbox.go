package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport/webhook"
)

// The states of a received message.
const (
	StatePending  = "pending"  // waiting for the DPI to mark it handled
	StateHandled  = "handled"  // marked; the answer (MDN or error mail) goes out on the next pass
	StateAnswered = "answered" // the answer was sent and the message marked on the server
)

// errDecideLater makes bal hand the message again on a later pass, until the DPI decides.
var errDecideLater = errors.New("httpapi: waiting for the DPI to mark the message handled")

// Received is a message received by a BAL, as the API lists it. It holds health data (the
// documents, the patient and the INS) for the BAL's own caller only.
type Received struct {
	MessageID string    `json:"message_id"`
	From      string    `json:"from,omitempty"`
	Received  time.Time `json:"received"`
	Subject   string    `json:"subject,omitempty"`
	// INS is the patient's INS from METADATA.XML (Réf. #2 ECO.2.1.2), when an XDM travels.
	INS     *mssante.INS     `json:"ins,omitempty"`
	Patient *mssante.Patient `json:"patient,omitempty"`
	// MDNRequested says whether the sender asked for an integration receipt.
	MDNRequested bool `json:"mdn_requested"`
	// Problem names why the mail or its XDM could not be read, when so.
	Problem   string             `json:"problem,omitempty"`
	Documents []ReceivedDocument `json:"documents"`
	State     string             `json:"state"`
	// MDNCode is the integration error code (900–906) the DPI answered with; 0 for processed.
	MDNCode int `json:"mdn_code,omitempty"`
}

// ReceivedDocument is one document of the received XDM; Content is set when one message is read.
type ReceivedDocument struct {
	Path        string `json:"path"`
	MediaType   string `json:"media_type"`
	Code        string `json:"code,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Title       string `json:"title,omitempty"`
	Size        int64  `json:"size"`
	Content     []byte `json:"content,omitempty"`
}

// inbox keeps the received messages of every BAL until they are answered.
type inbox struct {
	dir string
	now func() time.Time
	mu  sync.Mutex
}

func (in *inbox) folder(addr, id string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(addr) + "\n" + id))
	return filepath.Join(in.dir, strings.ToLower(addr), hex.EncodeToString(sum[:16]))
}

func (in *inbox) get(addr, id string) (*Received, error) {
	b, err := os.ReadFile(filepath.Join(in.folder(addr, id), "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	var m Received
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("httpapi: received message record: %w", err)
	}
	return &m, nil
}

func (in *inbox) put(addr string, m *Received) error {
	dir := in.folder(addr, m.MessageID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	meta := *m
	meta.Documents = slices.Clone(m.Documents)
	for i := range meta.Documents {
		meta.Documents[i].Content = nil
	}
	b, err := json.Marshal(&meta)
	if err != nil {
		return err
	}
	return writeDurable(dir, filepath.Join(dir, "meta.json"), b)
}

// add records a new message with its documents' content.
func (in *inbox) add(addr string, m *Received) error {
	dir := in.folder(addr, m.MessageID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	for i, d := range m.Documents {
		if err := writeDurable(dir, filepath.Join(dir, fmt.Sprintf("doc-%d", i)), d.Content); err != nil {
			return err
		}
	}
	return in.put(addr, m)
}

// content reads the documents' bytes into m.
func (in *inbox) content(addr string, m *Received) error {
	for i := range m.Documents {
		b, err := os.ReadFile(filepath.Join(in.folder(addr, m.MessageID), fmt.Sprintf("doc-%d", i)))
		if err != nil {
			return fmt.Errorf("httpapi: %w", err)
		}
		m.Documents[i].Content = b
	}
	return nil
}

func (in *inbox) list(addr, state string, n int) ([]*Received, error) {
	ents, err := os.ReadDir(filepath.Join(in.dir, strings.ToLower(addr)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	var out []*Received
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(in.dir, strings.ToLower(addr), e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m Received
		if json.Unmarshal(b, &m) == nil && (state == "" || m.State == state) {
			out = append(out, &m)
		}
	}
	slices.SortFunc(out, func(a, b *Received) int { return a.Received.Compare(b.Received) })
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// receivedOf copies what the API keeps of m.
func (in *inbox) receivedOf(m *bal.Incoming) *Received {
	r := &Received{MessageID: m.MessageID, Received: in.now().UTC(), State: StatePending, Documents: []ReceivedDocument{}}
	if m.ParseError != nil {
		r.Problem = "the mail could not be parsed"
	}
	if m.Message != nil {
		r.From, r.Subject = m.Message.From.Addr, m.Message.Subject
		r.MDNRequested = len(m.Message.DispositionNotificationTo) > 0
	}
	if m.XDMError != nil {
		r.Problem = "the IHE_XDM.ZIP could not be read"
	}
	if !m.INS.IsZero() {
		ins := m.INS
		r.INS = &ins
	}
	r.Patient = m.Patient
	for _, d := range m.Documents() {
		rd := ReceivedDocument{Path: d.Path, MediaType: d.Entry.MimeType, Title: d.Entry.Title, Size: int64(len(d.Data)),
			Content: d.Data}
		if d.CDA != nil {
			rd.Code, rd.DisplayName = d.CDA.Code.Code, d.CDA.Code.DisplayName
		}
		r.Documents = append(r.Documents, rd)
	}
	return r
}

// Run watches the mailbox of every BAL until ctx ends: received messages are kept for the DPI
// (message.received), answered once marked handled (message.handled), and the receipts of
// sent messages become events; with Options.ReceiptsOnly, only the receipts. It returns ctx's error, or the first error a watch cannot
// recover from (bal.Client.Watch), once every watch stopped.
func (h *Handler) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for addr, c := range h.bals {
		wg.Go(func() {
			err := c.Watch(ctx, h.watchHandler(addr), &bal.WatchOptions{
				OnReceipt:    func(ctx context.Context, r bal.Receipt) { h.receipt(ctx, addr, r) },
				OnHandled:    func(ctx context.Context, id string) { h.handled(ctx, addr, id) },
				ReceiptsOnly: h.o.ReceiptsOnly,
			})
			if err != nil && ctx.Err() == nil {
				h.log.Error("httpapi: watching a BAL stopped", "bal", addr, "err", err)
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func (h *Handler) watchHandler(addr string) bal.Handler {
	return func(ctx context.Context, m *bal.Incoming) error {
		h.in.mu.Lock()
		defer h.in.mu.Unlock()
		rec, err := h.in.get(addr, m.MessageID)
		if err != nil {
			return err
		}
		if rec == nil {
			if err := h.in.add(addr, h.in.receivedOf(m)); err != nil {
				return err
			}
			h.publish(ctx, webhook.Event{ID: eventID(addr, webhook.EventReceived, m.MessageID), Type: webhook.EventReceived,
				BAL: addr, MessageID: m.MessageID})
			return errDecideLater
		}
		switch {
		case rec.State == StatePending:
			return errDecideLater
		case rec.MDNCode != 0:
			return bal.Reject(mssante.MDNCode(rec.MDNCode))
		default:
			return nil
		}
	}
}

func (h *Handler) handled(ctx context.Context, addr, id string) {
	h.in.mu.Lock()
	rec, err := h.in.get(addr, id)
	if err == nil && rec != nil {
		rec.State = StateAnswered
		err = h.in.put(addr, rec)
	}
	h.in.mu.Unlock()
	if err != nil {
		h.log.Error("httpapi: recording an answered message", "bal", addr, "message_id", id, "err", err)
	}
	status := "processed"
	if rec != nil && rec.MDNCode != 0 {
		status = "error"
	}
	mdn := 0
	if rec != nil {
		mdn = rec.MDNCode
	}
	h.publish(ctx, webhook.Event{ID: eventID(addr, webhook.EventHandled, id), Type: webhook.EventHandled, BAL: addr,
		MessageID: id, Status: status, MDNCode: mdn})
}

// receiptEvents maps a recipient's status to its event type.
func receiptEvent(s bal.Status) string {
	switch s {
	case bal.StatusDelivered:
		return webhook.EventDelivered
	case bal.StatusDelayed:
		return webhook.EventDelayed
	case bal.StatusFailed:
		return webhook.EventFailed
	case bal.StatusProcessed:
		return webhook.EventProcessed
	case bal.StatusDisplayed:
		return webhook.EventDisplayed
	case bal.StatusError:
		return webhook.EventError
	}
	return ""
}

func (h *Handler) receipt(ctx context.Context, addr string, r bal.Receipt) {
	typ := receiptEvent(r.Status)
	if typ == "" {
		return
	}
	h.publish(ctx, webhook.Event{ID: eventID(addr, typ, r.MessageID, r.Recipient, r.Detail), Type: typ, BAL: addr,
		MessageID: r.MessageID, Recipient: r.Recipient, Status: string(r.Status), SMTPCode: r.SMTPCode,
		MDNCode: int(r.MDNCode), Detail: r.Detail})
}

// ReceivedList is the answer of GET /v1/bals/{bal}/received.
type ReceivedList struct {
	Messages []*Received `json:"messages"`
}

func (h *Handler) listReceived(w http.ResponseWriter, r *http.Request, q *request) {
	n, p := limit(r, 50, 500)
	if p != nil {
		writeProblem(w, p)
		return
	}
	state := r.URL.Query().Get("state")
	switch state {
	case "", StatePending, StateHandled, StateAnswered:
	default:
		writeProblem(w, problem(http.StatusBadRequest, ProblemInvalidRequest, "state: pending, handled or answered"))
		return
	}
	list, err := h.in.list(q.addr, state, n)
	if err != nil {
		h.log.Error("httpapi: received messages", "bal", q.addr, "err", err)
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
		return
	}
	if list == nil {
		list = []*Received{}
	}
	writeJSON(w, http.StatusOK, &ReceivedList{Messages: list})
}

func (h *Handler) getReceived(w http.ResponseWriter, r *http.Request, q *request) {
	id := strings.Trim(r.PathValue("id"), "<>")
	m, err := h.in.get(q.addr, id)
	if err == nil && m != nil {
		err = h.in.content(q.addr, m)
	}
	switch {
	case err != nil:
		h.log.Error("httpapi: received message", "bal", q.addr, "err", err)
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
	case m == nil:
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "no received message with this Message-ID"))
	default:
		writeJSON(w, http.StatusOK, m)
	}
}

// HandledRequest is the body of POST /v1/bals/{bal}/received/{id}/handled: empty or
// {"mdn_code":0} when the DPI integrated the message (MDN processed), an integration error
// code 900–906 when it refused it (MDN processed/Error, or the error mail when no MDN was
// asked for).
type HandledRequest struct {
	MDNCode int `json:"mdn_code,omitempty"`
}

func (h *Handler) markHandled(w http.ResponseWriter, r *http.Request, q *request) {
	var req HandledRequest
	body, err := readSmall(w, r, 4096)
	if err != nil {
		writeProblem(w, problem(http.StatusRequestEntityTooLarge, ProblemTooLarge, "the body is larger than 4096 bytes"))
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if p := decodeStrict(body, &req); p != nil {
			writeProblem(w, p)
			return
		}
	}
	if req.MDNCode != 0 && (req.MDNCode < 900 || req.MDNCode > 906) {
		p := problem(http.StatusUnprocessableEntity, ProblemInvalidRequest, "mdn_code: 900 to 906, or 0 for processed")
		p.Errors = []ProblemItem{{Pointer: "/mdn_code", Detail: "900 to 906"}}
		writeProblem(w, p)
		return
	}
	id := strings.Trim(r.PathValue("id"), "<>")
	h.in.mu.Lock()
	m, err := h.in.get(q.addr, id)
	conflict := false
	if err == nil && m != nil {
		switch {
		case m.State == StatePending:
			m.State, m.MDNCode = StateHandled, req.MDNCode
			err = h.in.put(q.addr, m)
		case m.MDNCode != req.MDNCode:
			conflict = true
		}
	}
	h.in.mu.Unlock()
	if err == nil && m != nil && !conflict && m.State == StateHandled && h.node != nil {
		// On a node the answer goes now, through the caller's own submission; a failure
		// leaves the message handled, not answered, and the same request tries again.
		if err := h.node.answer(r.Context(), q.caller, q.addr, m); err != nil {
			h.log.Warn("httpapi: answering a received message", "bal", q.addr, "err", err)
			writeProblem(w, problem(http.StatusServiceUnavailable, ProblemSubmission, "the answer could not be sent now; retry"))
			return
		}
		h.handled(r.Context(), q.addr, id)
		m.State = StateAnswered
	}
	switch {
	case err != nil:
		h.log.Error("httpapi: marking a message handled", "bal", q.addr, "err", err)
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
	case m == nil:
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "no received message with this Message-ID"))
	case conflict:
		writeProblem(w, problem(http.StatusConflict, ProblemInvalidRequest, "this message was already marked handled with another answer"))
	default:
		writeJSON(w, http.StatusAccepted, m)
	}
}

func readSmall(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, errors.New("httpapi: body too large")
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, max))
}
