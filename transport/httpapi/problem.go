package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors name what failed (a JSON field, a CDA rule, a recipient's index), never content.
	Errors []ProblemItem `json:"errors,omitempty"`
	// Recipients are the submission server's answers when every recipient was refused.
	Recipients []RecipientResult `json:"recipients,omitempty"`
}

// ProblemItem is one cause of a problem.
type ProblemItem struct {
	Pointer string `json:"pointer,omitempty"` // JSON Pointer (RFC 6901) into the request
	Rule    string `json:"rule,omitempty"`    // a CDA rule id
	Detail  string `json:"detail"`
}

// The problem types this API answers with, after "urn:mssante-go:problem:".
const (
	ProblemMalformedJSON       = "malformed-json"
	ProblemUnknownField        = "unknown-field"
	ProblemInvalidRequest      = "invalid-request"
	ProblemTooLarge            = "body-too-large"
	ProblemUnsupportedMedia    = "unsupported-media-type"
	ProblemInvalidDocument     = "invalid-document"
	ProblemNotWhitelisted      = "recipient-not-whitelisted"
	ProblemInvalidMessage      = "invalid-message"
	ProblemAllRefused          = "all-recipients-refused"
	ProblemUnauthenticated     = "unauthenticated"
	ProblemForbiddenBAL        = "bal-not-yours"
	ProblemNotFound            = "not-found"
	ProblemIdempotencyMismatch = "idempotency-key-reused"
	ProblemInProgress          = "request-in-progress"
	ProblemSubmission          = "submission-unavailable"
	ProblemInternal            = "internal"
	ProblemMethod              = "method-not-allowed"
)

func problem(status int, name, detail string) *Problem {
	return &Problem{Type: "urn:mssante-go:problem:" + name, Title: http.StatusText(status), Status: status, Detail: detail}
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	b, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(p.Status)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, ""))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
