package bal

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	nettextproto "net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/mssante"
)

// SendOptions are per-message parameters. A nil *SendOptions takes the defaults.
type SendOptions struct {
	// Recipients are the envelope recipients; default: the To and Cc addresses of the message.
	Recipients []string
	// Notify lists the DSN conditions (RFC 3461 NOTIFY); default NotifySuccess,
	// NotifyFailure, NotifyDelay. NotifyNever alone asks for no DSN, and then a server
	// without DSN is accepted. Any other value, or NotifyNever with another, is refused
	// before any I/O (ErrMessage).
	Notify []DSNNotify
	// Return says what a DSN carries back (RET); default ReturnHeaders, so that the
	// documents are not sent back.
	Return DSNReturn
}

// DSNNotify is a condition under which a DSN is asked for (RFC 3461 §4.1, NOTIFY). bal has
// its own type so that the SMTP library it is built on can change without changing its API.
type DSNNotify string

// The NOTIFY conditions of RFC 3461.
const (
	NotifySuccess DSNNotify = "SUCCESS"
	NotifyFailure DSNNotify = "FAILURE"
	NotifyDelay   DSNNotify = "DELAY"
	NotifyNever   DSNNotify = "NEVER"
)

// DSNReturn is what a DSN carries back of the message (RFC 3461 §4.3, RET).
type DSNReturn string

// The RET values of RFC 3461.
const (
	// ReturnHeaders returns the headers only (HDRS). Default.
	ReturnHeaders DSNReturn = "HDRS"
	// ReturnFull returns the whole message, documents included.
	ReturnFull DSNReturn = "FULL"
)

// notify returns the NOTIFY conditions of o in go-smtp's terms, or ErrMessage for a list
// RFC 3461 does not allow.
func (o *SendOptions) notify() ([]smtp.DSNNotify, error) {
	if o == nil || len(o.Notify) == 0 {
		return []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}, nil
	}
	out := make([]smtp.DSNNotify, 0, len(o.Notify))
	for _, n := range o.Notify {
		switch n {
		case NotifySuccess:
			out = append(out, smtp.DSNNotifySuccess)
		case NotifyFailure:
			out = append(out, smtp.DSNNotifyFailure)
		case NotifyDelay:
			out = append(out, smtp.DSNNotifyDelayed)
		case NotifyNever:
			if len(o.Notify) > 1 {
				return nil, fmt.Errorf("%w: SendOptions.Notify: NEVER cannot be combined with another condition (RFC 3461 §4.1)", ErrMessage)
			}
			out = append(out, smtp.DSNNotifyNever)
		default:
			return nil, fmt.Errorf("%w: SendOptions.Notify: unknown condition %q", ErrMessage, n)
		}
	}
	return out, nil
}

// ret returns the RET value of o in go-smtp's terms, or ErrMessage for an unknown one.
func (o *SendOptions) ret() (smtp.DSNReturn, error) {
	if o == nil || o.Return == "" {
		return smtp.DSNReturnHeaders, nil
	}
	switch o.Return {
	case ReturnHeaders:
		return smtp.DSNReturnHeaders, nil
	case ReturnFull:
		return smtp.DSNReturnFull, nil
	}
	return "", fmt.Errorf("%w: SendOptions.Return: unknown value %q", ErrMessage, o.Return)
}

// check refuses, before any I/O, options the server would have to refuse.
func (o *SendOptions) check() error {
	if _, err := o.notify(); err != nil {
		return err
	}
	_, err := o.ret()
	return err
}

// RecipientResult is what the submission server said about one recipient.
type RecipientResult struct {
	Address string
	// Accepted is true when the server took responsibility for this recipient (now, or by
	// an earlier Send of the same message: then AlreadySent is true too).
	Accepted    bool
	AlreadySent bool
	// Code and Text are the server's reply (RCPT, or the final reply to DATA).
	Code int
	Text string
	// Temporary is true for a 4xx refusal: sending the same message again retries this
	// recipient only.
	Temporary bool
}

