package bal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mssante-go/sdk/mssante"
)

// FlagHandled is the IMAP keyword set on a message once it was handled (with \Seen), when
// Options.ProcessedMailbox is empty.
// It is an untyped string constant, usable where an IMAP library takes a flag.
const FlagHandled = "$MSSanteHandled"

// Handler integrates one received message in the DPI. It returns nil to accept it, a
// *RejectError (see Reject) to refuse it with a code 900–906, ErrLeave to leave it to
// another watcher of the same BAL, or any other error when it cannot decide now: the
// message is then left in the mailbox and handed again later.
//
// The files of m are removed when the handler returns: copy what must be kept.
type Handler func(ctx context.Context, m *Incoming) error

// Receipt reports a change of status of one recipient of a sent message.
type Receipt struct {
	MessageID, EnvelopeID string
	Recipient             string
	Status                Status
	// SMTPCode is the SMTP reply code a DSN reports for the recipient (its Diagnostic-Code,
	// 550 for example); 0 when the DSN gives none, which is usual for a delivery, and for a
	// receipt from an MDN.
	SMTPCode int
	// MDNCode is the MSSanté integration error code (900–906, CI-SIS Trans-CDA-MSS) of an
	// MDN or error mail that refused the message (Status StatusError); 0 otherwise.
	MDNCode mssante.MDNCode
	// Detail is the DSN's status code (5.1.1 for example), the label of MDNCode, or the
	// disposition of a negative MDN.
	Detail string
	// Final is true when this is the recipient's last status: each recipient gets exactly
	// one receipt with Final set.
	Final bool
}

// WatchOptions configures Watch. A nil *WatchOptions takes the defaults.
type WatchOptions struct {
	// OnReceipt is called for each status change brought by a DSN or MDN. Receipts for
	// messages not in the outbox are left in the mailbox for the state folder that sent
	// them (see "Several processes on one BAL" in the package documentation). Called from
	// the Watch goroutine.
	OnReceipt func(ctx context.Context, r Receipt)
	// OnHandled is called once a message handed to the handler is done with: decision
	// recorded, answer sent, message marked on the server.
	OnHandled func(ctx context.Context, messageID string)
	// ReceiptsOnly makes Watch follow only the receipts of what this state folder sent:
	// every other message is left untouched in the mailbox, as a Handler returning ErrLeave
	// would, and the handler may be nil. Such a Watch never answers a sender, so it needs no
	// Options.NIL.
	ReceiptsOnly bool
}

