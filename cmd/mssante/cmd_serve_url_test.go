package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// listServer serves a signed liste blanche over HTTPS (certificate of the test PKI) and
// counts the downloads; a conditional GET for the list it already gave gets 304.
type listServer struct {
	mu      sync.Mutex
	body    []byte
	version int
	fetches int // 200 answers
}

func (s *listServer) set(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = b
	s.version++
}

func (s *listServer) downloads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func (s *listServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path != "/liste-blanche.xml" {
		http.NotFound(w, r)
		return
	}
	etag := fmt.Sprintf(`"v%d"`, s.version)
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.fetches++
	w.Header().Set("Content-Type", "application/xml")
	w.Write(s.body)
}

// mssante serve with whitelist.url: the list is fetched over HTTPS at start and enforced on
// the relay (the peer operator, not listed, gets 550 5.7.1, not the 451 4.7.1 of "no list
// yet"); after SIGHUP the store downloads the new list, which lists the peer, and its mail is
// accepted and delivered. The refresh interval is an hour, so only the SIGHUP can explain it.
func TestServeWhitelistURL(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	sign := func(gen time.Time, entries []whitelist.Entry) []byte {
		t.Helper()
		b, err := whitelist.Sign(whitelist.NewList(gen, entries), f.signer.Key, f.signer.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	us := whitelist.Entry{Domain: ourDomain, OperatorDNs: []string{transport.SubjectDN(f.server.Cert)}}
	peer := whitelist.Entry{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(f.peer.Cert)}}
	ls := &listServer{}
	ls.set(sign(time.Now().Add(-time.Hour), []whitelist.Entry{us}))
	hs := httptest.NewUnstartedServer(ls)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{f.server.TLSCertificate()}} // names localhost, test PKI
	hs.StartTLS()
	defer hs.Close()
	port := hs.Listener.Addr().(*net.TCPAddr).Port

	// The fixture's configuration, with the whitelist fetched by URL instead of read from a file.
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	fileLine := fmt.Sprintf("file = %q\n", filepath.Join(f.dir, "whitelist.xml"))
	if !strings.Contains(string(cfg), fileLine) {
		t.Fatalf("fixture configuration changed: no %q", fileLine)
	}
	os.Remove(filepath.Join(f.dir, "whitelist.xml")) // nothing to fall back on
	cfg = []byte(strings.Replace(string(cfg), fileLine, fmt.Sprintf("url = \"https://localhost:%d/liste-blanche.xml\"\ncache_file = %q\nrefresh_interval = \"1h\"\n",
		port, filepath.Join(f.dir, "whitelist-cache.xml")), 1))
	if err := os.WriteFile(f.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	// send returns the reply to the peer's message: "ok", or the SMTP error code.
	send := func(seq int) string {
		c, err := f.relayClient()
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		var se *smtp.SMTPError
		switch err := sendOne(c, seq); {
		case err == nil:
			return "ok"
		case errors.As(err, &se):
			return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		default:
			return err.Error()
		}
	}
	var got string
	waitUntil(t, "the list fetched at start enforced", 20*time.Second, func() bool {
		got = send(1)
		return got == "550 5.7.1" // before the first download: 451 4.7.1 (no list)
	})
	if n := ls.downloads(); n != 1 {
		t.Fatalf("%d downloads at start, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "whitelist-cache.xml")); err != nil {
		t.Errorf("list not persisted: %v", err)
	}

	// The new list adds the peer; the interval (1h) is not over: nothing changes without SIGHUP.
	ls.set(sign(time.Now(), []whitelist.Entry{us, peer}))
	if got := send(2); got != "550 5.7.1" {
		t.Fatalf("before SIGHUP: %s, want 550 5.7.1", got)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "the refreshed list enforced after SIGHUP", 20*time.Second, func() bool {
		got = send(3)
		return got == "ok"
	})
	if n := ls.downloads(); n != 2 {
		t.Errorf("%d downloads after SIGHUP, want 2", n)
	}
	waitUntil(t, "delivery", 20*time.Second, func() bool { return f.delivered(t)[3] == 1 })
	if d := f.delivered(t); d[1]+d[2] != 0 {
		t.Fatalf("refused messages delivered: %v", d)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errb.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
}