// SendResult is the outcome of Send.
type SendResult struct {
	// MessageID is the Message-ID submitted (without angle brackets); EnvelopeID the ENVID
	// DSNs carry back. Both are stable across retries of the same message.
	MessageID, EnvelopeID string
	Recipients            []RecipientResult
}

// Send composes msg (mssante.Message.WriteTo) and submits it through the operator's
// submission server. An MDN is asked for when msg.WantMDN is set.
//
// Every recipient's domain is checked against the whitelist first; if one is not listed,
// nothing is sent and the error wraps ErrNotWhitelisted. A From other than Options.Address
// is refused then too (ErrMessage), and so is a message without X-MSS-NIL when Options.NIL
// is empty too (ErrConfig). The message is then written to the
// outbox. When msg.MessageID is empty Send sets it, so that calling Send again with the same
// msg after a network error finds the outbox record and submits only to the recipients not
// yet accepted: no duplicate. DSNs are asked for with NOTIFY, RET and ENVID; a server
// without the DSN extension is refused (ErrNoDSN) unless Notify is NEVER.
//
// The error is nil when at least one recipient was accepted; per-recipient outcomes are in
// the result. Consecutive calls reuse one connection; concurrent calls take turns on it and
// share the outbox fsyncs.
func (c *Client) Send(ctx context.Context, msg *mssante.Message, opts *SendOptions) (*SendResult, error) {
	p, err := c.prepareMessage(msg, opts)
	if err != nil {
		return nil, err
	}
	c.smtpMu.Lock()
	res, err := c.submit(ctx, p, opts)
	c.smtpMu.Unlock()
	return c.durable(p, res, err)
}

// SendRaw submits a message already written (RFC 5322), read from r, like Send. When it
// has no Message-ID, one derived from its content is added, so that the same bytes sent
// again are recognised.
func (c *Client) SendRaw(ctx context.Context, r io.Reader, opts *SendOptions) (*SendResult, error) {
	p, err := c.prepare(func(w io.Writer) error { _, err := io.Copy(w, r); return err }, opts)
	if err != nil {
		return nil, err
	}
	c.smtpMu.Lock()
	res, err := c.submit(ctx, p, opts)
	c.smtpMu.Unlock()
	return c.durable(p, res, err)
}

// SendBatch sends msgs one after the other over one connection. It stops at the first error
// that is not about a message itself (network, TLS, authentication) and returns the results
// so far; results[i] is nil for a message not sent.
func (c *Client) SendBatch(ctx context.Context, msgs []*mssante.Message, opts *SendOptions) ([]*SendResult, error) {
	results := make([]*SendResult, len(msgs))
	msgErrs := make([]error, len(msgs))
	// Each message's record is made durable by its own goroutine as soon as the server
	// answered, while the next message is sent (group commit); all are durable before
	// SendBatch returns.
	var wg sync.WaitGroup
	c.smtpMu.Lock()
	for i, m := range msgs {
		p, err := c.prepareMessage(m, opts)
		if err != nil {
			msgErrs[i] = err
			continue
		}
		r, err := c.submit(ctx, p, opts)
		wg.Go(func() { results[i], msgErrs[i] = c.durable(p, r, err) })
		if err != nil && !errors.Is(err, ErrAllRejected) {
			break
		}
	}
	c.smtpMu.Unlock()
	wg.Wait()
	var errs []error
	for i, err := range msgErrs {
		if err != nil {
			errs = append(errs, fmt.Errorf("message %d: %w", i, err))
		}
	}
	return results, errors.Join(errs...)
}

