package bal

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
)

// TestWrongTLSMode points a client with the wrong Security at each listener of a reference
// connector (587, 465, 143, 993 of the sandbox): Send and Watch fail at once with ErrTLS and a
// message that names the fix, not with "use of closed network connection" or after ctx.
func TestWrongTLSMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two connectors")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	op := sb.Info.OperatorOf(from)
	msg := func() *mssante.Message {
		return &mssante.Message{From: mssante.MustAddress("", from), To: []mssante.Address{mssante.MustAddress("", to)},
			Subject: "test", Text: "Bonjour.\n", NIL: "DEV000000"}
	}
	for _, tc := range []struct {
		name string
		ep   Endpoint
		imap bool
		want []string
	}{
		{"submission StartTLS on 465", Endpoint{Addr: op.SubmissionTLS, Security: StartTLS}, false,
			[]string{"expects implicit TLS", "not an SMTP greeting", "use ImplicitTLS", "StartTLS on port 587"}},
		{"submission ImplicitTLS on 587", Endpoint{Addr: op.Submission, Security: ImplicitTLS}, false,
			[]string{"speaks plain SMTP first", `"220 `, "use StartTLS", "ImplicitTLS on port 465"}},
		{"IMAP StartTLS on 993", Endpoint{Addr: op.IMAPS, Security: StartTLS}, true,
			[]string{"expects implicit TLS", "not an IMAP greeting", "use ImplicitTLS", "StartTLS on port 143"}},
		{"IMAP ImplicitTLS on 143", Endpoint{Addr: op.IMAP, Security: ImplicitTLS}, true,
			[]string{"speaks plain IMAP first", `"* OK`, "use StartTLS", "ImplicitTLS on port 993"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sandboxClient(t, sb.Info, from)
			start := time.Now()
			if tc.imap {
				c.opts.IMAP = tc.ep
				wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
				defer wcancel()
				err = c.Watch(wctx, func(context.Context, *Incoming) error { return nil }, nil)
			} else {
				c.opts.Submission = tc.ep
				_, err = c.Send(ctx, msg(), nil)
			}
			t.Log(err)
			if !errors.Is(err, ErrTLS) {
				t.Fatalf("err = %v, want ErrTLS", err)
			}
			var me *TLSModeError
			if !errors.As(err, &me) || me.Want == tc.ep.Security || me.Addr != tc.ep.Addr {
				t.Errorf("err = %#v, want a *TLSModeError for %s wanting the other mode", me, tc.ep.Addr)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v: Watch waited for its context", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nlacks %q", err, w)
				}
			}
			if d := time.Since(start); d > greetingProbeDelay+5*time.Second {
				t.Errorf("took %s to find out", d)
			}
		})
	}
}

// TestAwaitGreetingTellsSilentAndSlowServers: a server that closes at once or says nothing
// in clear and nothing to a ClientHello either is not reported as a TLS mode mistake (a retry
// may cure it); one that greets after the probe has asked is waited for.
func TestAwaitGreetingTellsSilentAndSlowServers(t *testing.T) {
	p := newTestPKI(t)
	serve := func(t *testing.T, handle func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					handle(conn)
				}()
			}
		}()
		return ln.Addr().String()
	}
	greet := func(t *testing.T, addr string, timeout time.Duration) (string, error) {
		c := newTestClient(t, p, addr)
		c.opts.DialTimeout = timeout
		raw, cfg, err := c.dial(context.Background(), c.opts.Submission, protoSMTP)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		conn, err := c.awaitGreeting(context.Background(), raw, c.opts.Submission, cfg, protoSMTP)
		if err != nil {
			return "", err
		}
		b := make([]byte, 64)
		n, _ := conn.Read(b)
		return string(b[:n]), nil
	}

	t.Run("closes", func(t *testing.T) {
		addr := serve(t, func(net.Conn) {})
		_, err := greet(t, addr, 5*time.Second)
		if err == nil || errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "closed the connection before its greeting") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("silent", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) { time.Sleep(10 * time.Second) })
		start := time.Now()
		_, err := greet(t, addr, greetingProbeDelay+time.Second)
		if err == nil || errors.Is(err, ErrTLS) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no SMTP greeting") {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d > greetingProbeDelay+3*time.Second {
			t.Errorf("took %s", d)
		}
	})
	t.Run("slow", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) {
			time.Sleep(greetingProbeDelay + 500*time.Millisecond)
			c.Write([]byte("220 slow ESMTP\r\n"))
			time.Sleep(time.Second)
		})
		got, err := greet(t, addr, 10*time.Second)
		if err != nil || got != "220 slow ESMTP\r\n" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}

// TestWatchSaysWhyItNeverConnected: a Watch whose server cannot be reached retries until its
// context ends and then returns the context's error with the last failure, called probably
// misconfigured after identical failures in a row; the same is logged once.
func TestWatchSaysWhyItNeverConnected(t *testing.T) {
	p := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var logs testenv.Buffer
	c := newTestClient(t, p, "127.0.0.1:1", func(o *Options) {
		o.IMAP = Endpoint{Addr: addr, Security: ImplicitTLS, Auth: AuthExternal}
		o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = c.Watch(ctx, func(context.Context, *Incoming) error { return nil }, nil)
	t.Log(err)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want the deadline and the refused connection", err)
	}
	for _, w := range []string{"probably misconfigured", "nothing listens there", addr} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err lacks %q: %v", w, err)
		}
	}
	if n := strings.Count(logs.String(), "probably misconfigured"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}

	// Cut while connecting, before any failure: still not only "context deadline exceeded".
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c2 := newTestClient(t, p, "127.0.0.1:1", func(o *Options) {
		o.IMAP = Endpoint{Addr: silent.Addr().String(), Security: ImplicitTLS, Auth: AuthExternal}
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err = c2.Watch(ctx2, func(context.Context, *Incoming) error { return nil }, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "while connecting to "+silent.Addr().String()) {
		t.Fatalf("err = %v", err)
	}
}
