package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// SaveIdempotencyRecord writes the record a request leaves before it submits, for the tests
// of a crash at that point.
func (h *Handler) SaveIdempotencyRecord(addr, key, messageID, mediaType string, body []byte) error {
	fp := sha256.Sum256(append([]byte(mediaType+"\n"), body...))
	return h.idem.put(addr, key, &idemRecord{Fingerprint: hex.EncodeToString(fp[:]), MessageID: messageID, Created: time.Now()}, true)
}

// BuildMessage is the message a JSON request becomes.
func (h *Handler) BuildMessage(addr string, body []byte) (*mssante.Message, *Problem) {
	m, _, p := h.buildMessage(addr, body)
	return m, p
}