// prepareMessage gives msg a Message-ID, a sender, a date and the X-MSS-NIL of Options when
// it has none, and prepares it.
func (c *Client) prepareMessage(msg *mssante.Message, opts *SendOptions) (*prepared, error) {
	if msg == nil {
		return nil, fmt.Errorf("%w: nil message", ErrMessage)
	}
	// The operator refuses a mail without X-MSS-NIL: said before anything is written or dialled.
	if msg.NIL == "" && c.opts.NIL == "" {
		return nil, fmt.Errorf("%w: no X-MSS-NIL: set Options.NIL (or mssante.Message.NIL on each message)", ErrConfig)
	}
	if msg.From.IsZero() {
		a, err := mssante.NewAddress("", c.opts.Address)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		msg.From = a
	}
	if msg.MessageID == "" {
		var b [16]byte
		crand.Read(b[:])
		_, dom, _ := splitAddress(c.opts.Address)
		msg.MessageID = hex.EncodeToString(b[:]) + "@" + dom
	}
	if msg.Date.IsZero() {
		msg.Date = c.opts.Now()
	}
	if msg.NIL == "" {
		msg.NIL = c.opts.NIL
	}
	co := &mssante.ComposeOptions{Now: c.opts.Now, MaxSize: c.opts.MaxMessageSize}
	return c.prepare(func(w io.Writer) error { _, err := msg.WriteTo(w, co); return err }, opts)
}

// prepared is a message written to the outbox, ready to submit.
type prepared struct {
	rec   *Record
	fresh bool   // rec is not in the outbox yet
	data  []byte // the message, when small
	file  string // or its file
	size  int64
	seq   int64 // the journal line of the server's reply, once submitted (see durable)
}

// durable waits until the record of p's submission is durable (group commit: the fsync may
// cover other messages' records too) and returns err, or the failure to make it durable.
func (c *Client) durable(p *prepared, res *SendResult, err error) (*SendResult, error) {
	if p.seq == 0 {
		return res, err
	}
	if serr := c.box.sync(p.seq); serr != nil {
		return res, fmt.Errorf("bal: outbox: %w", serr)
	}
	return res, err
}

