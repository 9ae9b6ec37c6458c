package bal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/mssante"
)

// fakeSubmission is an in-process go-smtp submission server with STARTTLS that records
// what it receives and can be told to misbehave.
type fakeSubmission struct {
	addr  string
	conns atomic.Int32
	srv   *smtp.Server

	mu       sync.Mutex
	messages []received
	// cutData, when > 0, makes the server drop the connection after reading that many
	// bytes of DATA, once.
	cutData int
	// tempFail lists recipients refused with 451 once.
	tempFail map[string]bool
	// stallData makes DATA hang until the client goes away.
	stallData bool
	// auth is the mechanisms offered; authOK the identities seen.
	auth   []string
	authOK []string
	// last is the server side of the latest connection that began a transaction.
	last *smtp.Conn
}

type received struct {
	from   string
	mail   smtp.MailOptions
	rcpts  []string
	ropts  []smtp.RcptOptions
	data   []byte
	client string // CN of the TLS client certificate
}

func startFakeSubmission(t testing.TB, p *testPKI, dsn bool, configure ...func(*fakeSubmission)) *fakeSubmission {
	t.Helper()
	f := &fakeSubmission{tempFail: map[string]bool{}}
	for _, c := range configure {
		c(f)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &fakeSession{f: f, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.EnableDSN = dsn
	srv.AllowInsecureAuth = false
	srv.TLSConfig = &tls.Config{
		Certificates: []tls.Certificate{p.server.TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pki.Roots(),
	}
	// The client certificate chain: the intermediate comes with the leaf.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.srv = srv
	go srv.Serve(countingListener{ln, &f.conns})
	t.Cleanup(func() { srv.Close() })
	return f
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type fakeSession struct {
	f    *fakeSubmission
	conn *smtp.Conn
	cur  received
}

func (s *fakeSession) AuthMechanisms() []string { return s.f.auth }

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	ok := func(id string) error {
		s.f.mu.Lock()
		s.f.authOK = append(s.f.authOK, mech+":"+id)
		s.f.mu.Unlock()
		return nil
	}
	switch mech {
	case "EXTERNAL":
		return sasl.NewExternalServer(func(identity string) error { return ok(identity) }), nil
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if pass != "secret" {
				return errors.New("bad password")
			}
			return ok(user)
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{ok: ok}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// xoauth2Server checks "user=U^Aauth=Bearer T^A^A" with the token "tok".
type xoauth2Server struct{ ok func(string) error }

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	parts := strings.Split(string(resp), "\x01")
	if len(parts) < 2 || parts[1] != "auth=Bearer tok" {
		return nil, true, errors.New("bad token")
	}
	return nil, true, x.ok(strings.TrimPrefix(parts[0], "user="))
}

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	s.f.mu.Lock()
	s.f.last = s.conn
	s.f.mu.Unlock()
	s.cur = received{from: from, mail: *opts}
	if st, ok := s.conn.TLSConnectionState(); ok && len(st.PeerCertificates) > 0 {
		s.cur.client = st.PeerCertificates[0].Subject.CommonName
	}
	return nil
}

func (s *fakeSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.f.mu.Lock()
	fail := s.f.tempFail[to]
	delete(s.f.tempFail, to)
	s.f.mu.Unlock()
	if fail {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	if strings.HasPrefix(to, "unknown@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	s.cur.ropts = append(s.cur.ropts, *opts)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	s.f.mu.Lock()
	cut, stall := s.f.cutData, s.f.stallData
	s.f.cutData = 0
	s.f.mu.Unlock()
	if stall {
		io.Copy(io.Discard, r)
		time.Sleep(5 * time.Second)
		return errors.New("stalled")
	}
	if cut > 0 {
		io.CopyN(io.Discard, r, int64(cut))
		s.conn.Conn().Close()
		return errors.New("cut")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.f.mu.Lock()
	s.f.messages = append(s.f.messages, s.cur)
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Reset()        { s.cur = received{} }
func (s *fakeSession) Logout() error { return nil }

func (f *fakeSubmission) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.messages...)
}

// newTestClient returns a client of the fake server with SASL EXTERNAL.
func newTestClient(t testing.TB, p *testPKI, addr string, mod ...func(*Options)) *Client {
	t.Helper()
	o := &Options{
		Address:    testBAL,
		NIL:        "DEV000000",
		Submission: Endpoint{Addr: addr},
		IMAP:       Endpoint{Addr: "127.0.0.1:1"},
		TLS:        p.clientTLS(),
		Whitelist:  testList(),
		StateDir:   t.TempDir(),
		Auth:       AuthNone,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
	}
	for _, m := range mod {
		m(o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func simpleMessage(to ...string) *mssante.Message {
	m := &mssante.Message{From: mssante.MustAddress("", testBAL), Text: "Bonjour.\n", NIL: "DEV000000"}
	for _, a := range to {
		m.To = append(m.To, mssante.MustAddress("", a))
	}
	return m
}

func TestSendRefusesRecipientsOutsideWhitelistBeforeAnyIO(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	c := newTestClient(t, p, f.addr)
	_, err := c.Send(context.Background(), simpleMessage("a@test.example", "b@not-listed.example"), nil)
	if !errors.Is(err, ErrNotWhitelisted) {
		t.Fatalf("err = %v, want ErrNotWhitelisted", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Fatalf("%d connections made for a refused message", n)
	}
	// No whitelist at all: nothing may be sent (fail closed).
	c2 := newTestClient(t, p, f.addr, func(o *Options) { o.Whitelist = nil })
	if _, err := c2.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("no whitelist: err = %v", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Fatalf("%d connections made without a whitelist", n)
	}
}

func TestSendDSNParameters(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	c := newTestClient(t, p, f.addr)
	res, err := c.Send(context.Background(), simpleMessage("a@test.example", "unknown@test.example"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 1 {
		t.Fatalf("%d messages received", len(got))
	}
	r := got[0]
	if r.mail.EnvelopeID != res.EnvelopeID || r.mail.Return != smtp.DSNReturnHeaders {
		t.Errorf("MAIL options %+v, want ENVID %s RET=HDRS", r.mail, res.EnvelopeID)
	}
	if len(r.ropts) != 1 || fmt.Sprint(r.ropts[0].Notify) != "[SUCCESS FAILURE DELAY]" || r.ropts[0].OriginalRecipient != "a@test.example" {
		t.Errorf("RCPT options %+v", r.ropts)
	}
	if r.client != testBAL {
		t.Errorf("client certificate CN %q", r.client)
	}
	if !bytes.Contains(r.data, []byte("Message-Id: <"+res.MessageID+">")) && !bytes.Contains(r.data, []byte("Message-ID: <"+res.MessageID+">")) {
		t.Errorf("Message-ID %s not in the message", res.MessageID)
	}
	want := map[string]RecipientResult{
		"a@test.example":       {Address: "a@test.example", Accepted: true, Code: 250},
		"unknown@test.example": {Address: "unknown@test.example", Code: 550, Text: "no such user"},
	}
	for _, rr := range res.Recipients {
		w := want[rr.Address]
		if rr.Accepted != w.Accepted || rr.Code != w.Code || rr.Temporary {
			t.Errorf("recipient %+v, want %+v", rr, w)
		}
	}
	// The refused recipient is final in the outbox.
	rec, err := c.Status(res.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if st := rec.recipient("unknown@test.example"); st.Status != StatusFailed {
		t.Errorf("outbox status %s", st.Status)
	}
}

func TestSendWithoutDSNServerFails(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, false)
	c := newTestClient(t, p, f.addr)
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrNoDSN) {
		t.Fatalf("err = %v, want ErrNoDSN", err)
	}
	if len(f.received()) != 0 {
		t.Fatal("message sent without DSN")
	}
	// Asking for no DSN at all is allowed.
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), &SendOptions{Notify: []DSNNotify{NotifyNever}}); err != nil {
		t.Fatal(err)
	}
	if len(f.received()) != 1 {
		t.Fatal("NOTIFY=NEVER message not sent")
	}
}

// TestSendDSNOptionsOfBal: bal's own NOTIFY and RET values reach the server as RFC 3461
// says, and lists the server would refuse are refused before any connection.
func TestSendDSNOptionsOfBal(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	c := newTestClient(t, p, f.addr)
	for _, o := range []*SendOptions{
		{Notify: []DSNNotify{NotifyNever, NotifySuccess}},
		{Notify: []DSNNotify{"ALWAYS"}},
		{Return: "BODY"},
	} {
		if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), o); !errors.Is(err, ErrMessage) {
			t.Errorf("%+v: err = %v, want ErrMessage", o, err)
		}
	}
	if n := f.conns.Load(); n != 0 {
		t.Fatalf("%d connections made for refused options", n)
	}
	o := &SendOptions{Notify: []DSNNotify{NotifyFailure, NotifyDelay}, Return: ReturnFull}
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), o); err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 1 || got[0].mail.Return != smtp.DSNReturnFull || len(got[0].ropts) != 1 ||
		fmt.Sprint(got[0].ropts[0].Notify) != "[FAILURE DELAY]" {
		t.Fatalf("received %+v", got)
	}
}

// TestMissingNILRefusedBeforeAnyIO: a message without X-MSS-NIL, from the message or
// Options, is refused by Send and SendBatch before any connection; a malformed one by New.
func TestMissingNILRefusedBeforeAnyIO(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	if _, err := New(&Options{Address: testBAL, Auth: AuthNone, NIL: "DEV 0000"}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a NIL of two words: err = %v, want ErrConfig", err)
	}
	c := newTestClient(t, p, f.addr, func(o *Options) { o.NIL = "" })
	m := simpleMessage("a@test.example")
	m.NIL = ""
	if _, err := c.Send(context.Background(), m, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Options.NIL") {
		t.Errorf("Send: err = %v, want ErrConfig naming Options.NIL", err)
	}
	m2 := simpleMessage("a@test.example")
	m2.NIL = ""
	if _, err := c.SendBatch(context.Background(), []*mssante.Message{m, m2}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("SendBatch: err = %v, want ErrConfig", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Fatalf("%d connections made for messages without X-MSS-NIL", n)
	}
	// Options.NIL stands for the message's own.
	c2 := newTestClient(t, p, f.addr, func(o *Options) { o.NIL = "DEV111111" })
	m3 := simpleMessage("a@test.example")
	m3.NIL = ""
	if _, err := c2.Send(context.Background(), m3, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.received(); len(got) != 1 || !bytes.Contains(got[0].data, []byte("X-MSS-NIL: DEV111111")) {
		t.Fatalf("received %d messages, want one with Options.NIL", len(got))
	}
}

// TestSendRetryAfterCutMidDataNoDuplicate: the connection breaks in the middle of DATA;
// sending the same message again delivers it once; a third Send makes no connection.
func TestSendRetryAfterCutMidDataNoDuplicate(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true, func(f *fakeSubmission) { f.cutData = 100 })
	c := newTestClient(t, p, f.addr)
	msg := simpleMessage("a@test.example")
	msg.Attachments = []mssante.Attachment{{Filename: "x.bin", Data: bytes.Repeat([]byte("x"), 10000)}}
	ctx := context.Background()
	if _, err := c.Send(ctx, msg, nil); err == nil {
		t.Fatal("no error when the connection was cut mid-DATA")
	}
	id := msg.MessageID
	if id == "" || len(f.received()) != 0 {
		t.Fatalf("message id %q, received %d", id, len(f.received()))
	}
	res, err := c.Send(ctx, msg, nil)
	if err != nil || res.MessageID != id || !res.Recipients[0].Accepted || res.Recipients[0].AlreadySent {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	conns := f.conns.Load()
	res, err = c.Send(ctx, msg, nil)
	if err != nil || !res.Recipients[0].AlreadySent {
		t.Fatalf("third send: %+v, %v", res, err)
	}
	if f.conns.Load() != conns || len(f.received()) != 1 {
		t.Fatalf("duplicate: %d messages, %d connections", len(f.received()), f.conns.Load())
	}
}

// TestSendRetriesOnlyTemporarilyRefusedRecipients: a 451 for one recipient; the retry goes
// to that one only.
func TestSendRetriesOnlyTemporarilyRefusedRecipients(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true, func(f *fakeSubmission) { f.tempFail["b@test.example"] = true })
	c := newTestClient(t, p, f.addr)
	msg := simpleMessage("a@test.example", "b@test.example")
	res, err := c.Send(context.Background(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var temp bool
	for _, r := range res.Recipients {
		temp = temp || (r.Address == "b@test.example" && r.Temporary && !r.Accepted)
	}
	if !temp {
		t.Fatalf("results %+v", res.Recipients)
	}
	if _, err := c.Send(context.Background(), msg, nil); err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 2 || fmt.Sprint(got[0].rcpts) != "[a@test.example]" || fmt.Sprint(got[1].rcpts) != "[b@test.example]" {
		t.Fatalf("received %+v", got)
	}
}

func TestSendBatchUsesOneConnection(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	c := newTestClient(t, p, f.addr)
	var msgs []*mssante.Message
	for i := 0; i < 5; i++ {
		msgs = append(msgs, simpleMessage("a@test.example"))
	}
	if _, err := c.SendBatch(context.Background(), msgs, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); err != nil {
		t.Fatal(err)
	}
	if n := f.conns.Load(); n != 1 || len(f.received()) != 6 {
		t.Fatalf("%d connections for %d messages", n, len(f.received()))
	}
}

// TestSendAfterServerClosedIdleConnection: the kept connection is reused without RSET; when
// the server closed it while idle (silently, or with a 421 first), the next Send reconnects
// and the message is submitted once.
func TestSendAfterServerClosedIdleConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(net.Conn)
	}{
		{"close", func(c net.Conn) { c.Close() }},
		{"421", func(c net.Conn) { c.Write([]byte("421 4.4.2 localhost Error: timeout exceeded\r\n")); c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t)
			f := startFakeSubmission(t, p, true)
			c := newTestClient(t, p, f.addr)
			ctx := context.Background()
			for i := 0; i < 2; i++ {
				if _, err := c.Send(ctx, simpleMessage("a@test.example"), nil); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.conns.Load(); n != 1 {
				t.Fatalf("%d connections for two messages", n)
			}
			f.mu.Lock()
			tc.close(f.last.Conn())
			f.mu.Unlock()
			msg := simpleMessage("a@test.example")
			res, err := c.Send(ctx, msg, nil)
			if err != nil || !res.Recipients[0].Accepted {
				t.Fatalf("send after the server closed the connection: %+v, %v", res, err)
			}
			got := f.received()
			if n := f.conns.Load(); n != 2 || len(got) != 3 || !bytes.Contains(got[2].data, []byte(msg.MessageID)) {
				t.Fatalf("%d connections, %d messages", n, len(got))
			}
		})
	}
}

// TestSendStartTLSRefusals: a server that does not offer STARTTLS, or that sends bytes in
// clear after its 220 to STARTTLS (which would be read as coming through TLS), gets nothing
// and the error is ErrTLS.
func TestSendStartTLSRefusals(t *testing.T) {
	for _, tc := range []struct{ name, ehlo, starttls string }{
		{"not offered", "250-localhost\r\n250 DSN\r\n", ""},
		{"injected", "250-localhost\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			var mail atomic.Bool
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer conn.Close()
						r := bufio.NewReader(conn)
						io.WriteString(conn, "220 localhost ESMTP\r\n")
						for {
							line, err := r.ReadString('\n')
							if err != nil {
								return
							}
							switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
							case strings.HasPrefix(cmd, "EHLO"):
								io.WriteString(conn, tc.ehlo)
							case cmd == "STARTTLS" && tc.starttls != "":
								io.WriteString(conn, tc.starttls)
								time.Sleep(100 * time.Millisecond)
								return
							case strings.HasPrefix(cmd, "MAIL"):
								mail.Store(true)
								return
							default:
								io.WriteString(conn, "502 no\r\n")
							}
						}
					}()
				}
			}()
			p := newTestPKI(t)
			c := newTestClient(t, p, ln.Addr().String())
			_, err = c.Send(context.Background(), simpleMessage("a@test.example"), nil)
			if !errors.Is(err, ErrTLS) || mail.Load() {
				t.Fatalf("err = %v (MAIL sent: %v), want ErrTLS", err, mail.Load())
			}
		})
	}
}

