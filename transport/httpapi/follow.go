package httpapi

import (
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mssante-go/sdk/bal"
)

// StatusResponse is where each recipient of a sent message stands (bal's outbox record).
type StatusResponse struct {
	MessageID    string            `json:"message_id"`
	MDNRequested bool              `json:"mdn_requested"`
	Created      time.Time         `json:"created"`
	Recipients   []RecipientStatus `json:"recipients"`
}

// RecipientStatus is one recipient's status: pending (not yet accepted by the submission
// server), submitted (queued by the operator), delayed, delivered, failed, processed,
// displayed or error (MDNCode 900–906); Final when nothing more will come.
type RecipientStatus struct {
	Address string    `json:"address"`
	Status  string    `json:"status"`
	Final   bool      `json:"final"`
	Code    int       `json:"code,omitempty"`
	MDNCode int       `json:"mdn_code,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Updated time.Time `json:"updated"`
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, q *request) {
	id := strings.Trim(r.PathValue("id"), "<>")
	rec, err := h.sender.Status(r.Context(), q.addr, id)
	if errors.Is(err, fs.ErrNotExist) {
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "no message with this Message-ID was sent by this BAL"))
		return
	}
	if err != nil {
		h.log.Error("httpapi: outbox", "bal", q.addr, "err", err)
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
		return
	}
	writeJSON(w, http.StatusOK, statusOf(rec))
}

func statusOf(rec *bal.Record) *StatusResponse {
	out := &StatusResponse{MessageID: rec.MessageID, MDNRequested: rec.MDNRequested, Created: rec.Created,
		Recipients: []RecipientStatus{}}
	for _, rs := range rec.Recipients {
		out.Recipients = append(out.Recipients, RecipientStatus{Address: rs.Address, Status: string(rs.Status),
			Final: rs.Status.Final(rec.MDNRequested), Code: rs.Code, MDNCode: int(rs.MDNCode), Detail: rs.Detail, Updated: rs.Updated})
	}
	return out
}

// DeliveriesResponse is the webhook delivery log of a BAL, oldest first.
type DeliveriesResponse struct {
	Deliveries []Delivery `json:"deliveries"`
}

// Delivery is one attempt to deliver a webhook event.
type Delivery struct {
	EventID string    `json:"event_id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Attempt int       `json:"attempt"`
	Status  int       `json:"status,omitempty"`
	Error   string    `json:"error,omitempty"`
	Outcome string    `json:"outcome"`
}

func (h *Handler) deliveries(w http.ResponseWriter, r *http.Request, q *request) {
	n, perr := limit(r, 100, 1000)
	if perr != nil {
		writeProblem(w, perr)
		return
	}
	out := &DeliveriesResponse{Deliveries: []Delivery{}}
	if h.o.Webhooks != nil {
		log, err := h.o.Webhooks.Log(q.addr, n)
		if err != nil {
			h.log.Error("httpapi: webhook log", "bal", q.addr, "err", err)
			writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
			return
		}
		for _, d := range log {
			out.Deliveries = append(out.Deliveries, Delivery(d))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// limit reads the limit query parameter.
func limit(r *http.Request, def, max int) (int, *Problem) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		p := problem(http.StatusBadRequest, ProblemInvalidRequest, "limit: 1 to "+strconv.Itoa(max))
		return 0, p
	}
	return n, nil
}
