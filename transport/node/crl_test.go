package node_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
)

// submitErr tries a submission AUTH EXTERNAL with o's APP certificate and returns the error.
func (s *space) submitErr(o *operator) error {
	c, err := smtp.DialStartTLS(o.addr("submission"), s.clientTLS(o, o.app))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Auth(sasl.NewExternalClient(""))
}

// TestNodeFetchesCRLAndRevokesOnReload: a node without CRL files fetches the CA's CRL at start,
// refuses a BAL certificate revoked since after a reload (SIGHUP), and starts again from its
// cached CRL while the CRL server is down.
func TestNodeFetchesCRLAndRevokesOnReload(t *testing.T) {
	s := newSpace(t, "crl.test")
	o := s.ops[0]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		der, err := s.pki.CRL()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(der)
	}))
	defer srv.Close()
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.lns["metrics"] = ml
	cfg := s.config(t, o)
	cfg.TLS.CRLFiles = nil
	cfg.TLS.CRLURLs = []string{srv.URL + "/ACI-EL-ORG.crl"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := node.New(ctx, cfg, &node.Options{Listeners: o.lns})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	<-n.Listening()
	if err := s.submitErr(o); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := s.pki.Revoke(o.app.Cert); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := s.submitErr(o); err == nil {
		t.Fatal("revoked BAL certificate accepted after the reload")
	}
	_, exp := get(t, "http://"+ml.Addr().String()+"/metrics")
	ca := transport.SubjectDN(s.pki.Intermediate)
	for _, want := range []string{`mssante_crl_next_update_timestamp_seconds{ca="` + ca + `"}`,
		`mssante_crl_last_fetch_timestamp_seconds{url="` + srv.URL + `/ACI-EL-ORG.crl"}`,
		`mssante_ca_certificate_expiry_seconds{ca="` + ca + `"}`, `mssante_certificate_expiry_seconds{name="server"}`} {
		if !strings.Contains(exp, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(cfg.CRLCacheDir(), "*.crl")); len(files) != 1 {
		t.Fatalf("CRL cache: %q", files)
	}
	srv.Close()
	n2, err := node.New(context.Background(), cfg, &node.Options{Listeners: o.lns})
	if err != nil {
		t.Fatalf("restart with the CRL server down: %v", err)
	}
	n2.Close()
	os.RemoveAll(cfg.CRLCacheDir())
	if _, err := node.New(context.Background(), cfg, &node.Options{Listeners: o.lns}); err == nil {
		t.Fatal("started without any CRL although revocation is required")
	}
}
