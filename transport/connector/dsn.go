package connector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport/queue"
)

// DSNNotifier is the queue.Notifier of the connector: it builds an RFC 3464 delivery status
// notification (mssante.BuildDSN: multipart/report; report-type=delivery-status, RFC 6522) for
// the sender and enqueues it with a null reverse path, so that it is delivered like any other
// message (and never answered by another DSN).
type DSNNotifier struct {
	// Queue receives the DSN (required).
	Queue queue.Spool
	// Hostname is the Reporting-MTA and the domain of MAILER-DAEMON (default "localhost").
	Hostname string
	// MaxReturnBytes bounds the returned original message with RET=FULL (default 256 KiB;
	// beyond it only the header is returned).
	MaxReturnBytes int64
	// GiveUp is the queue's give-up delay, for the Will-Retry-Until of delay notices
	// (default 5 days, the queue's default).
	GiveUp time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var actions = map[queue.NoticeKind]mssante.DSNAction{queue.NoticeDelivered: mssante.ActionDelivered,
	queue.NoticeFailed: mssante.ActionFailed, queue.NoticeDelayed: mssante.ActionDelayed, queue.NoticeRelayed: mssante.ActionRelayed}

// Notify implements queue.Notifier.
func (n *DSNNotifier) Notify(ctx context.Context, env *queue.Envelope, kind queue.NoticeKind, rcpts []*queue.Recipient) error {
	if env.From == "" {
		return nil // RFC 3461 §6.2: never a DSN about a DSN
	}
	msg, err := n.build(env, kind, rcpts)
	if err != nil {
		return err
	}
	// The key makes the notice idempotent: a queue that raises it again (a node that died
	// after enqueuing it and before recording so, or another node taking the message over)
	// finds the first copy, and the sender gets one DSN.
	key := "dsn\x00" + env.ID + "\x00" + string(kind)
	for _, r := range rcpts {
		key += "\x00" + r.Addr
	}
	_, err = n.Queue.Enqueue(ctx, &queue.Envelope{From: "", Source: "dsn", RedeliveryKey: key,
		Rcpts: []*queue.Recipient{{Addr: env.From}}}, bytes.NewReader(msg))
	if errors.Is(err, queue.ErrRedelivered) {
		return nil
	}
	return err
}

func (n *DSNNotifier) build(env *queue.Envelope, kind queue.NoticeKind, rcpts []*queue.Recipient) ([]byte, error) {
	host := n.Hostname
	if host == "" {
		host = "localhost"
	}
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	d := &mssante.DSN{ReportingMTA: host, OriginalEnvelopeID: oneLine(env.EnvID), ArrivalDate: env.Received}
	for _, r := range rcpts {
		st := statusOf(r.LastStatus, kind)
		if kind == queue.NoticeFailed && st[0] != '5' {
			st = "5" + st[1:] // a final failure is a permanent status (RFC 3463 §3.1)
		}
		dr := mssante.DSNRecipient{FinalRecipient: r.Addr, Action: actions[kind], Status: st,
			RemoteMTA: oneLine(r.RemoteMTA), LastAttemptDate: now()}
		if _, a, ok := strings.Cut(r.ORCPT, ";"); ok {
			dr.OriginalRecipient = oneLine(a)
		}
		if r.LastStatus != "" && (kind == queue.NoticeFailed || kind == queue.NoticeDelayed) {
			dr.DiagnosticCode = "smtp; " + oneLine(r.LastStatus)
		}
		if kind == queue.NoticeDelayed {
			giveUp := n.GiveUp
			if giveUp <= 0 {
				giveUp = 5 * 24 * time.Hour
			}
			dr.WillRetryUntil = env.Received.Add(giveUp)
		}
		d.Recipients = append(d.Recipients, dr)
	}
	// The original: its header (RET=HDRS or unspecified), or the whole message if asked and
	// small enough.
	f, err := n.Queue.OpenMessage(env.ID)
	if err != nil {
		return nil, fmt.Errorf("connector: dsn: %w", err)
	}
	defer f.Close()
	max := n.MaxReturnBytes
	if max <= 0 {
		max = 256 << 10
	}
	var orig bytes.Buffer
	full := strings.EqualFold(env.Ret, "FULL") && env.Size <= max
	if full {
		io.Copy(&orig, io.LimitReader(f, max))
	} else {
		br := bufio.NewReader(io.LimitReader(f, 256<<10))
		for {
			line, err := br.ReadString('\n')
			orig.WriteString(line)
			if err != nil || line == "\r\n" {
				break
			}
		}
	}
	var b bytes.Buffer
	_, err = mssante.BuildDSN(&b, &mssante.DSNEnvelope{
		From: mssante.Address{Name: "Mail Delivery System", Addr: "MAILER-DAEMON@" + host},
		To:   mssante.Address{Addr: env.From}, Date: now(), Original: orig.Bytes(), HeadersOnly: !full,
	}, d, &mssante.ComposeOptions{Now: now, MaxSize: -1})
	if err != nil {
		return nil, fmt.Errorf("connector: dsn: %w", err)
	}
	return b.Bytes(), nil
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
	if len(s) > 400 {
		s = s[:400]
	}
	return s
}

// statusOf extracts the enhanced status code from a reply, or a default for the kind.
func statusOf(reply string, kind queue.NoticeKind) string {
	for _, f := range strings.Fields(reply) {
		if len(f) >= 5 && (f[0] == '2' || f[0] == '4' || f[0] == '5') && f[1] == '.' && strings.Count(f, ".") == 2 {
			return strings.TrimRight(f, ":;,")
		}
	}
	switch kind {
	case queue.NoticeDelivered:
		return "2.0.0"
	case queue.NoticeDelayed:
		return "4.0.0"
	}
	return "5.0.0"
}
