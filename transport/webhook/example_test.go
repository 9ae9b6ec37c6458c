package webhook_test

import (
	"io"
	"log"
	"net/http"
	"time"

	"github.com/mssante-go/sdk/transport/webhook"
)

// A DPI's receiver checks each request before trusting it: the signature under its endpoint's
// secret and the replay window, then deduplicates on Webhook-Id (a request whose answer was
// lost comes again).
func ExampleVerify() {
	secret := []byte("the secret of this endpoint, 16+ bytes")
	http.HandleFunc("/mssante-events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		if err := webhook.Verify(secret, r.Header.Get("Webhook-Signature"), body, time.Now(), 0); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		log.Printf("event %s", r.Header.Get("Webhook-Id"))
		w.WriteHeader(http.StatusNoContent)
	})
}