// prepare serialises msg, checks its recipients and records it in the outbox (or finds the
// record of an earlier attempt).
func (c *Client) prepare(write func(io.Writer) error, opts *SendOptions) (*prepared, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if c.opts.Whitelist == nil {
		return nil, fmt.Errorf("%w: no whitelist policy: nothing may be sent (fail closed)", ErrConfig)
	}
	if c.box == nil {
		return nil, fmt.Errorf("%w: StateDir is required to send", ErrConfig)
	}
	sp := &spoolWriter{dir: c.box.dir, threshold: c.opts.SpoolThreshold}
	defer sp.discard()
	lw := &limitWriter{w: sp, n: c.opts.MaxMessageSize}
	if err := write(lw); err != nil {
		return nil, fmt.Errorf("%w: writing it: %w", ErrMessage, err)
	}
	src, err := sp.reader()
	if err != nil {
		return nil, fmt.Errorf("bal: outbox: %w", err)
	}
	th, err := textproto.ReadHeader(bufio.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMessage, err)
	}
	hdr := mail.Header{Header: message.Header{Header: th}}
	// The operator accepts from a BAL only its own address, and refuses the rest per
	// recipient with a reason the caller rarely reads: said here, before any I/O.
	if hdr.Has("From") {
		from, err := hdr.AddressList("From")
		if err != nil {
			return nil, fmt.Errorf("%w: From: %w", ErrMessage, err)
		}
		if len(from) != 1 || !strings.EqualFold(from[0].Address, c.opts.Address) {
			return nil, fmt.Errorf("%w: From %q is not the BAL's own address %s (Options.Address): the operator would refuse it",
				ErrMessage, hdr.Get("From"), c.opts.Address)
		}
	}
	// Send puts Options.NIL in what it composes; SendRaw sends the bytes as they are, so a
	// raw message must carry it already (Réf. #2 ECO.2.4.3) or the operator refuses it.
	if err := mssante.CheckNIL(strings.TrimSpace(hdr.Get(mssante.HeaderNIL))); err != nil {
		return nil, fmt.Errorf("%w: a raw message must carry the sending software's reference: %w", ErrMessage, err)
	}

	var rcpts []string
	if opts != nil && len(opts.Recipients) > 0 {
		rcpts = opts.Recipients
	} else {
		for _, k := range []string{"To", "Cc"} {
			list, err := hdr.AddressList(k)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrMessage, k, err)
			}
			for _, a := range list {
				rcpts = append(rcpts, a.Address)
			}
		}
	}
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("%w: no recipient", ErrMessage)
	}
	// Whitelist before any I/O: a recipient outside the trust space never reaches the operator.
	seen := map[string]bool{}
	var uniq []string
	for _, r := range rcpts {
		_, dom, ok := splitAddress(r)
		if !ok {
			return nil, fmt.Errorf("%w: recipient %q is not an address", ErrMessage, r)
		}
		if err := c.opts.Whitelist.CheckDomain(dom); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotWhitelisted, dom, err)
		}
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			uniq = append(uniq, r)
		}
	}

	// Stable Message-ID: the message's own, else one derived from its content, so that the
	// same message sent again gets the same one.
	var prefix strings.Builder
	msgID, _ := hdr.MessageID()
	if msgID == "" {
		h := sha256.New()
		all, err := sp.reader()
		if err == nil {
			_, err = io.Copy(h, all)
		}
		if err != nil {
			return nil, fmt.Errorf("bal: outbox: %w", err)
		}
		_, dom, _ := splitAddress(c.opts.Address)
		msgID = hex.EncodeToString(h.Sum(nil)[:16]) + "@" + dom
		fmt.Fprintf(&prefix, "Message-ID: <%s>\r\n", msgID)
	}
	mdn := hdr.Has("Disposition-Notification-To")
	envid := envelopeID(msgID)
	p := &prepared{}

	c.box.mu.Lock()
	defer c.box.mu.Unlock()
	rec, err := c.box.load(envid)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Only records written after a server's reply are fsynced; an unreadable record is
		// one that never got that far, so the message is sent as new.
		c.log.Warn("bal: outbox record unreadable, sending as new", "message_id", msgID, "err", err)
		rec = nil
	}
	if rec != nil {
		c.log.Info("bal: message already in the outbox, resuming", "message_id", msgID)
		// Its last change may still be waiting for its fsync: what Send reports of it must
		// be durable too.
		p.seq = c.box.written
	} else {
		rec = &Record{MessageID: msgID, EnvelopeID: envid, MDNRequested: mdn, Created: c.opts.Now().UTC()}
		for _, r := range uniq {
			rec.Recipients = append(rec.Recipients, RecipientState{Address: r, Status: StatusPending, Updated: rec.Created})
		}
		p.fresh = true
	}
	p.rec = rec
	// The message itself needs no fsync: after a crash the caller sends it again. A small one
	// stays in memory; a large one is kept as ENVID.eml and streamed from there.
	if sp.f == nil {
		p.data = append([]byte(prefix.String()), sp.buf.Bytes()...)
		p.size = int64(len(p.data))
		return p, nil
	}
	p.file = c.box.path(envid, ".eml")
	if p.size, err = copyWithPrefix(p.file, prefix.String(), sp.f); err != nil {
		return nil, fmt.Errorf("bal: outbox: %w", err)
	}
	return p, nil
}

// spoolWriter keeps what is written in memory up to threshold, then in a temporary file.
type spoolWriter struct {
	dir       string
	threshold int64
	buf       bytes.Buffer
	f         *os.File
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	if s.f == nil && int64(s.buf.Len()+len(p)) <= s.threshold {
		return s.buf.Write(p)
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, ".tmp-msg-*")
		if err != nil {
			return 0, err
		}
		s.f = f
		if _, err := s.buf.WriteTo(f); err != nil {
			return 0, err
		}
	}
	return s.f.Write(p)
}

// reader returns what was written, from the start.
func (s *spoolWriter) reader() (io.Reader, error) {
	if s.f == nil {
		return bytes.NewReader(s.buf.Bytes()), nil
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return s.f, err
}

func (s *spoolWriter) discard() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
}

// copyWithPrefix writes prefix then the rest of src to path.
func copyWithPrefix(path, prefix string, src *os.File) (int64, error) {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.MultiReader(strings.NewReader(prefix), src))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return n, err
}

