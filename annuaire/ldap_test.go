package annuaire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func (s *testSlapd) tlsConfig(withClient bool) *tls.Config {
	c := &tls.Config{RootCAs: s.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if withClient {
		c.Certificates = []tls.Certificate{s.client}
	}
	return c
}

func newTestLDAP(t *testing.T, o LDAPOptions) *LDAP {
	t.Helper()
	l, err := NewLDAP(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLDAPConnections(t *testing.T) {
	s := startSlapd(t)
	x := loadText(t, s.extraction)
	first := x.names[0]
	addr := x.entry(first.line).Address
	want := x.Lookup(nil, addr)
	ctx := context.Background()
	tests := []struct {
		name string
		opts LDAPOptions
		err  string // "" = finds the entry
	}{
		{name: "plain, simple bind", opts: LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW}},
		{name: "ldaps, simple bind", opts: LDAPOptions{URL: s.tls, TLSConfig: s.tlsConfig(false), BindDN: readerDN, Password: readerPW}},
		{name: "StartTLS, simple bind", opts: LDAPOptions{URL: s.plain, StartTLS: true, TLSConfig: s.tlsConfig(false), BindDN: readerDN, Password: readerPW}},
		{name: "ldaps, SASL EXTERNAL", opts: LDAPOptions{URL: s.tls, TLSConfig: s.tlsConfig(true), ExternalBind: true}},
		{name: "StartTLS, SASL EXTERNAL", opts: LDAPOptions{URL: s.plain, StartTLS: true, TLSConfig: s.tlsConfig(true), ExternalBind: true}},
		{name: "anonymous is refused by the ACL", opts: LDAPOptions{URL: s.plain}, err: "Insufficient Access"},
		{name: "wrong password", opts: LDAPOptions{URL: s.plain, BindDN: readerDN, Password: "nope"}, err: "Invalid Credentials"},
		{name: "EXTERNAL without a client certificate", opts: LDAPOptions{URL: s.tls, TLSConfig: s.tlsConfig(false), ExternalBind: true}, err: "SASL EXTERNAL"},
		{name: "ldaps, untrusted server", opts: LDAPOptions{URL: s.tls, BindDN: readerDN, Password: readerPW}, err: "certificate"},
		{name: "StartTLS, untrusted server", opts: LDAPOptions{URL: s.plain, StartTLS: true, BindDN: readerDN, Password: readerPW}, err: "certificate"},
		{name: "ldaps, wrong name", opts: LDAPOptions{URL: s.tls, TLSConfig: &tls.Config{RootCAs: s.roots, ServerName: "other.test"}}, err: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLDAP(t, tt.opts)
			r, err := l.Search(ctx, Query{Address: addr})
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if len(r.Entries) != len(want) || r.Entries[0] != want[0] {
					t.Fatalf("got %+v\nwant %+v", r.Entries, want)
				}
				// The connection is reused.
				c := l.conn
				if _, err := l.Search(ctx, Query{Address: addr}); err != nil || l.conn != c {
					t.Fatalf("second search: %v, same connection %v", err, l.conn == c)
				}
			}
		})
	}
}

func TestLDAPApplicative(t *testing.T) {
	s := startSlapd(t)
	l := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW})
	r, err := l.Search(context.Background(), Query{Type: APP, StructureID: "400780284"})
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Address: "dpi@ch-test.mssante.fr", Type: APP, Description: "Intégration au DPI",
		Structure: Structure{IDType: "FINESS", ID: "1400780284", Name: "CH TEST"}}
	if len(r.Entries) != 1 || r.Entries[0] != want {
		t.Fatalf("got %+v", r.Entries)
	}
}

