package connector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mssante-go/sdk/transport/queue"
)

// DSNNotifier is the queue.Notifier of the connector: it builds an RFC 3464 delivery status
// notification (multipart/report; report-type=delivery-status, RFC 6522) for the sender and
// enqueues it with a null reverse path, so that it is delivered like any other message (and
// never answered by another DSN).
//
// TODO(issue 7): switch to the DSN builder of package mssante once it lands, keeping this
// type as the adapter between the queue and that builder.
type DSNNotifier struct {
	// Queue receives the DSN (required).
	Queue *queue.Queue
	// Hostname is the Reporting-MTA (default "localhost").
	Hostname string
	// MaxReturnBytes bounds the returned original message with RET=FULL (default 256 KiB;
	// beyond it only the headers are returned).
	MaxReturnBytes int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

var actions = map[queue.NoticeKind]string{queue.NoticeDelivered: "delivered", queue.NoticeFailed: "failed", queue.NoticeDelayed: "delayed"}

// Notify implements queue.Notifier.
func (n *DSNNotifier) Notify(ctx context.Context, env *queue.Envelope, kind queue.NoticeKind, rcpts []*queue.Recipient) error {
	if env.From == "" {
		return nil // RFC 3461 §6.2: never a DSN about a DSN
	}
	msg, err := n.build(env, kind, rcpts)
	if err != nil {
		return err
	}
	_, err = n.Queue.Enqueue(ctx, &queue.Envelope{From: "", Source: "dsn", Rcpts: []*queue.Recipient{{Addr: env.From}}}, bytes.NewReader(msg))
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
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "dsn-" + hex.EncodeToString(rb[:])
	action := actions[kind]
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	w("To: <%s>\r\n", env.From)
	w("Subject: Delivery Status Notification (%s)\r\n", action)
	w("Date: %s\r\n", now().Format(time.RFC1123Z))
	w("Message-ID: <%s.%s@%s>\r\n", env.ID, hex.EncodeToString(rb[:4]), host)
	w("Auto-Submitted: auto-replied\r\n")
	w("MIME-Version: 1.0\r\n")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	// 1. Human-readable part: no content of the message, only envelope facts.
	w("--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", boundary)
	switch kind {
	case queue.NoticeDelivered:
		w("Your message was delivered to the following recipients.\r\n\r\n")
	case queue.NoticeDelayed:
		w("Your message has not been delivered yet to the following recipients; delivery will be retried.\r\n\r\n")
	default:
		w("Your message could not be delivered to the following recipients.\r\n\r\n")
	}
	for _, r := range rcpts {
		w("  <%s>: %s\r\n", r.Addr, oneLine(r.LastStatus))
	}
	// 2. message/delivery-status (RFC 3464 §2.2, §2.3).
	w("\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	if env.EnvID != "" {
		w("Original-Envelope-Id: %s\r\n", oneLine(env.EnvID))
	}
	w("Reporting-MTA: dns; %s\r\n", host)
	w("Arrival-Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	for _, r := range rcpts {
		w("\r\n")
		if r.ORCPT != "" {
			w("Original-Recipient: %s\r\n", oneLine(r.ORCPT))
		}
		w("Final-Recipient: rfc822; %s\r\n", r.Addr)
		w("Action: %s\r\n", action)
		st := statusOf(r.LastStatus, kind)
		if kind == queue.NoticeFailed && st[0] != '5' {
			st = "5" + st[1:] // a final failure is a permanent status (RFC 3463 §3.1)
		}
		w("Status: %s\r\n", st)
		if r.RemoteMTA != "" {
			w("Remote-MTA: dns; %s\r\n", oneLine(r.RemoteMTA))
		}
		if r.LastStatus != "" && kind != queue.NoticeDelivered {
			w("Diagnostic-Code: smtp; %s\r\n", oneLine(r.LastStatus))
		}
		w("Last-Attempt-Date: %s\r\n", now().Format(time.RFC1123Z))
		if kind == queue.NoticeDelayed && !r.NextAttempt.IsZero() {
			w("Will-Retry-Until: %s\r\n", env.Received.Add(5*24*time.Hour).Format(time.RFC1123Z))
		}
	}
	// 3. The original: headers only (RET=HDRS or unspecified), or the whole message if asked
	// and small enough.
	f, err := n.Queue.OpenMessage(env.ID)
	if err != nil {
		return nil, fmt.Errorf("connector: dsn: %w", err)
	}
	defer f.Close()
	max := n.MaxReturnBytes
	if max <= 0 {
		max = 256 << 10
	}
	if strings.EqualFold(env.Ret, "FULL") && env.Size <= max {
		w("\r\n--%s\r\nContent-Type: message/rfc822\r\n\r\n", boundary)
		io.Copy(&b, io.LimitReader(f, max))
	} else {
		w("\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
		br := bufio.NewReader(io.LimitReader(f, 256<<10))
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\r\n" {
				break
			}
		}
	}
	w("\r\n--%s--\r\n", boundary)
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