// submit sends p to its recipients still pending, over the kept connection (smtpMu held).
func (c *Client) submit(ctx context.Context, p *prepared, opts *SendOptions) (*SendResult, error) {
	res := &SendResult{MessageID: p.rec.MessageID, EnvelopeID: p.rec.EnvelopeID}
	var todo []string
	for _, r := range p.rec.Recipients {
		if r.Status == StatusPending {
			todo = append(todo, r.Address)
			continue
		}
		res.Recipients = append(res.Recipients, RecipientResult{
			Address: r.Address, Accepted: r.Status != StatusFailed, AlreadySent: true, Code: r.Code, Text: r.Detail,
		})
	}
	if len(todo) == 0 {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	notify, err := opts.notify()
	if err != nil {
		return res, err
	}
	ret, err := opts.ret()
	if err != nil {
		return res, err
	}
	wantDSN := !(len(notify) == 1 && notify[0] == smtp.DSNNotifyNever)

	var rcptRes []RecipientResult
	for {
		var sc *smtpConn
		sc, err = c.smtpConnection(ctx)
		if err != nil {
			return res, err
		}
		if wantDSN && !sc.dsn {
			return res, fmt.Errorf("%w: %s", ErrNoDSN, c.opts.Submission.Addr)
		}
		if max, ok := sc.c.MaxMessageSize(); ok && max > 0 && p.size > int64(max) {
			return res, fmt.Errorf("%w: %d bytes, the server takes at most %d", ErrMessage, p.size, max)
		}
		reused := sc.used > 0
		rcptRes, err = sc.transaction(ctx, c.opts.Address, p, todo, notify, ret)
		if err != nil && reused && errors.Is(err, errStale) && ctx.Err() == nil {
			// The kept connection was closed by the server while idle: nothing of this
			// transaction reached it (no reply to MAIL), so it is run again on a new one.
			c.log.Info("bal: kept submission connection closed by the server, reconnecting", "server", c.opts.Submission.Addr)
			c.dropSMTP()
			continue
		}
		break
	}
	if err != nil {
		// The connection is no longer usable: the outcome of this transaction is unknown
		// for every recipient, which stay pending; a new Send of the same message retries.
		c.dropSMTP()
		return res, err
	}
	now := c.opts.Now().UTC()
	apply := func(r *Record) bool {
		for _, rr := range rcptRes {
			st := r.recipient(rr.Address)
			if st == nil || st.Status != StatusPending {
				continue
			}
			switch {
			case rr.Accepted:
				st.Status = StatusSubmitted
			case !rr.Temporary:
				st.Status = StatusFailed
			default:
				continue
			}
			st.Code, st.Detail, st.Updated = rr.Code, rr.Text, now
		}
		return true
	}
	// Journaled now, durable before Send returns (the caller syncs once the connection is
	// free for the next message): a retry after a crash finds the accepted recipients.
	c.box.mu.Lock()
	if p.fresh {
		apply(p.rec)
		p.seq, err = c.box.appendRecord(p.rec)
		p.fresh = err != nil
	} else {
		var r *Record
		if r, err = c.box.load(p.rec.EnvelopeID); err == nil {
			apply(r)
			p.seq, err = c.box.appendRecord(r)
		}
	}
	c.box.mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("bal: outbox: %w", err)
	}
	res.Recipients = append(res.Recipients, rcptRes...)
	accepted := false
	for _, r := range res.Recipients {
		accepted = accepted || r.Accepted
	}
	c.log.Info("bal: message submitted", "message_id", p.rec.MessageID, "recipients", len(todo))
	if !accepted {
		return res, ErrAllRejected
	}
	return res, nil
}

// smtpConn is a submission connection, authenticated, between transactions.
type smtpConn struct {
	raw net.Conn
	fc  *flushConn // what go-smtp talks through, in clear
	c   *smtp.Client
	dsn bool
	// used counts the transactions begun on this connection; clean is true when the last
	// one ended with a reply that closes the transaction (end of DATA, or RSET), so that
	// the next one can start with MAIL without a RSET round trip.
	used  int
	clean bool
}

// errStale is the failure of MAIL FROM without a reply (or with 421, the server closing):
// on a kept connection, the server closed it while idle.
var errStale = errors.New("bal: submission connection closed by the server")

func (s *smtpConn) close() { s.c.Close() }

