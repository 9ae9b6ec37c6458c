package annuaire

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// publisher serves an extraction the way the ANS service does: a ZIP, named with its
// generation time in Content-Disposition, on GET and HEAD.
type publisher struct {
	*httptest.Server
	mu   sync.Mutex
	name string
	body []byte
	gets int
	// truncate, when set, announces more bytes than it sends.
	truncate bool
}

func zipOf(t *testing.T, name, text string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(strings.TrimSuffix(name, ".zip") + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(text))
	zw.Close()
	return b.Bytes()
}

func newPublisher(t *testing.T) *publisher {
	p := &publisher{}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Disposition", `attachment; filename="`+p.name+`"`)
		w.Header().Set("Content-Type", "application/zip")
		if r.Method == http.MethodHead {
			return
		}
		p.gets++
		if p.truncate {
			w.Header().Set("Content-Length", "999999")
			w.Write(p.body[:10])
			return
		}
		w.Write(p.body)
	}))
	p.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

func (p *publisher) publish(t *testing.T, name, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.body = name, zipOf(t, name, text)
}

func TestRefresher(t *testing.T) {
	p := newPublisher(t)
	dir := t.TempDir()
	ctx := context.Background()
	var progress []int64
	opts := &FetchOptions{URL: p.URL + "/extraction", HTTPClient: p.Client(), Progress: func(done, total int64) {
		progress = append(progress, done)
		if total != -1 && done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	}}
	r, err := NewRefresher(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Search(ctx, Query{}); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("before any load: %v", err)
	}
	day1 := "Extraction_Correspondance_MSSante_202611270130.zip"
	p.publish(t, day1, sample)
	if changed, err := r.Refresh(ctx); err != nil || !changed {
		t.Fatalf("first refresh: %v %v", changed, err)
	}
	x, at := r.Current()
	if x.Len() != 4 || at.Format("2006-01-02 15:04") != "2026-11-27 01:30" || len(progress) == 0 {
		t.Fatalf("loaded %d lines at %v, progress %v", x.Len(), at, progress)
	}
	// The same name: a HEAD is enough, nothing downloaded.
	if changed, err := r.Refresh(ctx); err != nil || changed || p.gets != 1 {
		t.Fatalf("same file: changed %v, %v, %d GETs", changed, err, p.gets)
	}
	// A newer file whose format changed: refused, kept aside, the last good one stays.
	day2 := "Extraction_Correspondance_MSSante_202611280130.zip"
	p.publish(t, day2, strings.Replace(sample, "Code postal", "Code INSEE", 1))
	if _, err := r.Refresh(ctx); !errors.Is(err, ErrFormat) {
		t.Fatalf("bad file: %v", err)
	}
	if x2, _ := r.Current(); x2 != x {
		t.Fatal("a bad file replaced the good one")
	}
	if _, err := os.Stat(filepath.Join(dir, day2+".bad")); err != nil {
		t.Fatalf("bad file not kept aside: %v", err)
	}
	if _, err := r.Refresh(ctx); err != nil || p.gets != 2 {
		t.Fatalf("bad file fetched again: %v, %d GETs", err, p.gets)
	}
	// A good newer file: swapped in, the previous file removed.
	day3 := "Extraction_Correspondance_MSSante_202611290130.zip"
	_, body, _ := strings.Cut(sample, "\n")
	p.publish(t, day3, sample+strings.Replace(body, "cardio@", "urgences@", -1))
	if changed, err := r.Refresh(ctx); err != nil || !changed {
		t.Fatalf("new file: %v %v", changed, err)
	}
	if x3, _ := r.Current(); x3.Len() != 8 || len(x3.Lookup(nil, "urgences@ch-dax.mssante.fr")) != 2 {
		t.Fatal("new file not in use")
	}
	if _, err := os.Stat(filepath.Join(dir, day1)); !os.IsNotExist(err) {
		t.Errorf("old file still there: %v", err)
	}
	// An older file is never swapped in (rollback).
	p.publish(t, "Extraction_Correspondance_MSSante_202601010130.zip", sample)
	if changed, err := r.Refresh(ctx); err == nil || changed {
		t.Fatalf("older file: %v %v", changed, err)
	}
	// A restart loads the last good file.
	r2, err := NewRefresher(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if x4, at := r2.Current(); x4 == nil || x4.Len() != 8 || at.Day() != 29 {
		t.Fatalf("restart: %v", at)
	}
	if res, err := r2.Search(ctx, Query{Address: "urgences@ch-dax.mssante.fr"}); err != nil || len(res.Entries) != 2 {
		t.Fatalf("search after restart: %v", err)
	}
}

func TestFetchRefusals(t *testing.T) {
	ctx := context.Background()
	p := newPublisher(t)
	for _, name := range []string{"../../etc/passwd", "other.zip", "Extraction_Correspondance_MSSante_2026.zip"} {
		p.publish(t, name, sample)
		if _, _, err := Fetch(ctx, t.TempDir(), &FetchOptions{URL: p.URL, HTTPClient: p.Client()}); !errors.Is(err, ErrNoFileName) {
			t.Errorf("%q: %v", name, err)
		}
	}
	p.publish(t, "Extraction_Correspondance_MSSante_202611280130.zip", sample)
	p.mu.Lock()
	p.truncate = true
	p.mu.Unlock()
	dir := t.TempDir()
	if _, _, err := Fetch(ctx, dir, &FetchOptions{URL: p.URL, HTTPClient: p.Client()}); err == nil {
		t.Fatal("truncated download accepted")
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("a partial file was left: %v", files)
	}
	p.mu.Lock()
	p.truncate = false
	p.mu.Unlock()
	if _, _, err := Fetch(ctx, dir, &FetchOptions{URL: p.URL, HTTPClient: p.Client(), MaxSize: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxSize: %v", err)
	}
	if _, _, err := Fetch(ctx, dir, &FetchOptions{URL: p.URL}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
	if _, _, err := Fetch(ctx, dir, &FetchOptions{URL: "http://example.org/x"}); err == nil {
		t.Error("plain http accepted")
	}
}
