package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/transport/webhook"
)

// Submitter is the node's submission server (*connector.Server in ModeSubmission).
type Submitter interface {
	Submit(ctx context.Context, sub *connector.Submission) (*connector.SubmitResult, error)
}

// ConnectorOptions configure NewConnectorSender.
type ConnectorOptions struct {
	// Submitter is the node's submission server (required).
	Submitter Submitter
	// Serves reports whether an address is a BAL of the node (required): the store's
	// registry, or the configuration's BALs.
	Serves func(addr string) bool
	// StateDir holds the records of the messages sent (required; files 0600).
	StateDir string
	// NIL is the X-MSS-NIL put in the messages composed from JSON (Réf. #2 ECO.2.4.3);
	// default "mssante-go".
	NIL string
	// MaxMessageSize bounds a composed message; default mssante.DefaultMaxSize.
	MaxMessageSize int64
	// Webhooks, when set, receives delivered, delayed and failed events from OnResult.
	Webhooks *webhook.Dispatcher
	// Logger receives operational events (IDs and BAL addresses, never content).
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ConnectorSender is the Sender of a node: the message goes through the node's submission
// server (connector.Server.Submit), authenticated again by the caller's certificate or token,
// with every check of SMTP submission; its recipients' status is the queue's (OnResult).
type ConnectorSender struct {
	o   ConnectorOptions
	dir string
	log *slog.Logger
	mu  sync.Mutex // records
}

// NewConnectorSender checks opts and returns the Sender.
func NewConnectorSender(opts *ConnectorOptions) (*ConnectorSender, error) {
	if opts == nil || opts.Submitter == nil || opts.Serves == nil || opts.StateDir == "" {
		return nil, fmt.Errorf("%w: Submitter, Serves and StateDir are required", ErrConfig)
	}
	o := *opts
	if o.NIL == "" {
		o.NIL = "mssante-go"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &ConnectorSender{o: o, dir: filepath.Join(o.StateDir, "sent"), log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	return s, nil
}

// Serves implements Sender.
func (s *ConnectorSender) Serves(addr string) bool { return s.o.Serves(addr) }

// Send implements Sender.
func (s *ConnectorSender) Send(ctx context.Context, c *Caller, from string, msg *mssante.Message, opts *bal.SendOptions) (*bal.SendResult, error) {
	if msg.MessageID == "" {
		msg.MessageID = newMessageID(msg.From.Domain())
	}
	if msg.NIL == "" {
		msg.NIL = s.o.NIL
	}
	if msg.Date.IsZero() {
		msg.Date = s.o.Now()
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf, &mssante.ComposeOptions{Now: s.o.Now, MaxSize: s.o.MaxMessageSize}); err != nil {
		return nil, fmt.Errorf("%w: %w", bal.ErrMessage, err)
	}
	return s.SendRaw(ctx, c, from, &buf, opts)
}

// SendRaw implements Sender. The recipients are those of To and Cc (or opts.Recipients);
// a message without Message-ID is refused, since its status could not be followed.
func (s *ConnectorSender) SendRaw(ctx context.Context, c *Caller, from string, r io.Reader, opts *bal.SendOptions) (*bal.SendResult, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	th, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", bal.ErrMessage, err)
	}
	hdr := mail.Header{Header: message.Header{Header: th}}
	id, err := hdr.MessageID()
	if err != nil || id == "" {
		return nil, fmt.Errorf("%w: no Message-ID", bal.ErrMessage)
	}
	if opts == nil {
		opts = &bal.SendOptions{}
	}
	rcpts := opts.Recipients
	if len(rcpts) == 0 {
		for _, k := range []string{"To", "Cc"} {
			list, err := hdr.AddressList(k)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", bal.ErrMessage, k, err)
			}
			for _, a := range list {
				rcpts = append(rcpts, strings.ToLower(a.Address))
			}
		}
	}
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("%w: no recipient", bal.ErrMessage)
	}
	envid := envelopeID(from, id)
	res := &bal.SendResult{MessageID: id, EnvelopeID: envid}

	// A message sent again (the same Idempotency-Key after a crash) goes only to the
	// recipients not yet accepted.
	s.mu.Lock()
	rec, err := s.load(envid)
	if err == nil && rec == nil {
		rec = &bal.Record{MessageID: id, EnvelopeID: envid, MDNRequested: hdr.Has("Disposition-Notification-To"), Created: s.o.Now().UTC()}
		for _, a := range rcpts {
			rec.Recipients = append(rec.Recipients, bal.RecipientState{Address: a, Status: bal.StatusPending, Updated: rec.Created})
		}
		// Not fsynced: a record of recipients still pending adds nothing after a crash (the
		// message is submitted again either way); the one written after submission is.
		err = s.save(rec, false)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var todo []string
	for _, a := range rcpts {
		st := recipientOf(rec, a)
		if st != nil && st.Status != bal.StatusPending {
			res.Recipients = append(res.Recipients, bal.RecipientResult{Address: a, Accepted: true, AlreadySent: true, Code: 250})
			continue
		}
		todo = append(todo, a)
	}
	if len(todo) == 0 {
		return res, nil
	}
	sub := &connector.Submission{TLS: c.tls, Token: c.Token, PeerAddr: c.addr, From: from, To: todo,
		Ret: string(opts.Return), EnvID: envid, Message: bytes.NewReader(data)}
	for _, n := range opts.Notify {
		sub.Notify = append(sub.Notify, string(n))
	}
	sr, err := s.o.Submitter.Submit(ctx, sub)
	if err != nil {
		var se *connector.SubmitError
		if errors.As(err, &se) && !se.Temporary() {
			return nil, fmt.Errorf("%w: %w", bal.ErrMessage, err)
		}
		return nil, err
	}
	accepted := 0
	now := s.o.Now().UTC()
	s.mu.Lock()
	rec, err = s.load(envid)
	for _, sr := range sr.Recipients {
		rr := bal.RecipientResult{Address: sr.Address, Accepted: sr.Accepted, Code: sr.Code, Text: sr.Text, Temporary: sr.Temporary()}
		res.Recipients = append(res.Recipients, rr)
		st := recipientOf(rec, sr.Address)
		if st == nil || st.Status != bal.StatusPending {
			continue // a result of the queue came first
		}
		switch {
		case sr.Accepted:
			accepted++
			st.Status, st.Code, st.Updated = bal.StatusSubmitted, sr.Code, now
		case !rr.Temporary:
			st.Status, st.Code, st.Detail, st.Updated = bal.StatusFailed, sr.Code, sr.Text, now
		}
	}
	if err == nil && rec != nil {
		err = s.save(rec, true)
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Error("httpapi: recording a sent message", "bal", from, "message_id", id, "err", err)
	}
	if accepted == 0 && len(res.Recipients) == len(todo) && !anyAlready(res) {
		return res, fmt.Errorf("%w", bal.ErrAllRejected)
	}
	return res, nil
}

func anyAlready(res *bal.SendResult) bool {
	for _, r := range res.Recipients {
		if r.Accepted {
			return true
		}
	}
	return false
}

// Status implements Sender.
func (s *ConnectorSender) Status(_ context.Context, from, id string) (*bal.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.load(envelopeID(from, id))
	if err == nil && rec == nil {
		err = fs.ErrNotExist
	}
	return rec, err
}

// OnResult records the queue's result for a recipient of a message sent here, and publishes
// its event; it has the signature of queue.RunOptions.OnResult.
func (s *ConnectorSender) OnResult(env *queue.Envelope, r *queue.Recipient, res queue.Result) {
	if env.EnvID == "" || env.From == "" || !s.o.Serves(strings.ToLower(env.From)) {
		return
	}
	from := strings.ToLower(env.From)
	st := bal.StatusDelayed
	switch r.State {
	case queue.Delivered:
		st = bal.StatusDelivered
	case queue.Failed:
		st = bal.StatusFailed
	}
	s.mu.Lock()
	rec, err := s.load(env.EnvID)
	var rs *bal.RecipientState
	if err == nil && rec != nil {
		rs = recipientOf(rec, r.Addr)
		if rs != nil && statusRank(st) > statusRank(rs.Status) {
			rs.Status, rs.Detail, rs.Updated = st, r.LastStatus, s.o.Now().UTC()
			err = s.save(rec, true)
		} else {
			rs = nil
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Error("httpapi: recording a queue result", "bal", from, "err", err)
	}
	if rs == nil || s.o.Webhooks == nil {
		return
	}
	typ := receiptEvent(st)
	e := webhook.Event{ID: eventID(from, typ, rec.MessageID, r.Addr, r.LastStatus), Type: typ, BAL: from,
		MessageID: rec.MessageID, Recipient: r.Addr, Status: string(st), Detail: r.LastStatus}
	if err := s.o.Webhooks.Publish(context.Background(), e); err != nil {
		s.log.Error("httpapi: webhook event not persisted", "bal", from, "message_id", rec.MessageID, "type", typ, "err", err)
	}
}

// statusRank orders the statuses the queue reports: a result never moves a recipient back.
func statusRank(s bal.Status) int {
	switch s {
	case bal.StatusPending:
		return 0
	case bal.StatusSubmitted:
		return 1
	case bal.StatusDelayed:
		return 2
	case bal.StatusDelivered:
		return 3
	}
	return 4
}

func recipientOf(rec *bal.Record, addr string) *bal.RecipientState {
	if rec == nil {
		return nil
	}
	for i := range rec.Recipients {
		if strings.EqualFold(rec.Recipients[i].Address, addr) {
			return &rec.Recipients[i]
		}
	}
	return nil
}

// envelopeID is the ENVID of a message of from (RFC 3461 §4.4: xtext), also its record's name.
func envelopeID(from, messageID string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(from) + "\n" + strings.Trim(messageID, "<>")))
	return hex.EncodeToString(sum[:20])
}