// smtpConnection returns the kept connection (after a RSET unless its last transaction
// ended cleanly), or opens a new one. A failure to open is retried with backoff while ctx
// lasts, up to four attempts.
func (c *Client) smtpConnection(ctx context.Context) (*smtpConn, error) {
	if c.smtp != nil && c.smtp.clean {
		return c.smtp, nil
	}
	if c.smtp != nil {
		stop := watchCtx(ctx, c.smtp.raw)
		err := c.smtp.c.Reset()
		stop()
		if err == nil {
			return c.smtp, nil
		}
		c.dropSMTP()
	}
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			c.log.Warn("bal: submission connection failed, retrying", "server", c.opts.Submission.Addr, "err", err)
			if serr := sleep(ctx, c.backoff(attempt-1)); serr != nil {
				return nil, errors.Join(err, serr)
			}
		}
		var sc *smtpConn
		sc, err = c.openSMTP(ctx)
		if err == nil {
			c.smtp = sc
			return sc, nil
		}
		// Configuration, TLS trust and authentication failures do not heal by retrying.
		if errors.Is(err, ErrTLS) || errors.Is(err, ErrAuth) || errors.Is(err, ErrConfig) || errors.Is(err, ErrDiscovery) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

func (c *Client) dropSMTP() {
	if c.smtp != nil {
		c.smtp.close()
		c.smtp = nil
	}
}

func (c *Client) openSMTP(ctx context.Context) (*smtpConn, error) {
	if err := c.discoverSubmission(ctx); err != nil {
		return nil, err
	}
	ep := c.opts.Submission
	raw, cfg, err := c.dial(ctx, ep, protoSMTP)
	if err != nil {
		return nil, err
	}
	stop := watchCtx(ctx, raw)
	defer stop()
	_, dom, _ := splitAddress(c.opts.Address)
	fc := &flushConn{Conn: raw}
	if ep.Security != ImplicitTLS {
		clear, err := c.awaitGreeting(ctx, raw, ep, cfg, protoSMTP)
		if err != nil {
			raw.Close()
			return nil, err
		}
		tc, greeting, err := startTLS(ctx, clear, cfg, dom)
		if err != nil {
			raw.Close()
			return nil, tlsError(fmt.Errorf("bal: STARTTLS with %s: %w", ep.Addr, err))
		}
		fc = &flushConn{Conn: tc, greeting: greeting}
	}
	fc.w = bufio.NewWriterSize(fc.Conn, 64<<10)
	sc := smtp.NewClient(fc)
	if err := sc.Hello(dom); err != nil {
		sc.Close()
		return nil, tlsError(fmt.Errorf("bal: EHLO %s: %w", ep.Addr, err))
	}
	if mech := c.auth(ep); mech != AuthNone {
		if !sc.SupportsAuth(string(mech)) {
			sc.Close()
			return nil, fmt.Errorf("%w: %s does not offer AUTH %s", ErrAuth, ep.Addr, mech)
		}
		a, err := c.saslClient(ctx, mech)
		if err != nil {
			sc.Close()
			return nil, err
		}
		if err := sc.Auth(a); err != nil {
			sc.Close()
			return nil, fmt.Errorf("%w: %s: %w", ErrAuth, ep.Addr, err)
		}
	}
	dsn, _ := sc.Extension("DSN")
	return &smtpConn{raw: raw, fc: fc, c: sc, dsn: dsn}, nil
}

// flushConn is the connection go-smtp talks through, above TLS. It gathers writes in a 64
// KiB buffer sent before each read: go-smtp writes through a 4 KiB buffer, which on TLS made
// a 4 KiB record and a system call each (a 100 KB message: 25 of each, against 7 and 2
// here). The protocol is request-reply, so whatever is written is followed by a read of the
// reply, which sends it. Close does not send what is left: it is only left by an abandoned
// transaction, and Close may be called from another goroutine (watchCtx). With STARTTLS,
// greeting stands for the server's greeting, which startTLS read in clear: go-smtp reads a
// 220 before its first command and cannot start past it (TestGoSMTPClientWaitsForGreeting),
// so it is given this line as its first read and goes on with EHLO inside TLS, as RFC 3207
// §4.2 wants.
type flushConn struct {
	net.Conn
	w        *bufio.Writer
	greeting []byte
}