// Watch reads the BAL's mailbox until ctx ends: it hands each new message to h once, even
// across restarts and duplicate deliveries, answers with the MDN or error mail the sender
// asked for, and turns the DSNs and MDNs that come back into receipts. It waits with IDLE
// when the server offers it, else polls every Options.PollInterval. A lost connection is
// reopened with exponential backoff and jitter. Watch returns an error that retrying cannot
// cure (configuration, TLS trust or a Security that does not fit the port, authentication)
// at once; otherwise it returns when ctx ends, with ctx's error, and, when the server could
// not be reached since its last IMAP connection, the last failure too (both for errors.Is), called
// probably misconfigured after three identical failures in a row (also logged then).
func (c *Client) Watch(ctx context.Context, h Handler, opts *WatchOptions) error {
	switch {
	case opts != nil && opts.ReceiptsOnly:
		h = func(context.Context, *Incoming) error { return ErrLeave }
	case h == nil:
		return fmt.Errorf("%w: nil handler (WatchOptions.ReceiptsOnly follows receipts without one)", ErrConfig)
	case c.opts.NIL == "":
		// The MDNs and error mails Watch sends carry X-MSS-NIL like any mail: said now, not
		// after the first message was handled and its answer could not go.
		return fmt.Errorf("%w: no X-MSS-NIL for the answers Watch sends: set Options.NIL (or WatchOptions.ReceiptsOnly)", ErrConfig)
	}
	if c.opts.StateDir == "" {
		return fmt.Errorf("%w: StateDir is required to watch", ErrConfig)
	}
	if c.auth(c.opts.IMAP) == AuthNone {
		return fmt.Errorf("%w: IMAP needs a SASL mechanism (EXTERNAL, PLAIN or XOAUTH2)", ErrConfig)
	}
	in, err := openInbox(c.opts.StateDir)
	if err != nil {
		return err
	}
	w := &watcher{c: c, h: h, in: in}
	if opts != nil {
		w.onReceipt, w.onHandled = opts.OnReceipt, opts.OnHandled
	}
	// The failures to connect are kept so that a Watch that only ever retried until ctx
	// ended says why, rather than only "context deadline exceeded".
	f := &failures{ep: c.opts.IMAP}
	for attempt := 0; ; {
		connected, err := w.session(ctx)
		if ctx.Err() != nil {
			return f.end(ctx.Err(), connected)
		}
		if errors.Is(err, ErrTLS) || errors.Is(err, ErrAuth) || errors.Is(err, ErrConfig) || errors.Is(err, ErrDiscovery) {
			return err
		}
		f.ep = c.opts.IMAP // filled by discovery
		if connected {
			attempt = 0
			f.ok()
		} else if err != nil && f.fail(err) {
			c.log.Error("bal: IMAP connection fails the same way again and again, probably misconfigured",
				"server", c.opts.IMAP.Addr, "failures", f.count, "check", f.hint(), "err", err)
		}
		d := c.backoff(attempt)
		attempt++
		level := slog.LevelWarn
		if connected && (c.opts.Auth == AuthXOAUTH2 || c.opts.Auth == AuthOAUTHBEARER) {
			// Servers end a session opened with a token when the token or the session length
			// they allow expires, every few minutes: logging in again is routine.
			level = slog.LevelInfo
		}
		c.log.Log(ctx, level, "bal: IMAP session ended, reconnecting", "server", c.opts.IMAP.Addr, "in", d, "err", err)
		if err := sleep(ctx, d); err != nil {
			return f.end(err, true)
		}
	}
}

type watcher struct {
	c         *Client
	h         Handler
	in        *inbox
	onReceipt func(context.Context, Receipt)
	onHandled func(context.Context, string)

	uidValidity uint32 // of the selected mailbox
}

// session runs one IMAP connection; connected reports whether it got as far as SELECT.
func (w *watcher) session(ctx context.Context) (connected bool, err error) {
	c := w.c
	if err := c.discoverIMAP(ctx); err != nil {
		return false, err
	}
	wake := make(chan struct{}, 1)
	// The connection outlives ctx by a short grace period, so that a Watch that ends while
	// idling leaves the server cleanly (DONE, LOGOUT); a command stuck past it is cut.
	connCtx, connCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer connCancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(logoutGrace, connCancel) })
	defer stopGrace()
	ic, err := c.openIMAP(connCtx, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			},
		},
	})
	if err != nil {
		return false, err
	}
	defer ic.Close()
	c.sessions.Add(1)
	if c.opts.ProcessedMailbox != "" {
		// Ignore "already exists"; a real failure shows at MOVE.
		_ = ic.Create(c.opts.ProcessedMailbox, nil).Wait()
	}
	sel, err := ic.Select(c.opts.Mailbox, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("bal: SELECT %s: %w", c.opts.Mailbox, err)
	}
	cp, err := w.in.loadCheckpoint(c.opts.Mailbox)
	if err != nil {
		return true, err
	}
	if cp.UIDValidity != sel.UIDValidity {
		if cp.UIDValidity != 0 {
			c.log.Warn("bal: UIDVALIDITY changed, rescanning the mailbox (the journal prevents handing a message twice)",
				"mailbox", c.opts.Mailbox, "old", cp.UIDValidity, "new", sel.UIDValidity)
		}
		cp = checkpoint{Mailbox: c.opts.Mailbox, UIDValidity: sel.UIDValidity}
	}
	w.uidValidity = sel.UIDValidity
	idle := ic.Caps().Has(imap.CapIdle)
	for {
		if err := w.processNew(ctx, ic, &cp); err != nil {
			return true, err
		}
		if idle {
			cmd, err := ic.Idle()
			if err != nil {
				return true, fmt.Errorf("bal: IDLE: %w", err)
			}
			werr := waitWake(ctx, wake, ic.Closed(), c.opts.PollInterval)
			cerr := cmd.Close()
			if cerr == nil {
				cerr = cmd.Wait()
			}
			if werr != nil {
				if ctx.Err() != nil && cerr == nil {
					ic.Logout().Wait()
				}
				return true, werr
			}
			if cerr != nil {
				return true, fmt.Errorf("bal: IDLE: %w", cerr)
			}
		} else {
			if err := waitWake(ctx, nil, ic.Closed(), c.opts.PollInterval); err != nil {
				if ctx.Err() != nil {
					ic.Logout().Wait()
				}
				return true, err
			}
			if err := ic.Noop().Wait(); err != nil {
				return true, fmt.Errorf("bal: NOOP: %w", err)
			}
		}
	}
}

