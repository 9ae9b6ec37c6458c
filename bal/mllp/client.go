package mllp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// ClientOptions configure a Client. Zero fields take the defaults.
type ClientOptions struct {
	// Dial opens the connection (default: a net.Dialer on TCP); wrap it for TLS.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// AckTimeout bounds the wait for the ACK of one message (default 60 s).
	AckTimeout time.Duration
	// Attempts is how many times a message is sent when the connection is lost before its
	// ACK arrives (default 3); the resend carries the same MSH-10.
	Attempts int
	// MaxMessageBytes caps an ACK (default 1 MiB).
	MaxMessageBytes int
}

// Client sends messages to one MLLP endpoint, one at a time, over a connection it keeps open
// and reopens when lost. Safe for concurrent use (calls are serialised).
type Client struct {
	addr string
	opts ClientOptions

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// Dial returns a client for addr; the connection is opened by the first Send.
func Dial(addr string, opts *ClientOptions) *Client {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 60 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 1 << 20
	}
	return &Client{addr: addr, opts: o}
}

// Send frames msg, waits for the ACK whose MSA-2 is msg's MSH-10 and returns it parsed. ACKs
// of other control ids (late answers to an earlier resend) are skipped. On a lost connection
// it redials and resends, up to Attempts times. The ACK code (AA, AE, AR) is the caller's to
// read with hl7v2.AckOf.
func (c *Client) Send(ctx context.Context, msg []byte) (*hl7v2.Message, error) {
	m, err := hl7v2.Parse(msg, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id := m.ControlID()
	if id == "" {
		return nil, fmt.Errorf("%w: no MSH-10", ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var last error
	for attempt := 0; attempt < c.opts.Attempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ack, err := c.roundTrip(ctx, msg, id)
		if err == nil {
			return ack, nil
		}
		c.drop()
		last = err
		if errors.Is(err, ErrInvalid) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w for %s after %d attempt(s): %w", ErrNoAck, c.addr, c.opts.Attempts, last)
}

func (c *Client) roundTrip(ctx context.Context, msg []byte, id string) (*hl7v2.Message, error) {
	if c.conn == nil {
		conn, err := c.opts.Dial(ctx, c.addr)
		if err != nil {
			return nil, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	deadline := time.Now().Add(c.opts.AckTimeout)
	conn.SetDeadline(deadline)
	if err := WriteFrame(conn, msg); err != nil {
		return nil, err
	}
	for {
		frame, err := ReadFrame(c.r, c.opts.MaxMessageBytes)
		if err != nil {
			return nil, err
		}
		ack, err := hl7v2.Parse(frame, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: reply is not HL7v2: %w", ErrFraming, err)
		}
		if _, got, ok := hl7v2.AckOf(ack); ok && got == id {
			return ack, nil
		}
	}
}

func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// Close closes the connection, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	return nil
}