func (s *ConnectorSender) load(envid string) (*bal.Record, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, envid+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	var rec bal.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("httpapi: sent message record: %w", err)
	}
	return &rec, nil
}

func (s *ConnectorSender) save(rec *bal.Record, durable bool) error {
	rec.Version++
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFile(s.dir, filepath.Join(s.dir, rec.EnvelopeID+".json"), b, durable)
}

// writeFile replaces path (in dir) with b through a temporary file and a rename, so that a
// reader sees the old record or the new one; durable fsyncs the file and dir first.
func writeFile(dir, path string, b []byte, durable bool) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("httpapi: %w", err)
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	return nil
}

// applyReport records in the message's record what a DSN, MDN or error mail received by addr
// says, and publishes the events of the changes; mine is false when the API did not send the
// reported message (no record): the report is another reader's.
func (s *ConnectorSender) applyReport(ctx context.Context, addr string, rep *bal.Report) (mine bool, err error) {
	envid := rep.EnvelopeID
	if !isEnvelopeID(envid) {
		if rep.MessageID == "" {
			return false, nil
		}
		envid = envelopeID(addr, rep.MessageID)
	}
	s.mu.Lock()
	rec, err := s.load(envid)
	var out []bal.Receipt
	if err == nil && rec != nil {
		if out = rec.Apply(rep.Changes, s.o.Now().UTC()); len(out) > 0 {
			err = s.save(rec, true)
		}
	}
	s.mu.Unlock()
	if err != nil || rec == nil {
		return false, err
	}
	for _, r := range out {
		typ := receiptEvent(r.Status)
		if typ == "" || s.o.Webhooks == nil {
			continue
		}
		e := webhook.Event{ID: eventID(addr, typ, rec.MessageID, r.Recipient, r.Detail), Type: typ, BAL: addr,
			MessageID: rec.MessageID, Recipient: r.Recipient, Status: string(r.Status), SMTPCode: r.SMTPCode,
			MDNCode: int(r.MDNCode), Detail: r.Detail}
		if err := s.o.Webhooks.Publish(ctx, e); err != nil {
			s.log.Error("httpapi: webhook event not persisted", "bal", addr, "message_id", rec.MessageID, "type", typ, "err", err)
		}
	}
	return true, nil
}

// isEnvelopeID reports whether s is an envelope ID envelopeID makes (40 hex digits), a name
// that cannot leave the records' folder.
func isEnvelopeID(s string) bool {
	if len(s) != 40 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
