package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/whitelist"
)

// TestBenchNodeAPIvsBAL is the measurement bench/httpapi/run-serve.sh prints: N raw messages
// (SIZE bytes, distinct Message-IDs) from the node's BAL applicative to a local BAL, sent by
// bal.Client.SendRaw to the node's submission listener (mutual TLS, SASL EXTERNAL), and by
// POST message/rfc822 to the node's API (httpapi.NodeAPI: mutual TLS, then the same
// submission session in process), ROUNDS rounds alternated; the medians of messages/s and
// their ratio. It runs only with NODEAPI_BENCH=1.
func TestBenchNodeAPIvsBAL(t *testing.T) {
	if os.Getenv("NODEAPI_BENCH") != "1" {
		t.Skip("NODEAPI_BENCH=1 runs the benchmark (bench/httpapi/run-serve.sh)")
	}
	n, size, rounds := benchInt("NODEAPI_BENCH_N", 100), benchInt("NODEAPI_BENCH_SIZE", 20*1024), benchInt("NODEAPI_BENCH_ROUNDS", 5)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.extra = "[api]\nenabled = true\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apiDone := make(chan error, 1)
	a.setup = func(nd *node.Node, cfg *node.Config) {
		api, err := httpapi.NewNodeAPI(nd, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() { apiDone <- api.Serve(ctx, l, time.Second) }()
	}
	defer func() { cancel(); <-apiDone }()
	nd, _ := s.start(t, ctx, a, nil)
	from, to := a.appBAL(), "dr@"+a.domain
	if err := nd.Store.AddBAL(ctx, &mailbox.BAL{Address: to, Type: mailbox.ORG}); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(a.addr("submission"))
	direct, err := bal.New(&bal.Options{Address: from, Submission: bal.Endpoint{Addr: "localhost:" + port},
		TLS:       transport.TLSOptions{Trust: nd.Trust(), Certificates: []tls.Certificate{a.app.TLSCertificate()}},
		Whitelist: whitelist.NewList(time.Now(), []whitelist.Entry{{Domain: a.domain}}), StateDir: t.TempDir(), NIL: "TEST0001"})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: s.clientTLS(a, a.app)}}
	url := "https://" + l.Addr().String() + "/v1/bals/" + from + "/messages"

	line := strings.Repeat("x", 74) + "\r\n"
	seq := 0
	msg := func() []byte {
		seq++
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: bench\r\nMessage-ID: <bench-%d-%d@%s>\r\nX-MSS-NIL: TEST0001\r\n\r\n",
			from, to, time.Now().UnixNano(), seq, a.domain)
		for b.Len() < size {
			b.WriteString(line)
		}
		return b.Bytes()
	}
	var apiRates, balRates []float64
	for r := 0; r < rounds; r++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := direct.SendRaw(ctx, bytes.NewReader(msg()), nil); err != nil {
				t.Fatal(err)
			}
		}
		balRates = append(balRates, float64(n)/time.Since(start).Seconds())
		start = time.Now()
		for i := 0; i < n; i++ {
			resp, err := client.Post(url, "message/rfc822", bytes.NewReader(msg()))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) // read to the end, so that the connection is reused
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d", resp.StatusCode)
			}
		}
		apiRates = append(apiRates, float64(n)/time.Since(start).Seconds())
	}
	ma, mb := benchMedian(apiRates), benchMedian(balRates)
	fmt.Printf("bench serve API: %d messages x %d bytes, %d rounds\n", n, size, rounds)
	fmt.Printf("bench bal.SendRaw to submission %8.1f msg/s (median)\n", mb)
	fmt.Printf("bench serve HTTP API (mTLS)     %8.1f msg/s (median)\n", ma)
	fmt.Printf("bench ratio API/bal             %8.2fx (goal >= 0.9x)\n", ma/mb)
}

func benchMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