var errConnClosed = errors.New("bal: IMAP connection closed")

// logoutGrace is how long a Watch whose context ended may take to log out.
const logoutGrace = 2 * time.Second

// waitWake waits for a new-message notification, the poll interval, the connection closing
// or ctx.
func waitWake(ctx context.Context, wake <-chan struct{}, closed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return errConnClosed
	case <-wake:
	case <-t.C:
	}
	return nil
}

func (c *Client) openIMAP(ctx context.Context, o *imapclient.Options) (*imapclient.Client, error) {
	ep := c.opts.IMAP
	raw, cfg, err := c.dial(ctx, ep, protoIMAP)
	if err != nil {
		return nil, err
	}
	// The connection lives until ctx ends or the caller closes it.
	context.AfterFunc(ctx, func() { raw.Close() })
	var ic *imapclient.Client
	if ep.Security == ImplicitTLS {
		ic = imapclient.New(raw, o)
	} else {
		o.TLSConfig = cfg
		clear, err := c.awaitGreeting(ctx, raw, ep, cfg, protoIMAP)
		if err != nil {
			raw.Close()
			return nil, err
		}
		ic, err = imapclient.NewStartTLS(clear, o)
		if err != nil {
			raw.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, tlsError(fmt.Errorf("bal: STARTTLS with %s: %w", ep.Addr, err))
		}
	}
	if err := ic.WaitGreeting(); err != nil {
		ic.Close()
		return nil, tlsError(fmt.Errorf("bal: IMAP greeting from %s: %w", ep.Addr, err))
	}
	mech := c.auth(ep)
	if !ic.Caps().Has(imap.Cap("AUTH=" + string(mech))) {
		ic.Close()
		return nil, fmt.Errorf("%w: %s does not offer AUTH=%s", ErrAuth, ep.Addr, mech)
	}
	a, err := c.saslClient(ctx, mech)
	if err != nil {
		ic.Close()
		return nil, err
	}
	if err := ic.Authenticate(a); err != nil {
		ic.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrAuth, ep.Addr, err)
	}
	return ic, nil
}