func TestLDAPOptionsRefused(t *testing.T) {
	for _, o := range []LDAPOptions{
		{URL: "http://x"},
		{URL: "ldaps://x", StartTLS: true},
		{URL: "ldap://x", ExternalBind: true},
		{URL: "ldap://ldap.example.org", BindDN: "cn=a", Password: "secret"},
	} {
		if _, err := NewLDAP(&o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestLDAPPaging(t *testing.T) {
	s := startSlapd(t)
	x := loadText(t, s.extraction)
	ctx := context.Background()
	// Without paging the server stops at its size limit (500): the limit is real.
	c, err := ldap.DialURL(s.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(readerDN, readerPW); err != nil {
		t.Fatal(err)
	}
	_, err = c.Search(ldap.NewSearchRequest("dc=mssante,dc=fr", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(TypeBAL=PER)", []string{"mail"}, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Fatalf("unpaged search: %v, want size limit exceeded", err)
	}
	l := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW, PageSize: 200})
	got, err := l.Search(ctx, Query{Type: PER, Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := x.Search(ctx, Query{Type: PER, Limit: 5000})
	if len(got.Entries) <= 1000 || len(got.Entries) != len(want.Entries) {
		t.Fatalf("paged search: %d entries, extraction %d", len(got.Entries), len(want.Entries))
	}
	for i := range got.Entries {
		if got.Entries[i] != want.Entries[i] {
			t.Fatalf("entry %d differs:\n%+v\n%+v", i, got.Entries[i], want.Entries[i])
		}
	}
	// A bound on what one search may fetch.
	small := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW, PageSize: 200, MaxResults: 300})
	if _, err := small.Search(ctx, Query{Type: PER}); !errors.Is(err, ErrTooManyResults) {
		t.Fatalf("MaxResults: %v", err)
	}
	if r, err := small.Search(ctx, Query{Type: ORG}); err != nil || len(r.Entries) == 0 {
		t.Fatalf("after ErrTooManyResults: %v", err)
	}
	// Our own pages over the paged search.
	var all []Entry
	q := Query{Type: PER, Limit: 700}
	for {
		r, err := l.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r.Entries...)
		if r.Next == "" {
			break
		}
		q.Cursor = r.Next
	}
	if len(all) != len(want.Entries) {
		t.Fatalf("%d entries in pages of 700, want %d", len(all), len(want.Entries))
	}
}

// stallProxy forwards a TCP connection to target and, once stalled, stops forwarding the
// server's answers: a search through it blocks until its context ends.
type stallProxy struct {
	ln      net.Listener
	stalled atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
}

// drop closes every connection made so far, as a server does with idle clients.
func (p *stallProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := s.Read(buf)
					for p.stalled.Load() {
						time.Sleep(5 * time.Millisecond)
						if _, err := c.Write(nil); err != nil {
							return
						}
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							s.Close()
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func TestLDAPCancel(t *testing.T) {
	s := startSlapd(t)
	p := newStallProxy(t, strings.TrimPrefix(s.plain, "ldap://"))
	l := newTestLDAP(t, LDAPOptions{URL: "ldap://" + p.ln.Addr().String(), BindDN: readerDN, Password: readerPW})
	ctx := context.Background()
	if _, err := l.Search(ctx, Query{Type: ORG}); err != nil {
		t.Fatal(err)
	}
	p.stalled.Store(true)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := l.Search(cctx, Query{Type: PER, Limit: 5000})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the search start (the test holds either way)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled search: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the search did not stop when its context was cancelled")
	}
	p.stalled.Store(false)
	if r, err := l.Search(ctx, Query{Type: ORG, Limit: 3}); err != nil || len(r.Entries) != 3 {
		t.Fatalf("search after a cancel: %v", err)
	}
	// A server that stops answering: the request times out.
	lt := newTestLDAP(t, LDAPOptions{URL: "ldap://" + p.ln.Addr().String(), BindDN: readerDN, Password: readerPW, Timeout: 300 * time.Millisecond})
	if _, err := lt.Search(ctx, Query{Type: ORG, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	p.stalled.Store(true)
	start := time.Now()
	if _, err := lt.Search(ctx, Query{Type: ORG, Limit: 2}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("stalled server: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the timeout took %v", d)
	}
	p.stalled.Store(false)
	// A connection the server closed while idle: replaced without the caller noticing.
	if _, err := l.Search(ctx, Query{Type: ORG, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	// Whether the client noticed the close (a new connection) or finds out by its request
	// (the search is made again on a new one), the caller gets its answer.
	for _, wait := range []time.Duration{50 * time.Millisecond, 0} {
		p.drop()
		time.Sleep(wait)
		if r, err := l.Search(ctx, Query{Type: ORG, Limit: 2}); err != nil || len(r.Entries) != 2 {
			t.Fatalf("search after the server closed the connection (wait %v): %v", wait, err)
		}
	}
	// An expired context never reaches the server.
	dctx, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := l.Search(dctx, Query{Type: ORG}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired context: %v", err)
	}
}

// diffQueries returns queries built from the data: every criterion, single and combined.
func diffQueries(x *Extraction) []Query {
	var qs []Query
	for i := int32(0); i < int32(x.Len()); i += 97 {
		e := x.entry(i)
		qs = append(qs, Query{Address: e.Address}, Query{Address: strings.ToUpper(e.Address)})
		if e.Person.RPPS() != "" {
			qs = append(qs, Query{RPPS: e.Person.RPPS()}, Query{NationalID: e.Person.NationalID, Type: PER})
		}
		if e.Structure.ID != "" {
			qs = append(qs, Query{StructureID: e.Structure.ID}, Query{StructureID: e.Structure.ID[1:], StructureIDType: e.Structure.IDType})
		}
		if k := NameKey(&e); len(k) > 3 {
			qs = append(qs, Query{Name: strings.ToLower(k[:3])}, Query{Name: e.Person.LastName, Departement: e.Postal.Departement})
		}
		if e.Postal.PostalCode != "" {
			qs = append(qs, Query{PostalCode: e.Postal.PostalCode, Type: e.Type})
		}
		if e.Person.ProfessionCode != "" {
			qs = append(qs, Query{Profession: e.Person.ProfessionCode, Departement: e.Postal.Departement, Limit: 20})
		}
	}
	return append(qs, Query{Type: ORG, Limit: 50, Cursor: "20"}, Query{Departement: "2A"}, Query{Name: "Lefèvre"}, Query{Name: "ŒUV"})
}

// TestLDAPDifferential runs the same queries on the same data through the extraction index
// and through slapd loaded with export-ldif's output: the answers must be equal.
func TestLDAPDifferential(t *testing.T) {
	s := startSlapd(t)
	x := loadText(t, s.extraction)
	l := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW})
	ctx := context.Background()
	qs := diffQueries(x)
	if n := len(x.Lookup(nil, s.dupAddress)); n < 2 {
		t.Fatalf("the duplicated address has %d lines", n)
	}
	qs = append(qs, Query{Address: s.dupAddress}, Query{Address: s.dupAddress, Limit: 1}, Query{Address: s.dupAddress, Limit: 1, Cursor: "1"})
	nonEmpty := 0
	for _, q := range qs {
		want, err1 := x.Search(ctx, q)
		got, err2 := l.Search(ctx, q)
		if err1 != nil || err2 != nil {
			t.Fatalf("%+v: extraction %v, LDAP %v", q, err1, err2)
		}
		if len(want.Entries) > 0 {
			nonEmpty++
		}
		if fmt.Sprint(got.Entries) != fmt.Sprint(want.Entries) || got.Next != want.Next {
			t.Fatalf("%+v:\nLDAP       %d entries, next %q\nextraction %d entries, next %q", q, len(got.Entries), got.Next, len(want.Entries), want.Next)
		}
	}
	// A profile without the name-key attribute searches sn and o with the directory's own
	// rules: the same answers for names given as written.
	p := DefaultProfile()
	p.NameKey = ""
	plain := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW, Profile: p})
	named := 0
	for i := int32(0); i < int32(x.Len()); i += 131 {
		e := x.entry(i)
		q := Query{Name: e.Person.LastName}
		if q.Name == "" {
			q.Name = e.Structure.Name
		}
		want, err1 := x.Search(ctx, q)
		got, err2 := plain.Search(ctx, q)
		if err1 != nil || err2 != nil || fmt.Sprint(got.Entries) != fmt.Sprint(want.Entries) {
			t.Fatalf("%+v without name key: LDAP %d entries (%v), extraction %d (%v)", q, len(got.Entries), err2, len(want.Entries), err1)
		}
		named++
	}
	if nonEmpty < len(qs)*3/4 || named < 10 {
		t.Fatalf("only %d of %d queries found something: the comparison proves little", nonEmpty, len(qs))
	}
	t.Logf("%d queries, %d with answers, equal on both backends", len(qs), nonEmpty)
}

// TestLDAPInjection puts LDAP filter syntax in every query field: the directory must
// answer exactly as the literal-matching extraction index does (nothing, here).
func TestLDAPInjection(t *testing.T) {
	s := startSlapd(t)
	x := loadText(t, s.extraction)
	l := newTestLDAP(t, LDAPOptions{URL: s.plain, BindDN: readerDN, Password: readerPW})
	ctx := context.Background()
	attacks := []string{"*", "*)(objectClass=*", "x)(|(mail=*", `\2a`, "*)(TypeBAL=*))(|(a=", "\x00", "a*b", ")("}
	set := []func(*Query, string){
		func(q *Query, v string) { q.Address = v },
		func(q *Query, v string) { q.Name = "A" + v },
		func(q *Query, v string) { q.NationalID = v },
		func(q *Query, v string) { q.StructureID = v },
		func(q *Query, v string) { q.StructureIDType = v },
		func(q *Query, v string) { q.PostalCode = v },
		func(q *Query, v string) { q.Departement = v },
		func(q *Query, v string) { q.Profession = v },
	}
	for i, f := range set {
		for _, a := range attacks {
			var q Query
			f(&q, a)
			want, err := x.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.Search(ctx, q)
			if err != nil {
				t.Fatalf("field %d, %q: %v", i, a, err)
			}
			if len(got.Entries) != len(want.Entries) {
				t.Errorf("field %d, %q: LDAP %d entries, extraction %d", i, a, len(got.Entries), len(want.Entries))
			}
		}
	}
	// An injected BAL type and RPPS are refused before any request.
	if _, err := l.Search(ctx, Query{Type: "*"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("type: %v", err)
	}
	if _, err := l.Search(ctx, Query{RPPS: "*)(mail=*"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("RPPS: %v", err)
	}
}