func TestSendAuthMechanisms(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true, func(f *fakeSubmission) { f.auth = []string{"EXTERNAL", "PLAIN", "XOAUTH2"} })
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"external", func(o *Options) { o.Auth = "" }, "EXTERNAL:"},
		{"plain", func(o *Options) { o.Auth, o.Username, o.Password = AuthPlain, "u1", "secret" }, "PLAIN:u1"},
		{"xoauth2", func(o *Options) {
			o.Auth = AuthXOAUTH2
			o.TokenSource = func(context.Context) (string, error) { return "tok", nil }
		}, "XOAUTH2:" + testBAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, p, f.addr, tc.mod)
			if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			last := f.authOK[len(f.authOK)-1]
			f.mu.Unlock()
			if last != tc.want {
				t.Fatalf("server saw %q, want %q", last, tc.want)
			}
		})
	}
	bad := newTestClient(t, p, f.addr, func(o *Options) { o.Auth, o.Username, o.Password = AuthPlain, "u1", "wrong" })
	if _, err := bad.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: %v", err)
	}
	f2 := startFakeSubmission(t, p, true) // offers no AUTH
	c := newTestClient(t, p, f2.addr, func(o *Options) { o.Auth = AuthExternal })
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("no EXTERNAL offered: %v", err)
	}
}

