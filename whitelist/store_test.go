package whitelist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// listServer serves a signed list over HTTPS with a test-PKI server certificate, with ETag
// validators, and counts the requests.
type listServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	status      int
	requests    int
	conditional int
}

func newListServer(t *testing.T, s *testSigner, body []byte) *listServer {
	t.Helper()
	ls := &listServer{body: body, status: http.StatusOK}
	ls.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		ls.requests++
		if ls.status != http.StatusOK {
			w.WriteHeader(ls.status)
			return
		}
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256(ls.body))
		if r.Header.Get("If-None-Match") != "" {
			ls.conditional++
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("ETag", etag)
		w.Write(ls.body)
	}))
	leaf, err := s.pki.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	ls.Config.ErrorLog = log.New(io.Discard, "", 0)
	ls.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, MinVersion: tls.VersionTLS12}
	ls.StartTLS()
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) set(body []byte, status int) {
	ls.mu.Lock()
	ls.body, ls.status = body, status
	ls.mu.Unlock()
}

func signAt(t *testing.T, s *testSigner, gen time.Time, entries []Entry) []byte {
	t.Helper()
	b, err := Sign(NewList(gen, entries), s.leaf.Key, s.leaf.Chain)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestStore(t *testing.T, s *testSigner, url, cache string, mod func(*StoreOptions)) *Store {
	t.Helper()
	o := &StoreOptions{URL: url, CacheFile: cache, Verify: *s.opts()}
	if mod != nil {
		mod(o)
	}
	st, err := NewStore(o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStoreRefresh(t *testing.T) {
	s := newTestSigner(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	v1 := signAt(t, s, now.Add(-2*time.Hour), testEntries())
	v2 := signAt(t, s, now.Add(-time.Hour), append(testEntries(), Entry{Domain: "new.mssante.fr", OperatorDNs: []string{"CN=x,C=FR"}}))
	old := signAt(t, s, now.Add(-3*time.Hour), []Entry{{Domain: "old.mssante.fr", OperatorDNs: []string{"CN=x,C=FR"}}})
	srv := newListServer(t, s, v1)
	cache := filepath.Join(t.TempDir(), "liste.xml")
	url := srv.URL + "/listeblanchemssante.xml"

	st := newTestStore(t, s, url, cache, nil)
	if err := st.CheckDomain("adsea29.mssante.fr"); !errors.Is(err, ErrNoList) {
		t.Fatalf("before any list: %v", err)
	}
	if err := st.CheckOperator("adsea29.mssante.fr", "CN=x"); !errors.Is(err, ErrNoList) {
		t.Fatalf("before any list: %v", err)
	}
	if err := st.CheckOperatorAny("CN=x"); !errors.Is(err, ErrNoList) {
		t.Fatalf("before any list: %v", err)
	}
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckDomain("adsea29.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(cache); !bytes.Equal(got, v1) {
		t.Fatal("the verified list was not persisted")
	}

	t.Run("304", func(t *testing.T) {
		before := st.State()
		if err := st.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		cond := srv.conditional
		srv.mu.Unlock()
		if cond != 1 || !st.State().Generated.Equal(before.Generated) {
			t.Fatalf("conditional requests %d, state %+v", cond, st.State())
		}
	})
	t.Run("newer list swapped in", func(t *testing.T) {
		srv.set(v2, http.StatusOK)
		if err := st.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.CheckDomain("new.mssante.fr"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rollback refused", func(t *testing.T) {
		srv.set(old, http.StatusOK)
		if err := st.Refresh(ctx); !errors.Is(err, ErrRollback) {
			t.Fatalf("Refresh = %v", err)
		}
		if st.CheckDomain("new.mssante.fr") != nil || st.CheckDomain("old.mssante.fr") == nil {
			t.Fatal("rollback changed the list")
		}
	})
	t.Run("list from the future refused", func(t *testing.T) {
		srv.set(signAt(t, s, now.Add(72*time.Hour), testEntries()), http.StatusOK)
		if err := st.Refresh(ctx); !errors.Is(err, ErrFutureList) {
			t.Fatalf("Refresh = %v", err)
		}
		if st.CheckDomain("new.mssante.fr") != nil {
			t.Fatal("the list held changed")
		}
	})
	t.Run("corrupted download keeps the last good list", func(t *testing.T) {
		srv.set(bytes.Replace(v2, []byte("<Nom>new"), []byte("<Nom>bad"), 1), http.StatusOK)
		if err := st.Refresh(ctx); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Refresh = %v", err)
		}
		if st.CheckDomain("new.mssante.fr") != nil || !errors.Is(st.State().LastError, ErrDigestMismatch) {
			t.Fatalf("state %+v", st.State())
		}
		if got, _ := os.ReadFile(cache); !bytes.Equal(got, v2) {
			t.Fatal("the persisted list changed")
		}
		if tmps, _ := filepath.Glob(cache + ".*.tmp"); len(tmps) != 0 {
			t.Fatalf("temporary files left: %v", tmps)
		}
	})
	t.Run("HTTP error keeps the last good list", func(t *testing.T) {
		srv.set(v2, http.StatusInternalServerError)
		if err := st.Refresh(ctx); err == nil || st.CheckDomain("new.mssante.fr") != nil {
			t.Fatalf("Refresh = %v", err)
		}
	})
	t.Run("server down keeps the last good list", func(t *testing.T) {
		srv.Close()
		if err := st.Refresh(ctx); err == nil || st.CheckDomain("new.mssante.fr") != nil {
			t.Fatalf("Refresh = %v", err)
		}
		state := st.State()
		if state.LastError == nil || state.LastSuccess.After(state.LastAttempt) || state.Entries != 6 {
			t.Fatalf("state %+v", state)
		}
	})
	t.Run("restart loads the persisted list", func(t *testing.T) {
		st2 := newTestStore(t, s, url, cache, nil)
		if err := st2.CheckDomain("new.mssante.fr"); err != nil {
			t.Fatal(err)
		}
		if st2.State().LastError != nil {
			t.Fatal(st2.State().LastError)
		}
	})
	t.Run("corrupted cache is refused at start", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "liste.xml")
		os.WriteFile(bad, bytes.Replace(v2, []byte("<Nom>new"), []byte("<Nom>bad"), 1), 0o644)
		st3 := newTestStore(t, s, url, bad, nil)
		if err := st3.CheckDomain("new.mssante.fr"); !errors.Is(err, ErrNoList) {
			t.Fatalf("CheckDomain = %v", err)
		}
		if !errors.Is(st3.State().LastError, ErrDigestMismatch) {
			t.Fatalf("state %+v", st3.State())
		}
	})
}

func TestStoreMaxAge(t *testing.T) {
	s := newTestSigner(t)
	now := time.Now().UTC()
	srv := newListServer(t, s, signAt(t, s, now.Add(-time.Hour), testEntries()))
	clock := now
	var mu sync.Mutex
	nowf := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	for _, refuse := range []bool{false, true} {
		st := newTestStore(t, s, srv.URL, "", func(o *StoreOptions) {
			o.Now, o.MaxAge, o.RefuseTooOld = nowf, 24*time.Hour, refuse
		})
		if err := st.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		clock = now.Add(48 * time.Hour)
		mu.Unlock()
		if !st.State().TooOld {
			t.Fatal("no alarm past the maximum age")
		}
		err := st.CheckDomain("adsea29.mssante.fr")
		if refuse && !errors.Is(err, ErrListTooOld) || !refuse && err != nil {
			t.Fatalf("RefuseTooOld=%v: CheckDomain = %v", refuse, err)
		}
		mu.Lock()
		clock = now
		mu.Unlock()
	}
}

func TestStoreSourceTrust(t *testing.T) {
	s := newTestSigner(t)
	body := signTestList(t, s)
	// A server whose certificate is not from the trusted roots is refused by the default client.
	foreign := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	foreign.Config.ErrorLog = log.New(io.Discard, "", 0)
	foreign.StartTLS()
	defer foreign.Close()
	st := newTestStore(t, s, foreign.URL, "", nil)
	var ce *tls.CertificateVerificationError
	if err := st.Refresh(context.Background()); !errors.As(err, &ce) {
		t.Fatalf("Refresh from an untrusted server = %v", err)
	}
	if st.List() != nil {
		t.Fatal("list taken from an untrusted server")
	}
	for _, u := range []string{"http://example.org/l.xml", "ftp://x/y", "https://"} {
		if _, err := NewStore(&StoreOptions{URL: u, Verify: *s.opts()}); err == nil {
			t.Errorf("NewStore(%q) accepted", u)
		}
	}
	if _, err := NewStore(&StoreOptions{}); err == nil {
		t.Error("NewStore without roots nor client accepted")
	}
}

func TestStoreRun(t *testing.T) {
	s := newTestSigner(t)
	now := time.Now().UTC().Truncate(time.Second)
	srv := newListServer(t, s, signAt(t, s, now.Add(-2*time.Hour), testEntries()))
	st := newTestStore(t, s, srv.URL, "", func(o *StoreOptions) { o.Interval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	waitFor(t, func() bool { return st.List() != nil })
	srv.set(signAt(t, s, now.Add(-time.Hour), []Entry{{Domain: "later.mssante.fr", OperatorDNs: []string{"CN=x,C=FR"}}}), http.StatusOK)
	st.RefreshSoon()
	waitFor(t, func() bool { return st.CheckDomain("later.mssante.fr") == nil })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStoreRestartConditional(t *testing.T) {
	s := newTestSigner(t)
	srv := newListServer(t, s, signAt(t, s, time.Now().UTC().Add(-time.Hour).Truncate(time.Second), testEntries()))
	cache := filepath.Join(t.TempDir(), "liste.xml")
	if err := newTestStore(t, s, srv.URL, cache, nil).Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := newTestStore(t, s, srv.URL, cache, nil) // a restart
	if err := st.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.requests != 2 || srv.conditional != 1 || st.CheckDomain("adsea29.mssante.fr") != nil {
		t.Fatalf("requests %d, conditional %d", srv.requests, srv.conditional)
	}
}