// processNew hands every message above the checkpoint that is not flagged handled, passing
// over those this watcher left for another (cp.Skipped) without fetching them again.
func (w *watcher) processNew(ctx context.Context, ic *imapclient.Client, cp *checkpoint) error {
	c := w.c
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(cp.LastUID + 1), Stop: 0}}}}
	if c.opts.ProcessedMailbox == "" {
		crit.NotFlag = []imap.Flag{FlagHandled}
	}
	data, err := ic.UIDSearch(crit, nil).Wait()
	if err != nil {
		return fmt.Errorf("bal: UID SEARCH: %w", err)
	}
	left := make(map[uint32]bool, len(cp.Skipped))
	for _, uid := range cp.Skipped {
		left[uid] = true
	}
	// Only what the search still finds is kept: a message its owner handled (flagged or
	// moved) drops out, so the list stays as short as the backlog of others' receipts.
	var skipped []uint32
	contiguous := true
	for _, uid := range data.AllUIDs() {
		if uint32(uid) <= cp.LastUID {
			continue // "n:*" always matches the last message
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var res outcome
		if left[uint32(uid)] {
			res = outcomeLeft
		} else if res, err = w.processOne(ctx, ic, uid); err != nil {
			return err
		}
		switch {
		case res == outcomeRetry:
			contiguous = false
		case contiguous:
			// A message left for another watcher is never this one's to hand: the
			// checkpoint passes over it as over a handled one.
			cp.LastUID = uint32(uid)
			cp.Skipped = keepAbove(cp.Skipped, cp.LastUID)
			if err := w.in.saveCheckpoint(*cp); err != nil {
				return err
			}
		case res == outcomeLeft:
			skipped = append(skipped, uint32(uid))
		}
	}
	if !slices.Equal(skipped, cp.Skipped) {
		cp.Skipped = skipped
		return w.in.saveCheckpoint(*cp)
	}
	return nil
}

// keepAbove returns the UIDs of s above last.
func keepAbove(s []uint32, last uint32) []uint32 {
	return slices.DeleteFunc(s, func(u uint32) bool { return u <= last })
}

// outcome is what became of one message of the mailbox.
type outcome int

const (
	// outcomeDone: handled, answered and marked on the server.
	outcomeDone outcome = iota
	// outcomeRetry: the handler could not decide; handed again on a later round.
	outcomeRetry
	// outcomeLeft: a receipt for a message another state folder sent, or a message the
	// handler left (ErrLeave), untouched in the mailbox (no flag, no move, no journal
	// entry) for another watcher.
	outcomeLeft
)

// processOne fetches, hands and marks one message.
func (w *watcher) processOne(ctx context.Context, ic *imapclient.Client, uid imap.UID) (outcome, error) {
	c := w.c
	handed := false
	m, err := w.fetch(ic, uid)
	if err != nil {
		return outcomeRetry, err
	}
	defer m.cleanup()
	e, err := w.in.entry(m.MessageID)
	if err != nil {
		return outcomeRetry, err
	}
	switch {
	case e != nil && e.Replied:
		c.log.Info("bal: message already handled, not handing it again", "message_id", m.MessageID, "uid", uid)
	case e != nil:
		// Decided before a restart, answer not sent yet.
		m.parse(c.opts.MaxMessageSize)
		if err := w.reply(ctx, m, e); err != nil {
			return outcomeRetry, err
		}
	default:
		m.parse(c.opts.MaxMessageSize)
		if m.Message != nil && m.Message.Kind != mssante.KindOrdinary {
			mine, err := w.applyReceipt(ctx, m.Message)
			if err != nil {
				return outcomeRetry, err
			}
			if !mine {
				c.log.Info("bal: receipt for a message this state folder did not send, left in the mailbox for its sender",
					"message_id", m.MessageID, "uid", uid)
				return outcomeLeft, nil
			}
			e = &journalEntry{MessageID: m.MessageID, Kind: "report", Replied: true, At: c.opts.Now().UTC()}
		} else {
			if m.ParseError != nil {
				c.log.Warn("bal: unreadable message, handing it raw", "message_id", m.MessageID, "err", m.ParseError)
			}
			herr := w.h(ctx, m)
			handed = true
			var rej *RejectError
			switch {
			case errors.Is(herr, ErrLeave):
				c.log.Info("bal: message left in the mailbox for another watcher", "message_id", m.MessageID, "uid", uid)
				return outcomeLeft, nil
			case herr == nil:
				e = &journalEntry{MessageID: m.MessageID, Kind: "message"}
			case errors.As(herr, &rej):
				e = &journalEntry{MessageID: m.MessageID, Kind: "message", Code: int(rej.Code)}
			default:
				c.log.Warn("bal: handler could not decide, will retry", "message_id", m.MessageID, "uid", uid, "err", herr)
				return outcomeRetry, nil
			}
			e.At = c.opts.Now().UTC()
			c.log.Info("bal: message handled", "message_id", m.MessageID, "uid", uid, "code", e.Code)
		}
		if err := w.in.record(e); err != nil {
			return outcomeRetry, err
		}
		if !e.Replied {
			if err := w.reply(ctx, m, e); err != nil {
				return outcomeRetry, err
			}
		}
	}
	if err := w.markHandled(ic, uid, m.Message != nil && m.Message.WantMDN); err != nil {
		return outcomeRetry, err
	}
	if handed && w.onHandled != nil {
		w.onHandled(ctx, m.MessageID)
	}
	return outcomeDone, nil
}