// TestSendRefusesUntrustedServer: a server certificate from another CA, or for another
// name, ends the connection before anything is sent; InsecureSkipVerify is refused.
func TestSendRefusesUntrustedServer(t *testing.T) {
	p := newTestPKI(t)
	foreign, err := p.pki.Server("localhost", &testpki.LeafOptions{ForeignCA: true})
	if err != nil {
		t.Fatal(err)
	}
	bad := *p
	bad.server = foreign
	f := startFakeSubmission(t, &bad, true)
	c := newTestClient(t, p, f.addr)
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrTLS) {
		t.Fatalf("foreign CA: err = %v, want ErrTLS", err)
	}
	expired, err := p.pki.Server("localhost", &testpki.LeafOptions{Expired: true})
	if err != nil {
		t.Fatal(err)
	}
	bad.server = expired
	f2 := startFakeSubmission(t, &bad, true)
	c = newTestClient(t, p, f2.addr)
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrTLS) {
		t.Fatalf("expired server certificate: err = %v, want ErrTLS", err)
	}
	if len(f.received())+len(f2.received()) != 0 {
		t.Fatal("message sent to an untrusted server")
	}
	revoked, err := p.pki.Server("localhost", &testpki.LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a newer CRL (thisUpdate has a one-second resolution)
	crl, err := p.pki.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.trust.AddCRL(crl); err != nil { // now listing the revoked certificate
		t.Fatal(err)
	}
	bad.server = revoked
	f3 := startFakeSubmission(t, &bad, true)
	c = newTestClient(t, p, f3.addr)
	if _, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil); !errors.Is(err, ErrTLS) {
		t.Fatalf("revoked server certificate: err = %v, want ErrTLS", err)
	}
	if len(f3.received()) != 0 {
		t.Fatal("message sent to a revoked server")
	}
}