func (f *flushConn) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f *flushConn) Read(p []byte) (int, error) {
	if len(f.greeting) > 0 {
		n := copy(p, f.greeting)
		f.greeting = f.greeting[n:]
		return n, nil
	}
	if err := f.w.Flush(); err != nil {
		return 0, err
	}
	return f.Conn.Read(p)
}

// startTLS runs the clear-text start of a submission session (RFC 3207): greeting, EHLO,
// STARTTLS, then the TLS handshake, and returns the TLS connection and a greeting line for
// go-smtp (flushConn). It is done here rather than by go-smtp, whose STARTTLS keeps the TLS
// connection to itself (TestGoSMTPStartTLSKeepsTheTLSConn), so that the TLS connection is
// ours: the message is written to it directly (dotStuffer). The server may say at most 64
// KiB in clear; a byte sent after its 220 to STARTTLS is refused, since it would be read as
// if it came through TLS (command injection, CVE-2011-0411).
func startTLS(ctx context.Context, raw net.Conn, cfg *tls.Config, name string) (*tls.Conn, []byte, error) {
	br := bufio.NewReader(io.LimitReader(raw, 64<<10))
	r := nettextproto.NewReader(br)
	if _, _, err := r.ReadResponse(220); err != nil {
		return nil, nil, err
	}
	if _, err := fmt.Fprintf(raw, "EHLO %s\r\n", name); err != nil {
		return nil, nil, err
	}
	_, ehlo, err := r.ReadResponse(250)
	if err != nil {
		return nil, nil, err
	}
	offered := false
	for _, l := range strings.Split(ehlo, "\n")[1:] {
		offered = offered || strings.EqualFold(strings.TrimSpace(l), "STARTTLS")
	}
	if !offered {
		return nil, nil, fmt.Errorf("%w: the server does not offer STARTTLS", ErrTLS)
	}
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return nil, nil, err
	}
	if _, _, err := r.ReadResponse(220); err != nil {
		return nil, nil, err
	}
	if br.Buffered() > 0 {
		return nil, nil, fmt.Errorf("%w: the server sent data in clear after its reply to STARTTLS", ErrTLS)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, err
	}
	return tc, []byte("220 STARTTLS done\r\n"), nil
}

// transaction runs MAIL, RCPT for each recipient, DATA. It returns an error only when the
// connection failed or the server refused MAIL or DATA for every recipient at once.
func (s *smtpConn) transaction(ctx context.Context, from string, p *prepared, rcpts []string, notify []smtp.DSNNotify, ret smtp.DSNReturn) ([]RecipientResult, error) {
	stop := watchCtx(ctx, s.raw)
	defer stop()
	fail := func(err error) ([]RecipientResult, error) {
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		return nil, err
	}
	mo := &smtp.MailOptions{Size: p.size}
	if s.dsn {
		mo.Return, mo.EnvelopeID = ret, p.rec.EnvelopeID
	}
	s.used++
	s.clean = false
	if err := s.c.Mail(from, mo); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code == 421 {
			err = fmt.Errorf("%w: %w", errStale, err)
		}
		return fail(fmt.Errorf("bal: MAIL FROM: %w", err))
	}
	var results []RecipientResult
	accepted := 0
	for _, r := range rcpts {
		ro := &smtp.RcptOptions{Notify: notify}
		if s.dsn && isPrintableASCII(r) {
			ro.OriginalRecipientType, ro.OriginalRecipient = smtp.DSNAddressTypeRFC822, r
		}
		rr := RecipientResult{Address: r}
		if err := s.c.Rcpt(r, ro); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return fail(fmt.Errorf("bal: RCPT TO: %w", err))
			}
			rr.Code, rr.Text, rr.Temporary = se.Code, se.Message, se.Temporary()
		} else {
			rr.Accepted, rr.Code = true, 250
			accepted++
		}
		results = append(results, rr)
	}
	if accepted == 0 {
		if err := s.c.Reset(); err != nil {
			return fail(err)
		}
		s.clean = true
		return results, nil
	}
	var body io.Reader = bytes.NewReader(p.data)
	if p.file != "" {
		f, err := os.Open(p.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		body = bufio.NewReaderSize(f, 64<<10)
	}
	w, err := s.c.Data()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return refuseAll(results, se), nil
		}
		return fail(fmt.Errorf("bal: DATA: %w", err))
	}
	// The message goes to the connection through dotStuffer rather than through w, which
	// does the same a byte at a time (most of the client's CPU for a large message); w,
	// untouched, then ends it with CRLF "." CRLF and reads the reply.
	ds := &dotStuffer{w: s.fc.w}
	if _, err := io.Copy(ds, body); err != nil {
		return fail(fmt.Errorf("bal: DATA: %w", err))
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// The server answered: the transaction is over, the connection still usable.
			s.clean = true
			return refuseAll(results, se), nil
		}
		return fail(fmt.Errorf("bal: end of DATA: %w", err))
	}
	s.clean = true
	for i := range results {
		if results[i].Accepted {
			results[i].Text = resp.StatusText
		}
	}
	return results, nil
}

