package httpapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/apitest"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// startSandbox runs a trust space for the test and returns its description.
func startSandbox(t *testing.T) *sandbox.Info {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb.Info
}

// hooks is a webhook receiver that checks signatures and records the events.
type hooks struct {
	secret []byte
	mu     sync.Mutex
	events []webhook.Event
}

func (h *hooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(h.secret, r.Header.Get("Webhook-Signature"), body, time.Now(), 0); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var e webhook.Event
	if err := json.Unmarshal(body, &e); err != nil {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

// wait returns the events once one of type typ for message id arrived.
func (h *hooks) wait(t *testing.T, typ, id string) []webhook.Event {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		evs := append([]webhook.Event(nil), h.events...)
		h.mu.Unlock()
		for _, e := range evs {
			if e.Type == typ && e.MessageID == id {
				return evs
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s event for %s", typ, id)
	return nil
}

// api is one BAL's HTTP API served over mutual TLS on loopback, with a client holding the
// BAL's certificate whose every exchange is checked against the OpenAPI document.
type api struct {
	addr   string
	url    string
	client *http.Client
	// anon has no client certificate.
	anon  *http.Client
	hooks *hooks
	h     *httpapi.Handler
	bal   *bal.Client
	// certFile, keyFile, caFile and serverName let curl reach it.
	certFile, keyFile, caFile, serverName, hostport string
}

type apiOptions struct {
	maxBody      int64
	noWebhooks   bool
	receiptsOnly bool
}

func startAPI(t *testing.T, info *sandbox.Info, addr string, ao *apiOptions) *api {
	t.Helper()
	if ao == nil {
		ao = &apiOptions{}
	}
	o, err := bal.OptionsFromSandbox(info.Dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	o.MinBackoff, o.MaxBackoff, o.PollInterval = 20*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	hk := &hooks{secret: []byte("endpoint-secret-of-" + addr)}
	recv := httptest.NewServer(hk)
	t.Cleanup(recv.Close)
	wh, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true, MinBackoff: 20 * time.Millisecond,
		Endpoints: []webhook.Endpoint{{BAL: addr, URL: recv.URL + "/hooks", Secret: hk.secret}}})
	if err != nil {
		t.Fatal(err)
	}
	if ao.noWebhooks {
		wh, err = webhook.New(&webhook.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
	}
	trust, err := info.Trust()
	if err != nil {
		t.Fatal(err)
	}
	b := info.BAL(addr)
	h, err := httpapi.New(&httpapi.Options{
		BALs:         map[string]*bal.Client{addr: c},
		Auth:         &httpapi.CertificateAuth{Trust: trust, Accounts: &connector.StaticAccounts{ByDN: map[string]string{b.CertDN: addr}}},
		StateDir:     t.TempDir(),
		Webhooks:     wh,
		MaxBodySize:  ao.maxBody,
		ReceiptsOnly: ao.receiptsOnly,
	})
	if err != nil {
		t.Fatal(err)
	}
	op := info.OperatorOf(addr)
	cert, err := tls.LoadX509KeyPair(op.CertFile, op.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.NewServer(h, &httpapi.ServerOptions{TLS: transport.TLSOptions{Trust: trust, Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.Run(ctx) })
	wg.Go(func() { wh.Run(ctx) })
	t.Cleanup(func() { cancel(); srv.Close(); wg.Wait() })

	ctls, err := info.ClientTLS(b, op.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, l.Addr().String())
	}
	v := apitest.New(t)
	mk := func(cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 2 * time.Minute, Transport: &apitest.Transport{V: v,
			Base: &http.Transport{TLSClientConfig: cfg, DialContext: dial, ForceAttemptHTTP2: true}}}
	}
	anon := ctls.Clone()
	anon.Certificates = nil
	return &api{addr: addr, url: "https://" + op.Hostname, client: mk(ctls), anon: mk(anon), hooks: hk, h: h, bal: c,
		certFile: b.CertFile, keyFile: b.KeyFile, caFile: info.CAFile, serverName: op.Hostname, hostport: l.Addr().String()}
}

// call sends a request and decodes the JSON answer into out (when not nil).
func (a *api) call(t *testing.T, c *http.Client, method, path, ctype string, body []byte, hdr map[string]string, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s → %d: %v: %s", method, path, resp.StatusCode, err, b)
		}
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s %s → %d with Content-Type %q, want a problem document", method, path, resp.StatusCode, ct)
	}
	return resp
}