func TestSendHonoursContext(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true, func(f *fakeSubmission) { f.stallData = true })
	c := newTestClient(t, p, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Send(ctx, simpleMessage("a@test.example"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Send returned after %v", d)
	}
}

type fakeResolver map[string][]*net.SRV

func (r fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	k := "_" + service + "._" + proto + "." + name
	if s, ok := r[k]; ok {
		return k, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: k, IsNotFound: true}
}

func TestDiscover(t *testing.T) {
	for _, tc := range []struct {
		name     string
		res      fakeResolver
		sub, imp Endpoint
		err      error
	}{
		{"imaps preferred", fakeResolver{
			"_submission._tcp.test.example": {{Target: "smtp.test.example.", Port: 587}},
			"_imaps._tcp.test.example":      {{Target: "imap.test.example.", Port: 993}},
			"_imap._tcp.test.example":       {{Target: "imap.test.example.", Port: 143}},
		}, Endpoint{Addr: "smtp.test.example:587"}, Endpoint{Addr: "imap.test.example:993", Security: ImplicitTLS}, nil},
		{"imap only", fakeResolver{
			"_submission._tcp.test.example": {{Target: "smtp.test.example.", Port: 587}},
			"_imaps._tcp.test.example":      {{Target: ".", Port: 0}},
			"_imap._tcp.test.example":       {{Target: "imap.test.example.", Port: 143}},
		}, Endpoint{Addr: "smtp.test.example:587"}, Endpoint{Addr: "imap.test.example:143"}, nil},
		{"no submission", fakeResolver{
			"_submission._tcp.test.example": {{Target: ".", Port: 0}},
		}, Endpoint{}, Endpoint{}, ErrDiscovery},
		{"nothing", fakeResolver{}, Endpoint{}, Endpoint{}, ErrDiscovery},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(&Options{Address: testBAL, Auth: AuthPlain, Username: "u", Password: "p", Resolver: tc.res})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Discover(context.Background())
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && (c.opts.Submission != tc.sub || c.opts.IMAP != tc.imp) {
				t.Fatalf("endpoints %+v %+v", c.opts.Submission, c.opts.IMAP)
			}
		})
	}
}