// dotStuffer writes the content of DATA (RFC 5321 §4.5.2) exactly as net/textproto's
// DotWriter, which go-smtp uses, does: a dot at the start of a line doubled, a bare LF sent
// as CRLF, a CR followed by anything but LF kept as it is. It copies whole runs of bytes
// between line breaks instead of going a byte at a time. The last line break is held back:
// the end marker that go-smtp's DotWriter writes when nothing went through it, CRLF "."
// CRLF, supplies it (FuzzDotStuffer checks the sum against DotWriter).
type dotStuffer struct {
	w     io.Writer
	state int    // as DotWriter's: dsBegin, dsBeginLine, dsCR, dsData
	held  string // the line break not yet written: "", "\r" or "\r\n"
}

const (
	dsBegin = iota
	dsBeginLine
	dsCR
	dsData
)

// emit writes the held line break, then b.
func (d *dotStuffer) emit(b []byte) error {
	if d.held != "" {
		if _, err := io.WriteString(d.w, d.held); err != nil {
			return err
		}
		d.held = ""
	}
	_, err := d.w.Write(b)
	return err
}

func (d *dotStuffer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		switch d.state {
		case dsCR:
			d.state = dsData
			if b[0] == '\n' {
				d.held, d.state = "\r\n", dsBeginLine
				b = b[1:]
				continue
			}
			// A bare CR: the byte after it is data, whatever it is.
			if err := d.emit(b[:1]); err != nil {
				return 0, err
			}
			b = b[1:]
			continue
		case dsBegin, dsBeginLine:
			d.state = dsData
			if b[0] == '.' {
				if err := d.emit([]byte{'.'}); err != nil {
					return 0, err
				}
			}
		}
		i := lineBreak(b)
		if i > 0 {
			if err := d.emit(b[:i]); err != nil {
				return 0, err
			}
		}
		if i == len(b) {
			break
		}
		if d.held != "" { // a line break right after another: write the first
			if err := d.emit(nil); err != nil {
				return 0, err
			}
		}
		if b[i] == '\r' {
			d.held, d.state = "\r", dsCR
		} else {
			d.held, d.state = "\r\n", dsBeginLine
		}
		b = b[i+1:]
	}
	return n, nil
}

// lineBreak is the index of the first CR or LF in b, else len(b) (two vectorised scans
// instead of bytes.IndexAny's byte loop).
func lineBreak(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		i = len(b)
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// refuseAll turns every accepted recipient into one refused by a reply to DATA.
func refuseAll(results []RecipientResult, se *smtp.SMTPError) []RecipientResult {
	for i := range results {
		if results[i].Accepted {
			results[i] = RecipientResult{Address: results[i].Address, Code: se.Code, Text: se.Message, Temporary: se.Temporary()}
		}
	}
	return results
}

func isPrintableASCII(s string) bool {
	for _, r := range s {
		if r < '!' || r > '~' {
			return false
		}
	}
	return true
}

// limitWriter fails once more than n bytes were written.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("%w: larger than MaxMessageSize", ErrMessage)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
