package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// TestAPIAcrossNodesAndBearer: the API of node a sends, for its BAL applicative (client
// certificate) and for a PER BAL (Pro Santé Connect bearer token), to a BAL of node b through
// the relay, and the status reads delivered; a token of someone who holds no BAL is refused.
func TestAPIAcrossNodesAndBearer(t *testing.T) {
	op := testpsc.New(t)
	ca := filepath.Join(t.TempDir(), "psc-ca.pem")
	os.WriteFile(ca, op.PKI.RootPEM(), 0o600)
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	a.extra = fmt.Sprintf("[psc]\nissuer = %q\nclient_ids = [%q]\nca_file = %q\n[api]\nenabled = true\n", op.Issuer, testpsc.ClientID, ca)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	base := serveAPI(t, ctx, &wg, a)
	na, _ := s.start(t, ctx, a, nil)
	s.start(t, ctx, b, nil)
	per := "dr.martin@" + a.domain
	if err := na.Store.AddBAL(ctx, &mailbox.BAL{Address: per, Type: mailbox.PER, Owner: "810000000001"}); err != nil {
		t.Fatal(err)
	}
	// Dr Martin is also a member of one ORG BAL, not of the other: the token opens the first.
	org, other := "secretariat@"+a.domain, "urgences@"+a.domain
	for _, o := range []string{org, other} {
		if err := na.Store.AddBAL(ctx, &mailbox.BAL{Address: o, Type: mailbox.ORG}); err != nil {
			t.Fatal(err)
		}
	}
	if err := na.Store.(interface {
		AddMember(ctx context.Context, bal, nationalID string) error
	}).AddMember(ctx, org, "810000000001"); err != nil {
		t.Fatal(err)
	}
	client := func(withCert bool) *http.Client {
		c := s.clientTLS(a, nil)
		if withCert {
			c = s.clientTLS(a, a.app)
		}
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: c}}
	}
	call := func(c *http.Client, method, path, token string, body []byte, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if body != nil {
			req.Header.Set("Content-Type", "message/rfc822")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	raw := func(from, id string) []byte {
		return []byte("From: <" + from + ">\r\nTo: <dpi@" + b.domain + ">\r\nSubject: essai\r\nMessage-ID: <" + id + "@" + a.domain +
			">\r\nX-MSS-NIL: TEST0001\r\n\r\nbody\r\n")
	}
	for i, tc := range []struct {
		name, from, token string
		cert              bool
	}{
		{"certificate", a.appBAL(), "", true},
		{"bearer token", per, op.Token(t, "810000000001"), false},
		{"bearer token, ORG BAL of a member", org, op.Token(t, "810000000001"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent httpapi.SendResponse
			if st := call(client(tc.cert), "POST", "/bals/"+tc.from+"/messages", tc.token, raw(tc.from, fmt.Sprint("id-", i)), &sent); st != http.StatusAccepted {
				t.Fatalf("send: %d %+v", st, sent)
			}
			waitUntil(t, "delivered on node b", func() bool {
				var st httpapi.StatusResponse
				call(client(tc.cert), "GET", "/bals/"+tc.from+"/messages/"+sent.MessageID, tc.token, nil, &st)
				return len(st.Recipients) == 1 && st.Recipients[0].Status == "delivered"
			})
		})
	}
	t.Run("token of someone without a BAL", func(t *testing.T) {
		var p httpapi.Problem
		if st := call(client(false), "POST", "/bals/"+per+"/messages", op.Token(t, "899999999999"), raw(per, "id-x"), &p); st != http.StatusUnauthorized {
			t.Fatalf("%d %+v", st, p)
		}
	})
	t.Run("token for another BAL", func(t *testing.T) {
		for _, bal := range []string{a.appBAL(), other} {
			var p httpapi.Problem
			if st := call(client(false), "POST", "/bals/"+bal+"/messages", op.Token(t, "810000000001"), raw(bal, "id-y"), &p); st != http.StatusForbidden {
				t.Fatalf("send from %s: %d %+v", bal, st, p)
			}
			if st := call(client(false), "GET", "/bals/"+bal+"/received", op.Token(t, "810000000001"), nil, &p); st != http.StatusForbidden {
				t.Fatalf("list %s: %d %+v", bal, st, p)
			}
		}
	})
}

// serveAPI makes o's node serve its HTTP API on a loopback listener once started, until ctx
// ends (wg waits for it, and a Serve error fails t), and returns the API's base URL.
func serveAPI(t *testing.T, ctx context.Context, wg *sync.WaitGroup, o *operator) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.setup = func(n *node.Node, cfg *node.Config) {
		api, err := httpapi.NewNodeAPI(n, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := api.Serve(ctx, l, time.Second); err != nil {
				t.Error(err)
			}
		})
	}
	return "https://" + l.Addr().String() + "/v1"
}
