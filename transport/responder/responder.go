// Package responder is the connector's test responder: a BAL that answers every message it
// receives with an automatic reply, so a structure can run the emission/reception test
// against its own connector. "mssante selftest" expects the one of the trust space at
// reponse.automatique@test.mssante.fr; the public ANS texts do not document that address or
// its reply, so the address is Options.Address, and the reply is the one RFC 3834 defines.
//
// It follows RFC 3834 (Recommendations for Automatic Responses to Electronic Mail): the reply
// carries "Auto-Submitted: auto-replied", In-Reply-To and References, goes to the envelope
// sender with a null envelope sender of its own, and is never sent to an automatic message
// (Auto-Submitted other than "no", a delivery or disposition report, a list or bulk message, a
// mailer-daemon), to a null sender, or to the responder itself: no loop is possible. Each
// received message is answered once: it is stored in the responder's BAL with its delivery ID
// and flagged \Answered after the reply is handed to the queue, so the retry of a delivery
// does not answer twice.
//
// Start with [New]: a [Responder] is a connector.LocalDelivery that answers the mail to its
// own address and passes every other delivery to Options.Next; set it as the Local of the
// connector's servers and delivery, with Options.Send putting replies on the queue.
package responder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// SendFunc submits the automatic reply for delivery: from is the envelope sender ("" for the
// null sender the responder uses), to the single recipient. Typically a queue.Enqueue.
type SendFunc func(ctx context.Context, from, to string, msg []byte) error

// Store is the part of a mailbox store the responder uses: it checks its BAL exists, keeps
// each message it receives in that BAL's INBOX, reads it back to build the reply, and flags
// it once handled so that a retried delivery is not answered twice. Every mailbox.Store
// satisfies it; the methods behave as documented there.
type Store interface {
	GetBAL(ctx context.Context, address string) (*mailbox.BAL, error)
	Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *mailbox.AppendOptions) (*mailbox.AppendResult, error)
	Messages(ctx context.Context, mbox mailbox.MailboxID, sinceModSeq uint64) ([]mailbox.Message, error)
	Open(ctx context.Context, mbox mailbox.MailboxID, uid uint32) (io.ReadSeekCloser, int64, error)
	StoreFlags(ctx context.Context, mbox mailbox.MailboxID, uids []uint32, op mailbox.FlagOp, flags []string) ([]mailbox.Message, error)
}

var _ Store = mailbox.Store(nil)

// Options configures a Responder. Address, Store and Send are required.
type Options struct {
	// Address is the responder's BAL; it must exist in Store.
	Address string
	// Store keeps the messages the responder received (its BAL's INBOX). A mailbox.Store
	// satisfies it.
	Store Store
	// Send hands replies to the outbound queue.
	Send SendFunc
	// Next receives the deliveries for every other address (the connector's LocalDelivery).
	Next connector.LocalDelivery
	// Hostname is used in the Message-ID of replies; "" uses the responder's domain.
	Hostname string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per decision (message identifiers only); nil discards.
	Logger *slog.Logger
}

// Responder is a connector.LocalDelivery that answers the messages for its address and
// passes the others to Options.Next.
type Responder struct {
	opts Options
	addr string
}

var _ connector.LocalDelivery = (*Responder)(nil)

// ErrNotDue is the reason a message got no reply; test with errors.Is on the result of Reply.
var ErrNotDue = errors.New("responder: no automatic reply due")

// New returns a Responder.
func New(opts *Options) (*Responder, error) {
	if opts == nil || opts.Address == "" || opts.Store == nil || opts.Send == nil {
		return nil, errors.New("responder: Address, Store and Send are required")
	}
	r := &Responder{opts: *opts, addr: strings.ToLower(strings.TrimSpace(opts.Address))}
	if _, err := opts.Store.GetBAL(context.Background(), r.addr); err != nil {
		return nil, fmt.Errorf("responder: BAL %s: %w", r.addr, err)
	}
	return r, nil
}

func (r *Responder) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