func TestBackoffBoundedWithJitter(t *testing.T) {
	c, err := New(&Options{Address: testBAL, Auth: AuthPlain, Username: "u", Password: "p", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for n := 0; n < 50; n++ {
		d := c.backoff(n)
		want := min(100*time.Millisecond<<min(n, 20), time.Second)
		if d < want/2 || d > want {
			t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("no jitter: %d distinct delays", len(seen))
	}
}

// A raw message without Message-ID gets one derived from its content: the same bytes sent
// twice are one message.
func TestSendRawDerivedMessageID(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	c := newTestClient(t, p, f.addr)
	raw := []byte("From: <" + testBAL + ">\r\nTo: <a@test.example>\r\nSubject: x\r\nX-MSS-NIL: DEV000000\r\n\r\nbody\r\n")
	r1, err := c.SendRaw(context.Background(), bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.SendRaw(context.Background(), bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1.MessageID == "" || r1.MessageID != r2.MessageID || !r2.Recipients[0].AlreadySent || len(f.received()) != 1 {
		t.Fatalf("ids %q %q, received %d", r1.MessageID, r2.MessageID, len(f.received()))
	}
	if got := f.received()[0].data; !bytes.Contains(got, []byte("Message-ID: <"+r1.MessageID+">")) {
		t.Fatalf("Message-ID not added:\n%s", got)
	}
}

// TestConcurrentSendsDurable: Sends from several goroutines share the connection and the
// journal's fsyncs (group commit); each message reaches the server once and every record a
// Send reported is found, accepted, by a client opened afterwards on the same folder.
func TestConcurrentSendsDurable(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	dir := t.TempDir()
	c := newTestClient(t, p, f.addr, func(o *Options) { o.StateDir = dir })
	const workers, each = 4, 5
	ids := make(chan string, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				res, err := c.Send(context.Background(), simpleMessage("a@test.example"), nil)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- res.MessageID
			}
		})
	}
	var batch []*mssante.Message
	for i := 0; i < each; i++ {
		batch = append(batch, simpleMessage("a@test.example"))
	}
	if _, err := c.SendBatch(context.Background(), batch, nil); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(ids)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.received()); n != workers*each+each || f.conns.Load() != 1 {
		t.Fatalf("%d messages received over %d connections", n, f.conns.Load())
	}
	c2 := newTestClient(t, p, f.addr, func(o *Options) { o.StateDir = dir })
	for _, m := range batch {
		rec, err := c2.Status(m.MessageID)
		if err != nil || rec.Recipients[0].Status != StatusSubmitted {
			t.Fatalf("batch message %s: %+v, %v", m.MessageID, rec, err)
		}
	}
	for id := range ids {
		if rec, err := c2.Status(id); err != nil || rec.Recipients[0].Status != StatusSubmitted {
			t.Fatalf("%s: %+v, %v", id, rec, err)
		}
	}
}

// TestSendRefusesForeignFrom: a From that is not the BAL's own address is refused before
// any I/O (the submission address is unreachable) and leaves nothing in the outbox.
func TestSendRefusesForeignFrom(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	c := newTestClient(t, p, "127.0.0.1:1", func(o *Options) { o.StateDir = dir })
	m := simpleMessage("a@test.example")
	m.From = mssante.MustAddress("", "autre@test.example")
	_, err := c.Send(context.Background(), m, nil)
	if !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "not the BAL's own address") {
		t.Fatalf("Send from another address: %v", err)
	}
	raw := "From: <autre@test.example>\r\nTo: <a@test.example>\r\nMessage-ID: <x@test.example>\r\n\r\nx\r\n"
	if _, err := c.SendRaw(context.Background(), strings.NewReader(raw), nil); !errors.Is(err, ErrMessage) {
		t.Fatalf("SendRaw from another address: %v", err)
	}
	if recs, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.json")); len(recs) != 0 {
		t.Errorf("outbox holds %v", recs)
	}
}

