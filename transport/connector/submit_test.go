package connector

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testpki"
)

// callerTLS runs a real TLS handshake over loopback, as the HTTP API's listener does, with the
// client presenting l, and returns the server side's state.
func callerTLS(t *testing.T, n *node, l *testpki.Leaf) *tls.ConnectionState {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *tls.ConnectionState, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{n.server.TLSCertificate()}, ClientAuth: tls.RequestClientCert,
			MinVersion: tls.VersionTLS12})
		if tc.Handshake() != nil {
			got <- nil
			return
		}
		st := tc.ConnectionState()
		got <- &st
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), clientTLS(l, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := <-got
	if st == nil {
		t.Fatal("handshake failed")
	}
	return st
}

func TestSubmit(t *testing.T) {
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", nil)
	b := newNode(t, "b.mssante.test", nil)
	trust(a, b)
	route(a, b)
	stranger := must(t)(p.Org("stranger@a.mssante.test", nil))
	st := callerTLS(t, a, a.balCert)
	ctx := context.Background()
	sub := func(from string, to []string, body string) *Submission {
		return &Submission{TLS: st, PeerAddr: "127.0.0.1:4242", From: from, To: to, Message: strings.NewReader(body)}
	}

	t.Run("queued and delivered", func(t *testing.T) {
		res, err := a.sub.Submit(ctx, sub(a.bal, []string{"dr@b.mssante.test", "dr@a.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "api1")))
		if err != nil {
			t.Fatal(err)
		}
		if res.QueueID == "" || len(res.Recipients) != 2 || !res.Recipients[0].Accepted || !res.Recipients[1].Accepted {
			t.Fatalf("%+v", res)
		}
		waitFor(t, "remote delivery", func() bool { return b.count("dr@b.mssante.test") == 1 })
		waitFor(t, "local delivery", func() bool { return a.count("dr@a.mssante.test") == 1 })
	})
	t.Run("recipient off the whitelist", func(t *testing.T) {
		res, err := a.sub.Submit(ctx, sub(a.bal, []string{"dr@gmail.com"}, msg(a.bal, "dr@gmail.com", "api2")))
		if err != nil {
			t.Fatal(err)
		}
		r := res.Recipients[0]
		if r.Accepted || r.Code != 550 || r.Enhanced != [3]int{5, 7, 1} || res.QueueID != "" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("sender not the caller's BAL", func(t *testing.T) {
		_, err := a.sub.Submit(ctx, sub("dr@a.mssante.test", []string{"dr@b.mssante.test"}, msg("dr@a.mssante.test", "dr@b.mssante.test", "api3")))
		var se *SubmitError
		if !errors.As(err, &se) || se.Stage != "mail" || se.Code != 553 || !errors.Is(err, ErrSubmitRefused) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("From header not the caller's BAL", func(t *testing.T) {
		_, err := a.sub.Submit(ctx, sub(a.bal, []string{"dr@b.mssante.test"}, msg("dr@a.mssante.test", "dr@b.mssante.test", "api4")))
		var se *SubmitError
		if !errors.As(err, &se) || se.Stage != "data" || se.Code != 554 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("certificate bound to no BAL", func(t *testing.T) {
		s := sub(a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "api5"))
		s.TLS = callerTLS(t, a, stranger)
		_, err := a.sub.Submit(ctx, s)
		var se *SubmitError
		if !errors.As(err, &se) || se.Stage != "auth" || se.Code != 535 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("no certificate and no token", func(t *testing.T) {
		s := sub(a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "api6"))
		s.TLS = callerTLS(t, a, nil)
		_, err := a.sub.Submit(ctx, s)
		var se *SubmitError
		if !errors.As(err, &se) || se.Stage != "auth" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("token without OAuth", func(t *testing.T) {
		s := sub(a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "api7"))
		s.Token = "abc"
		_, err := a.sub.Submit(ctx, s)
		var se *SubmitError
		if !errors.As(err, &se) || se.Stage != "auth" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("relay server refuses", func(t *testing.T) {
		if _, err := a.relay.Submit(ctx, sub(a.bal, []string{"dr@b.mssante.test"}, "x")); err == nil {
			t.Fatal("relay accepted a Submit")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := a.sub.Submit(c, sub(a.bal, []string{"dr@b.mssante.test"}, msg(a.bal, "dr@b.mssante.test", "api8"))); err == nil {
			t.Fatal("no error")
		}
	})
}