func (r *Responder) logger() *slog.Logger {
	if r.opts.Logger != nil {
		return r.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Lookup implements connector.LocalDelivery.
func (r *Responder) Lookup(ctx context.Context, addr string) error {
	if strings.EqualFold(strings.TrimSpace(addr), r.addr) {
		return nil
	}
	if r.opts.Next == nil {
		return connector.ErrNoMailbox
	}
	return r.opts.Next.Lookup(ctx, addr)
}

// Deliver implements connector.LocalDelivery: a message for the responder is stored, then
// answered once when a reply is due.
func (r *Responder) Deliver(ctx context.Context, addr, deliveryID string, msg io.Reader) error {
	if !strings.EqualFold(strings.TrimSpace(addr), r.addr) {
		if r.opts.Next == nil {
			return connector.ErrNoMailbox
		}
		return r.opts.Next.Deliver(ctx, addr, deliveryID, msg)
	}
	res, err := r.opts.Store.Append(ctx, r.addr, mailbox.Inbox, msg, &mailbox.AppendOptions{DeliveryID: deliveryID})
	if err != nil {
		return err
	}
	if res.Duplicate {
		ms, err := r.opts.Store.Messages(ctx, res.Mailbox, 0)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.UID == res.UID && (m.HasFlag(`\Answered`) || m.HasFlag(flagNoReply)) {
				return nil // handled before the crash that made the queue retry
			}
		}
	}
	f, _, err := r.opts.Store.Open(ctx, res.Mailbox, res.UID)
	if err != nil {
		return err
	}
	reply, to, err := r.Reply(f)
	f.Close()
	flag := `\Answered`
	switch {
	case errors.Is(err, ErrNotDue):
		r.logger().Info("responder: no reply", "delivery", deliveryID, "reason", err.Error())
		flag = flagNoReply
	case err != nil:
		return err
	default:
		if err := r.opts.Send(ctx, "", to, reply); err != nil {
			return fmt.Errorf("responder: send reply: %w", err)
		}
		r.logger().Info("responder: replied", "delivery", deliveryID)
	}
	_, err = r.opts.Store.StoreFlags(ctx, res.Mailbox, []uint32{res.UID}, mailbox.FlagsAdd, []string{flag})
	return err
}

// flagNoReply marks a message the responder decided not to answer.
const flagNoReply = "$AutoReplySkipped"

// maxHeader bounds the header the responder reads.
const maxHeader = 256 << 10

// Reply reads a received message and returns the automatic reply and its recipient, or an
// error wrapping ErrNotDue when none must be sent (RFC 3834 §2).
func (r *Responder) Reply(msg io.Reader) ([]byte, string, error) {
	br := bufio.NewReader(io.LimitReader(msg, maxHeader))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, "", fmt.Errorf("%w: unreadable header", ErrNotDue)
	}
	to, err := r.recipient(h)
	if err != nil {
		return nil, "", err
	}
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		return nil, "", fmt.Errorf("%w: Auto-Submitted message", ErrNotDue)
	}
	ct := strings.ToLower(h.Get("Content-Type"))
	if strings.HasPrefix(strings.TrimSpace(ct), "multipart/report") || strings.Contains(ct, "delivery-status") || strings.Contains(ct, "disposition-notification") {
		return nil, "", fmt.Errorf("%w: delivery or disposition report", ErrNotDue)
	}
	if p := strings.ToLower(strings.TrimSpace(h.Get("Precedence"))); p == "bulk" || p == "junk" || p == "list" {
		return nil, "", fmt.Errorf("%w: Precedence %s", ErrNotDue, p)
	}
	if h.Has("List-Id") || h.Has("List-Post") || h.Has("List-Unsubscribe") {
		return nil, "", fmt.Errorf("%w: list message", ErrNotDue)
	}
	if h.Has("X-Auto-Response-Suppress") || h.Has("X-MSS-Auto-Reply-Suppress") {
		return nil, "", fmt.Errorf("%w: auto-response suppressed", ErrNotDue)
	}
	return r.compose(h, to), to, nil
}

// recipient returns where the reply goes: the envelope sender as the Return-Path header
// carries it (RFC 3834 §4), or From when the message has no Return-Path.
func (r *Responder) recipient(h textproto.Header) (string, error) {
	src := h.Get("Return-Path")
	if src == "" {
		src = h.Get("From")
	}
	src = strings.TrimSpace(src)
	if src == "" || src == "<>" {
		return "", fmt.Errorf("%w: null sender", ErrNotDue)
	}
	a, err := mail.ParseAddress(src)
	if err != nil {
		return "", fmt.Errorf("%w: sender address does not parse", ErrNotDue)
	}
	to := strings.ToLower(a.Address)
	if to == r.addr {
		return "", fmt.Errorf("%w: message from the responder itself", ErrNotDue)
	}
	local, _, _ := strings.Cut(to, "@")
	switch {
	case local == "mailer-daemon", local == "postmaster", local == "listserv", local == "majordomo",
		strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"), strings.HasPrefix(local, "bounce"):
		return "", fmt.Errorf("%w: sender is an automatic address", ErrNotDue)
	}
	return a.Address, nil
}

func (r *Responder) compose(h textproto.Header, to string) []byte {
	now := r.now()
	host := r.opts.Hostname
	if host == "" {
		_, host, _ = strings.Cut(r.addr, "@")
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	subject := h.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	subject = strings.Join(strings.Fields(subject), " ")
	var b bytes.Buffer
	w := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	w("From", "<"+r.addr+">")
	w("To", "<"+to+">")
	w("Subject", mime.QEncoding.Encode("utf-8", "Auto: "+subject))
	w("Date", now.Format(time.RFC1123Z))
	w("Message-ID", "<auto."+hex.EncodeToString(rnd[:])+"@"+host+">")
	if id := strings.TrimSpace(h.Get("Message-Id")); id != "" && !strings.ContainsAny(id, "\r\n") {
		w("In-Reply-To", id)
		refs := strings.Join(strings.Fields(h.Get("References")), " ")
		if refs != "" {
			refs += " "
		}
		w("References", refs+id)
	}
	w("Auto-Submitted", "auto-replied")
	w("MIME-Version", "1.0")
	w("Content-Type", "text/plain; charset=utf-8")
	w("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "Ceci est une réponse automatique de %s.\r\n", r.addr)
	fmt.Fprintf(&b, "Votre message a bien été reçu le %s.\r\n", now.UTC().Format("02/01/2006 à 15:04:05 UTC"))
	b.WriteString("\r\nThis is an automatic reply: your message was received.\r\n")
	return b.Bytes()
}
