package hl7v2_test

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// BenchmarkParseMDM1MB: an MDM^T02 whose OBX-5 holds 1.8 MB of base64 (a CDA N1 with a 1 MB
// PDF), the message the bridge reads most.
func BenchmarkParseMDM1MB(b *testing.B) {
	raw := make([]byte, 1<<20*4/3)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	msg := []byte(strings.Replace(mdmT02, "PENsaW5pY2FsRG9jdW1lbnQvPg==", base64.StdEncoding.EncodeToString(raw), 1))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		m, err := hl7v2.Parse(msg, nil)
		if err != nil || len(m.All("OBX")[0].Get(5, 5)) < 1<<20 {
			b.Fatal(err)
		}
	}
}
