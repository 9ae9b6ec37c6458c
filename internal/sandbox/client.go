package sandbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Submit sends msg from the BAL from to the recipients through the submission server of its
// operator: STARTTLS, then SASL EXTERNAL with the BAL's certificate (APP) or PLAIN with its
// password (PER, ORG). A refusal is returned as the *smtp.SMTPError of the server.
func (i *Info) Submit(ctx context.Context, from string, to []string, msg []byte) error {
	b, op, err := i.balAndOperator(from)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(op.Submission)
	tcfg, err := i.ClientTLS(b, host)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", op.Submission)
	if err != nil {
		return fmt.Errorf("sandbox: submission: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := smtp.NewClientStartTLS(conn, tcfg)
	if err != nil {
		return fmt.Errorf("sandbox: submission STARTTLS: %w", err)
	}
	defer c.Close()
	if b.CertFile != "" {
		err = c.Auth(sasl.NewExternalClient(""))
	} else {
		err = c.Auth(sasl.NewPlainClient("", b.Address, b.Password))
	}
	if err != nil {
		return fmt.Errorf("sandbox: submission AUTH: %w", err)
	}
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// Messages returns the raw messages in the INBOX of the BAL addr, read over IMAPS from its
// operator (EXTERNAL with the certificate of an APP BAL, LOGIN with the password otherwise).
func (i *Info) Messages(ctx context.Context, addr string) ([][]byte, error) {
	b, op, err := i.balAndOperator(addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(op.IMAPS)
	tcfg, err := i.ClientTLS(b, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", op.IMAPS)
	if err != nil {
		return nil, fmt.Errorf("sandbox: imaps: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	c := imapclient.New(tlsClient(conn, tcfg), nil)
	defer c.Close()
	if b.CertFile != "" {
		err = c.Authenticate(sasl.NewExternalClient(""))
	} else {
		err = c.Login(b.Address, b.Password).Wait()
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: imap login: %w", err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("sandbox: imap select: %w", err)
	}
	var out [][]byte
	if sel.NumMessages > 0 {
		var set imap.SeqSet
		set.AddRange(1, sel.NumMessages)
		msgs, err := c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			return nil, fmt.Errorf("sandbox: imap fetch: %w", err)
		}
		for _, m := range msgs {
			for _, body := range m.BodySection {
				out = append(out, body.Bytes)
			}
		}
	}
	c.Logout().Wait()
	return out, nil
}

func (i *Info) balAndOperator(addr string) (*BAL, *Operator, error) {
	b := i.BAL(addr)
	op := i.OperatorOf(addr)
	if b == nil || op == nil {
		return nil, nil, fmt.Errorf("sandbox: %s is not a BAL of the sandbox", addr)
	}
	return b, op, nil
}

// ErrTimeout is returned by WaitFor when no message matched in time.
var ErrTimeout = errors.New("sandbox: no matching message in time")

// WaitFor polls the INBOX of addr until a message satisfies match, and returns it.
func (i *Info) WaitFor(ctx context.Context, addr string, match func(raw []byte) bool) ([]byte, error) {
	for {
		msgs, err := i.Messages(ctx, addr)
		if err != nil && ctx.Err() == nil {
			return nil, err
		}
		for _, m := range msgs {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tlsClient(conn net.Conn, cfg *tls.Config) net.Conn { return tls.Client(conn, cfg) }
