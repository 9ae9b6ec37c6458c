package connector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport/psc"
)

// ErrSubmitRefused reports a submission the server refused as a whole (authentication, sender
// or message); the *SubmitError that wraps it has the reply.
var ErrSubmitRefused = errors.New("connector: submission refused")

// Submission is a message a BAL hands to the node through another door than SMTP, such as the
// HTTP API (transport/httpapi): [Server.Submit] runs it through the very session an SMTP
// client gets, so that the same checks apply.
type Submission struct {
	// TLS is the state of the caller's TLS connection (required: the caller came over TLS).
	// Its client certificate authenticates the BAL as SASL EXTERNAL does, unless Token is set.
	TLS *tls.ConnectionState
	// Token is a Pro Santé Connect access token for From (OAUTHBEARER, RFC 7628), for a PER
	// or ORG BAL; it needs ServerOptions.OAuth.
	Token string
	// PeerAddr is the caller's address (host:port), for the per-peer limits and the audit log.
	PeerAddr string
	// From is the BAL sending (the envelope sender); To the envelope recipients.
	From string
	To   []string
	// Notify, Ret and EnvID are the DSN parameters (RFC 3461): NOTIFY for every recipient
	// (default FAILURE,DELAY), RET (FULL or HDRS) and ENVID.
	Notify []string
	Ret    string
	EnvID  string
	// Message is the RFC 5322 message, with CRLF line ends.
	Message io.Reader
}

// SubmitResult is the server's answer to a Submission.
type SubmitResult struct {
	// QueueID is the message's ID in the queue, when it was queued.
	QueueID    string
	Recipients []SubmitRecipient
}

// SubmitRecipient is the answer for one recipient: its RCPT reply, or the final one.
type SubmitRecipient struct {
	Address  string
	Accepted bool
	Code     int
	Enhanced [3]int
	Text     string
}

// Temporary reports a 4xx refusal: submitting again may succeed.
func (r *SubmitRecipient) Temporary() bool { return !r.Accepted && r.Code/100 == 4 }

// SubmitError is a refusal of a whole Submission, with the SMTP reply an SMTP client would
// have got at that stage ("auth", "mail", "data"). It wraps ErrSubmitRefused.
type SubmitError struct {
	Stage    string
	Code     int
	Enhanced [3]int
	Text     string
}

func (e *SubmitError) Error() string {
	return fmt.Sprintf("connector: submission refused at %s: %d %d.%d.%d %s", e.Stage, e.Code,
		e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Text)
}

// Unwrap returns ErrSubmitRefused.
func (e *SubmitError) Unwrap() error { return ErrSubmitRefused }

// Temporary reports a 4xx refusal.
func (e *SubmitError) Temporary() bool { return e.Code/100 == 4 }

// Submit runs sub through a submission session of s (ModeSubmission) over an in-process
// connection: authentication (EXTERNAL with the caller's certificate, or OAUTHBEARER), MAIL,
// each RCPT, DATA, with every check, limit, audit record and metric of an SMTP session, and
// the message queued durably before it returns with a QueueID. The caller's TLS was ended by
// the caller's own server, which is why the in-process session is not encrypted again.
//
// Per-recipient refusals are in the result; a refusal of the whole submission is a
// *SubmitError; an error of the connection (ctx ended, server closed) is returned as is, and
// the message was then not acknowledged.
func (s *Server) Submit(ctx context.Context, sub *Submission) (*SubmitResult, error) {
	if s.opts.Mode != ModeSubmission {
		return nil, errors.New("connector: Submit needs a submission server")
	}
	if sub == nil || sub.TLS == nil || sub.Message == nil || sub.From == "" || len(sub.To) == 0 {
		return nil, errors.New("connector: Submit needs TLS, From, To and Message")
	}
	cli, srvEnd := net.Pipe()
	peer := sub.PeerAddr
	if peer == "" {
		peer = "127.0.0.1:0"
	}
	l := &pipeListener{c: &callerConn{Conn: srvEnd, remote: pipeAddr(peer), tls: sub.TLS}, closed: make(chan struct{})}
	c, err := (&guardListener{s.limiter.Listener(l, s.refused)}).Accept()
	if err != nil {
		cli.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil, &SubmitError{Stage: "connect", Code: replyTooManyConns.Code,
				Enhanced: replyTooManyConns.EnhancedCode, Text: replyTooManyConns.Message}
		}
		return nil, err
	}
	s.serveConn(c)
	stop := context.AfterFunc(ctx, func() { cli.Close() })
	defer stop()
	defer cli.Close()
	if dl, ok := ctx.Deadline(); ok {
		cli.SetDeadline(dl)
	}
	res, err := s.submitOver(cli, sub)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, err
}

