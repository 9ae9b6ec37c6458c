package httpapi

import (
	"net/http"
	"testing"
)

// FuzzDecodeSendRequest feeds the JSON decoder and the checks that run before any document is
// opened: a clear problem or a request, never a panic.
func FuzzDecodeSendRequest(f *testing.F) {
	f.Add([]byte(`{"to":["a@b.fr"],"documents":[{"cda":"PD94","pdf":"JVBE"}],"mdn":true,"dsn":{"notify":["SUCCESS"],"ret":"HDRS"}}`))
	f.Add([]byte(`{"to":"x"}`))
	f.Add([]byte(`{"to":[],"xdm":"%%"}`))
	f.Add([]byte(`{"unknown":1}`))
	f.Add([]byte(`{"to":["a@b.fr"]} {}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req SendRequest
		if p := decodeStrict(b, &req); p != nil {
			if p.Status != http.StatusBadRequest {
				t.Fatalf("status %d", p.Status)
			}
			return
		}
		sendOptions(req.DSN)
	})
}