// reply sends the MDN or error mail e calls for (mssante.WriteReceipt), then records it
// as sent. Its Message-ID is derived from the original's, so the outbox sends it once even
// when the decision is replayed after a restart.
func (w *watcher) reply(ctx context.Context, m *Incoming, e *journalEntry) error {
	c := w.c
	if m.Message != nil {
		original, err := m.raw()
		if err != nil {
			return err
		}
		from, err := mssante.NewAddress("", c.opts.Address)
		if err != nil {
			return err
		}
		_, dom, _ := splitAddress(c.opts.Address)
		ro := &mssante.ReceiptOptions{
			From: from, ReportingUA: c.opts.ReportingUA, NIL: c.opts.NIL,
			MessageID: "rcpt-" + envelopeID(m.MessageID) + "@" + dom, Date: c.opts.Now(),
			Compose: &mssante.ComposeOptions{Now: c.opts.Now, MaxSize: -1},
		}
		var buf bytes.Buffer
		_, err = mssante.WriteReceipt(&buf, m.Message, original, mssante.MDNCode(e.Code), ro)
		switch {
		case errors.Is(err, mssante.ErrNothingToSend), errors.Is(err, mssante.ErrReportLoop):
		case err != nil:
			c.log.Warn("bal: cannot write the answer to the sender", "message_id", m.MessageID, "err", err)
		default:
			_, err := c.SendRaw(ctx, &buf, &SendOptions{Notify: []DSNNotify{NotifyNever}})
			if errors.Is(err, ErrNotWhitelisted) || errors.Is(err, ErrAllRejected) || errors.Is(err, ErrMessage) {
				// Cannot be cured by retrying: give up the answer, keep the decision.
				c.log.Warn("bal: cannot answer the sender", "message_id", m.MessageID, "err", err)
			} else if err != nil {
				return err
			}
		}
	}
	e.Replied = true
	return w.in.record(e)
}

// markHandled flags or moves the message out of the way of the next searches.
func (w *watcher) markHandled(ic *imapclient.Client, uid imap.UID, mdnSent bool) error {
	set := imap.UIDSetNum(uid)
	flags := []imap.Flag{imap.FlagSeen, FlagHandled}
	if mdnSent {
		flags = append(flags, imap.FlagMDNSent) // RFC 3503
	}
	if err := ic.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close(); err != nil {
		return fmt.Errorf("bal: STORE: %w", err)
	}
	if w.c.opts.ProcessedMailbox != "" {
		if _, err := ic.Move(set, w.c.opts.ProcessedMailbox).Wait(); err != nil {
			return fmt.Errorf("bal: MOVE: %w", err)
		}
	}
	return nil
}