// submitOver is the client side of Submit.
func (s *Server) submitOver(conn net.Conn, sub *Submission) (*SubmitResult, error) {
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("httpapi"); err != nil {
		return nil, refusal("ehlo", err)
	}
	var auth sasl.Client
	if sub.Token != "" {
		auth = sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: sub.From, Token: sub.Token})
		if s.opts.OAuth == nil {
			return nil, &SubmitError{Stage: "auth", Code: 535, Enhanced: [3]int{5, 7, 8}, Text: "Bearer tokens are not accepted here"}
		}
	} else {
		auth = sasl.NewExternalClient("")
	}
	if err := c.Auth(auth); err != nil {
		return nil, refusal("auth", err)
	}
	mo := &smtp.MailOptions{Return: smtp.DSNReturn(strings.ToUpper(sub.Ret)), EnvelopeID: sub.EnvID}
	if err := c.Mail(sub.From, mo); err != nil {
		return nil, refusal("mail", err)
	}
	ro := &smtp.RcptOptions{}
	for _, n := range sub.Notify {
		ro.Notify = append(ro.Notify, smtp.DSNNotify(strings.ToUpper(n)))
	}
	res := &SubmitResult{}
	accepted := 0
	for _, to := range sub.To {
		r := SubmitRecipient{Address: to, Accepted: true, Code: 250, Enhanced: [3]int{2, 1, 5}, Text: "OK"}
		if err := c.Rcpt(to, ro); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return nil, err
			}
			r = SubmitRecipient{Address: to, Code: se.Code, Enhanced: se.EnhancedCode, Text: se.Message}
		} else {
			accepted++
		}
		res.Recipients = append(res.Recipients, r)
	}
	if accepted == 0 {
		c.Reset()
		c.Quit()
		return res, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, refusal("data", err)
	}
	if _, err := io.Copy(w, sub.Message); err != nil {
		w.Close()
		return nil, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return nil, refusal("data", err)
	}
	res.QueueID = strings.TrimPrefix(resp.StatusText, "Ok: queued as ")
	c.Quit()
	return res, nil
}

// refusal turns an SMTP reply into a *SubmitError; other errors are returned as they are.
func refusal(stage string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &SubmitError{Stage: stage, Code: se.Code, Enhanced: se.EnhancedCode, Text: se.Message}
	}
	if errors.Is(err, psc.ErrThrottled) {
		return &SubmitError{Stage: stage, Code: replyAuthTooMany.Code, Enhanced: replyAuthTooMany.EnhancedCode, Text: replyAuthTooMany.Message}
	}
	return err
}

// callerConn is the server end of a Submit connection: it carries the caller's address and
// TLS state to the session.
type callerConn struct {
	net.Conn
	remote pipeAddr
	tls    *tls.ConnectionState
}

func (c *callerConn) RemoteAddr() net.Addr { return c.remote }

type pipeAddr string

func (a pipeAddr) Network() string { return "tcp" }
func (a pipeAddr) String() string  { return string(a) }

// pipeListener yields one connection, then reports itself closed.
type pipeListener struct {
	c      net.Conn
	once   sync.Once
	taken  bool
	closed chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.c, nil
	}
	return nil, net.ErrClosed
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr("submit") }
