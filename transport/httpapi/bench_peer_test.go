package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// TestBenchHTTPAPIvsBAL is the measurement bench/httpapi/run.sh prints: N messages (raw RFC
// 5322, SIZE bytes, distinct Message-IDs) sent to the sandbox's submission server by
// bal.Client.SendRaw directly, and by POST message/rfc822 through the HTTP API (mutual TLS,
// one HTTP/2 connection kept alive, backed by a bal.Client of its own), ROUNDS rounds
// alternated; the medians of messages/s, their ratio and the median of the rounds' ratios.
// It runs only with HTTPAPI_BENCH=1.
func TestBenchHTTPAPIvsBAL(t *testing.T) {
	if os.Getenv("HTTPAPI_BENCH") != "1" {
		t.Skip("HTTPAPI_BENCH=1 runs the benchmark (bench/httpapi/run.sh)")
	}
	n, size, rounds := envInt("HTTPAPI_BENCH_N", 50), envInt("HTTPAPI_BENCH_SIZE", 20*1024), envInt("HTTPAPI_BENCH_ROUNDS", 10)
	info := startSandbox(t)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	// HTTPAPI_BENCH_NOHOOKS=1 leaves webhooks out, to see what their fsyncs cost.
	viaAPI := startAPI(t, info, from, &apiOptions{noWebhooks: os.Getenv("HTTPAPI_BENCH_NOHOOKS") == "1"})
	// The direct client is another bal.Client of the same BAL: its own state folder.
	direct := startAPI(t, info, from, nil).bal
	// The validating transport of the tests is left out: it is not what a caller pays.
	viaAPI.client.Transport = viaAPI.client.Transport.(*validating).base

	line := bytes.Repeat([]byte("x"), 74)
	seq := 0
	msg := func() []byte {
		seq++
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: bench\r\nMessage-ID: <bench-%d-%d@%s>\r\nX-MSS-NIL: DEV000000\r\n\r\n",
			from, to, time.Now().UnixNano(), seq, sandbox.Hopital)
		for b.Len() < size {
			b.Write(line)
			b.WriteString("\r\n")
		}
		return b.Bytes()
	}
	ctx := context.Background()
	sendBAL := func() {
		for i := 0; i < n; i++ {
			if _, err := direct.SendRaw(ctx, bytes.NewReader(msg()), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendAPI := func() {
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest("POST", viaAPI.url+"/v1/bals/"+from+"/messages", bytes.NewReader(msg()))
			req.Header.Set("Content-Type", "message/rfc822")
			if os.Getenv("HTTPAPI_BENCH_NOKEY") != "1" {
				req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(seq))
			}
			resp, err := viaAPI.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d", resp.StatusCode)
			}
		}
	}
	// rate also gives the CPU time per message of the whole process (client, API, bal, the
	// sandbox's servers, the webhook receiver): unlike wall time, load barely changes it.
	rate := func(send func()) (float64, time.Duration) {
		start, cpu := time.Now(), selfCPU(t)
		send()
		return float64(n) / time.Since(start).Seconds(), (selfCPU(t) - cpu) / time.Duration(n)
	}
	// The order alternates (bal then API, API then bal) so that neither side always follows
	// the other's background work (deliveries, DSNs, webhooks); on a shared machine the load
	// changes between rounds, so each round's ratio is taken too.
	var apiRates, balRates, ratios, apiCPU, balCPU []float64
	for r := 0; r < rounds; r++ {
		var a, b float64
		var ac, bc time.Duration
		if r%2 == 0 {
			b, bc = rate(sendBAL)
			a, ac = rate(sendAPI)
		} else {
			a, ac = rate(sendAPI)
			b, bc = rate(sendBAL)
		}
		apiRates, balRates, ratios = append(apiRates, a), append(balRates, b), append(ratios, a/b)
		apiCPU, balCPU = append(apiCPU, float64(ac.Microseconds())), append(balCPU, float64(bc.Microseconds()))
	}
	ma, mb := median(apiRates), median(balRates)
	fmt.Printf("bench httpapi: %d messages x %d bytes, %d rounds\n", n, size, rounds)
	fmt.Printf("bench bal.SendRaw direct   %8.1f msg/s (median)\n", mb)
	fmt.Printf("bench HTTP API (mTLS)      %8.1f msg/s (median)\n", ma)
	fmt.Printf("bench ratio API/bal        %8.2fx (ratio of the medians; goal >= 0.9x)\n", ma/mb)
	fmt.Printf("bench ratio API/bal        %8.2fx (median of the rounds' ratios, min %.2f, max %.2f)\n",
		median(ratios), slices.Min(ratios), slices.Max(ratios))
	fmt.Printf("bench CPU per message      bal %.0f µs, API %.0f µs: API/bal %.2fx (medians)\n",
		median(balCPU), median(apiCPU), median(apiCPU)/median(balCPU))
}

// selfCPU is the user + system CPU time of this process.
func selfCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