// fetch downloads one message, to memory when small, to the spool folder otherwise.
func (w *watcher) fetch(ic *imapclient.Client, uid imap.UID) (*Incoming, error) {
	c := w.c
	cmd := ic.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer cmd.Close()
	fm := cmd.Next()
	if fm == nil {
		if err := cmd.Close(); err != nil {
			return nil, fmt.Errorf("bal: FETCH %d: %w", uid, err)
		}
		return nil, fmt.Errorf("bal: FETCH %d: message gone", uid)
	}
	m := &Incoming{UID: uint32(uid)}
	for {
		item := fm.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataRFC822Size:
			m.Size = it.Size
		case imapclient.FetchItemDataBodySection:
			if err := m.store(it.Literal, c.opts.SpoolThreshold, c.opts.MaxMessageSize, filepath.Join(c.opts.StateDir, "spool")); err != nil {
				m.cleanup()
				return nil, err
			}
		}
	}
	if err := cmd.Close(); err != nil {
		m.cleanup()
		return nil, fmt.Errorf("bal: FETCH %d: %w", uid, err)
	}
	if m.data == nil && m.path == "" {
		return nil, fmt.Errorf("bal: FETCH %d: no body", uid)
	}
	if err := m.readMessageID(); err != nil {
		c.log.Warn("bal: unreadable header", "uid", uid, "err", err)
	}
	if m.MessageID == "" {
		// Without a Message-ID the UID is the only identity the journal can use.
		m.MessageID = fmt.Sprintf("uid-%d-%d@%s", w.uidValidity, uid, c.opts.Mailbox)
	}
	return m, nil
}

// applyReceipt turns a DSN, an MDN or an integration error mail into status changes of
// the outbox, and emits the receipts that changed something. mine is false for a receipt
// about a message this outbox does not hold: another state folder sent it (the web tier of
// a DPI, its daemon watching), and that folder's watcher must find the receipt in the
// mailbox as it came. A receipt that names no message at all is nobody's to wait for: it is
// taken as handled. err is a failure to make a status change durable (retried).
func (w *watcher) applyReceipt(ctx context.Context, msg *mssante.Message) (mine bool, err error) {
	c := w.c
	if c.box == nil {
		return true, nil
	}
	rep := ReadReport(msg)
	if rep == nil {
		if msg.Kind == mssante.KindMDN && msg.MDN != nil {
			c.log.Info("bal: MDN of an unknown disposition type, ignored")
		}
		return true, nil
	}
	envid := rep.EnvelopeID
	if envid == "" {
		envid = envelopeIDOf(rep.MessageID)
	}
	if envid == "" || strings.ContainsAny(envid, `/\.`) {
		return true, nil
	}
	var out []Receipt
	now := c.opts.Now().UTC()
	rec, err := c.box.update(envid, func(r *Record) bool {
		out = r.Apply(rep.Changes, now)
		return len(out) > 0
	})
	switch {
	case rec == nil && errors.Is(err, fs.ErrNotExist):
		return false, nil
	case rec == nil:
		// A record this folder cannot read: left in the mailbox rather than lost.
		c.log.Warn("bal: unreadable outbox record, receipt left in the mailbox", "envelope_id", envid, "err", err)
		return false, nil
	case err != nil:
		return true, err
	}
	for _, r := range out {
		c.log.Info("bal: receipt", "message_id", rec.MessageID, "status", string(r.Status), "final", r.Final)
		if w.onReceipt != nil {
			w.onReceipt(ctx, r)
		}
	}
	return true, nil
}

// envelopeIDOf is the outbox key of a Message-ID, "" for none.
func envelopeIDOf(msgID string) string {
	if msgID == "" {
		return ""
	}
	return envelopeID(msgID)
}

// originalMessageID reads the Message-ID of the headers a DSN returns.
func originalMessageID(original []byte) string {
	if len(original) == 0 {
		return ""
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(original)))
	if err != nil {
		return ""
	}
	return trimAngles(h.Get("Message-Id"))
}

// diagnosticCode reads the reply code of "smtp; 550 5.1.1 <x>: unknown user".
func diagnosticCode(v string) int {
	_, d, ok := strings.Cut(v, ";")
	if !ok {
		d = v
	}
	d = strings.TrimSpace(d)
	if len(d) < 3 {
		return 0
	}
	n, err := strconv.Atoi(d[:3])
	if err != nil {
		return 0
	}
	return n
}
