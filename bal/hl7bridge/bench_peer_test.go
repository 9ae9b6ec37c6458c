package hl7bridge_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7BenchAgainstBAL (bench/hl7/run.sh, HL7_BENCH=1): an MDM^T02 carrying an N1 CDA with a
// 1 MB PDF goes in over MLLP and its ACK comes out once the mail is queued by the submission
// server, against bal sending the same document directly (the floor the bridge is built on),
// same trust space, same BAL client, rounds alternated. Prints msg/s (median of the rounds),
// p99 latency over every message, and the ratio bridge/bal (goal ≥ 0.8).
func TestHL7BenchAgainstBAL(t *testing.T) {
	if os.Getenv("HL7_BENCH") != "1" {
		t.Skip("HL7_BENCH=1 runs the benchmark (bench/hl7/run.sh)")
	}
	n, rounds := envInt("HL7_BENCH_N", 10), envInt("HL7_BENCH_ROUNDS", 3)
	size := envInt("HL7_BENCH_SIZE", 1<<20)
	e := startBridge(t, nil)
	pdf := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range pdf {
		pdf[i] = byte(r.Uint32())
	}
	copy(pdf, "%PDF-1.7\n")
	in := cda.Sample(cda.KindN1)
	in.PDF = pdf
	d, err := cda.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	xml, err := cda.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(xml)
	ctx := context.Background()
	c := mllp.Dial(e.addr, &mllp.ClientOptions{AckTimeout: time.Minute})
	defer c.Close()

	seq := 0
	viaBridge := func() time.Duration {
		seq++
		m := hl7v2.New(hl7v2.Standard())
		m.Segments[0].Set(3, "DPI").Set(4, "HOP").Set(9, "MDM", "T02", "MDM_T02").Set(10, "B"+strconv.Itoa(seq)).Set(11, "P").Set(12, "2.6")
		m.Add("PID").SetValue(3, 0, hl7v2.Value{{"279035121518989"}, {""}, {""}, {"A", mssante.OIDINSNIRTest, "ISO"}, {"INS"}})
		m.Add("OBX").Set(1, "1").Set(2, "ED").Set(3, "11490-0", "", "LN").Set(5, "", "text", "XML", "Base64", b64).Set(11, "F")
		m.Add("PRT").Set(4, "RCT").Set(15, "", "NET", "X.400", doc)
		raw, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ack, err := c.Send(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		if code, _, _ := hl7v2.AckOf(ack); code != "AA" {
			t.Fatalf("ACK %s", code)
		}
		return time.Since(start)
	}
	direct := func() time.Duration {
		start := time.Now()
		doc2, err := cda.ParseBytes(xml, nil) // the DPI's document as bal receives it from a caller
		if err != nil {
			t.Fatal(err)
		}
		msg, err := bal.NewDocumentMessageFromDocument(mssante.MustAddress("DPI", dpi), []mssante.Address{mssante.MustAddress("", doc)}, doc2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Send(ctx, msg, nil); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	var rateB, rateD []float64
	var latB, latD []time.Duration
	run := func(f func() time.Duration, lat *[]time.Duration, rate *[]float64) {
		start := time.Now()
		for range n {
			*lat = append(*lat, f())
		}
		*rate = append(*rate, float64(n)/time.Since(start).Seconds())
	}
	viaBridge()
	direct() // warm-up: connections, caches
	for range rounds {
		run(viaBridge, &latB, &rateB)
		run(direct, &latD, &rateD)
	}
	mb, md := median(rateB), median(rateD)
	fmt.Printf("bench hl7: %d rounds of %d MDM^T02 with a %d-byte PDF\n", rounds, n, size)
	fmt.Printf("bench bridge (MLLP in, ACK out): %.2f msg/s  p99 %v\n", mb, p99(latB).Round(time.Millisecond))
	fmt.Printf("bench bal alone (Send):          %.2f msg/s  p99 %v\n", md, p99(latD).Round(time.Millisecond))
	fmt.Printf("bench ratio bridge/bal: %.2f (goal >= 0.80; medians of the rounds)\n", mb/md)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func p99(x []time.Duration) time.Duration {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}
