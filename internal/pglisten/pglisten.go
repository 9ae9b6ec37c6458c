// Package pglisten keeps one PostgreSQL connection listening on a LISTEN/NOTIFY channel for
// the stores that several nodes share (the mailbox store's folder changes, the queue's new
// messages): it hands each notification over, checks a silent connection, and reconnects
// after the server restarts or the network drops it.
//
// A notification is delivered only to the sessions listening when its transaction commits:
// one sent while the connection was down is lost, so a caller looks again for what it may
// have missed each time it listens anew (Handler.Listening).
package pglisten

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Handler receives what a Keep learns. Nil fields are skipped.
type Handler struct {
	// Notify receives the payload of each notification.
	Notify func(payload string)
	// Listening is called after each LISTEN that Keep itself made (the first one too when Keep
	// was given no connection): notifications sent before it were missed.
	Listening func()
	// Lost is called with the error that ended a connection or an attempt to open one; Keep
	// tries again a second later.
	Lost func(err error)
}

// check is how long a connection may stay silent before Keep checks that the server still
// answers: a connection lost without a word (a network cut, a frozen server) would otherwise
// leave the node deaf.
const check = 30 * time.Second

// connect bounds each attempt to connect and LISTEN.
const connect = 10 * time.Second

// retry is the pause between two attempts to reconnect.
const retry = time.Second

// Dial connects with cfg and listens on channel (a plain identifier).
func Dial(ctx context.Context, cfg *pgx.ConnConfig, channel string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, connect)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// Keep listens on channel until ctx is done, with conn (from Dial; nil: Keep dials) and then
// with the connections it opens again after each loss. It closes its connection on return.
func Keep(ctx context.Context, cfg *pgx.ConnConfig, channel string, conn *pgx.Conn, h Handler) {
	for {
		var err error
		if conn == nil {
			conn, err = Dial(ctx, cfg, channel)
			if err == nil && h.Listening != nil {
				h.Listening()
			}
		}
		for err == nil {
			err = wait(ctx, conn, h)
		}
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		if ctx.Err() != nil {
			return
		}
		if h.Lost != nil {
			h.Lost(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// wait handles the next notification, or checks the connection after a silence.
func wait(ctx context.Context, conn *pgx.Conn, h Handler) error {
	wctx, cancel := context.WithTimeout(ctx, check)
	n, err := conn.WaitForNotification(wctx)
	cancel()
	switch {
	case err == nil:
		if h.Notify != nil {
			h.Notify(n.Payload)
		}
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case wctx.Err() != nil: // silence: a timeout leaves the connection open
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return conn.Ping(pctx)
	}
	return err
}