// TestSendRawRefusesMissingNIL: SendRaw sends the bytes as they are, so a message without
// X-MSS-NIL is refused before any I/O, and one that has it is not.
func TestSendRawRefusesMissingNIL(t *testing.T) {
	p := newTestPKI(t)
	f := startFakeSubmission(t, p, true)
	dir := t.TempDir()
	c := newTestClient(t, p, f.addr, func(o *Options) { o.StateDir = dir })
	raw := "From: <" + testBAL + ">\r\nTo: <a@test.example>\r\nMessage-ID: <raw1@test.example>\r\n"
	_, err := c.SendRaw(context.Background(), strings.NewReader(raw+"\r\nx\r\n"), nil)
	if !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "X-MSS-NIL") {
		t.Fatalf("SendRaw without X-MSS-NIL: %v, want ErrMessage naming X-MSS-NIL", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Fatalf("%d connections made for a raw message without X-MSS-NIL", n)
	}
	if recs, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.json")); len(recs) != 0 {
		t.Errorf("outbox holds %v", recs)
	}
	if _, err := c.SendRaw(context.Background(), strings.NewReader(raw+"X-MSS-NIL: DEV000000\r\n\r\nx\r\n"), nil); err != nil {
		t.Fatalf("SendRaw with X-MSS-NIL: %v", err)
	}
}

// TestWatchWithoutNIL: a Watch that would answer senders needs Options.NIL, said at its
// start; one that follows receipts only does not, and needs no handler.
func TestWatchWithoutNIL(t *testing.T) {
	p := newTestPKI(t)
	c := newTestClient(t, p, "127.0.0.1:1", func(o *Options) { o.NIL, o.Auth = "", AuthExternal })
	h := func(context.Context, *Incoming) error { return nil }
	if err := c.Watch(context.Background(), h, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Options.NIL") {
		t.Fatalf("Watch without NIL: %v, want ErrConfig naming Options.NIL", err)
	}
	if err := c.Watch(context.Background(), nil, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("Watch with a nil handler: %v, want ErrConfig", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Watch(ctx, nil, &WatchOptions{ReceiptsOnly: true}); errors.Is(err, ErrConfig) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receipts-only Watch without NIL or handler: %v, want it to run until ctx ends", err)
	}
}
