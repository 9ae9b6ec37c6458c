package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/webhook"
)

// storeFollower reads the INBOX of the node's BALs in its mailbox store, as bal.Watch reads a
// BAL over IMAP, so that the BAL's other readers (a DPI's bal.Watch, an IMAP client) see the
// same thing whoever read first:
//   - a DSN, MDN or error mail about a message sent through the API updates its record
//     (bal.ReadReport, bal.Record.Apply), raises its event and is flagged handled (\Seen
//     and bal.FlagHandled); one about a message the API did not send is left untouched for
//     the state folder that sent it; one that names no message is nobody's and flagged;
//   - an ordinary message of an APP BAL is kept for the DPI (listed by the received
//     endpoints, message.received) and flagged handled once answered (with $MDNSent,
//     RFC 3503, when an MDN went); those of PER and ORG BALs are a person's to read, left,
//     and so are those of the APP BALs in receiptsOnly, which a DPI reads itself.
//
// It is woken by the store's Watcher and reads only what changed since (Store.Changes).
type storeFollower struct {
	h       *Handler
	s       *ConnectorSender
	store   mailbox.Store
	maxSize int64
	// receiptsOnly are the APP BALs (lower case) whose ordinary mail is left.
	receiptsOnly map[string]bool
	log          *slog.Logger
}

// balRefresh is how often the follower looks for BALs added to the store.
const balRefresh = 30 * time.Second

// run follows every BAL of the store until ctx ends.
func (f *storeFollower) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	following := map[string]bool{}
	t := time.NewTicker(balRefresh)
	defer t.Stop()
	for {
		bals, err := f.store.ListBALs(ctx)
		if err != nil && ctx.Err() == nil {
			f.log.Error("httpapi: listing the BALs of the store", "err", err)
		}
		for _, b := range bals {
			if !following[b.Address] {
				following[b.Address] = true
				wg.Go(func() { f.follow(ctx, b) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// follow reads the INBOX of b at each change until ctx ends.
func (f *storeFollower) follow(ctx context.Context, b *mailbox.BAL) {
	info, err := f.store.Mailbox(ctx, b.Address, mailbox.Inbox)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Error("httpapi: BAL's INBOX", "bal", b.Address, "err", err)
		}
		return
	}
	wake, cancel := f.store.Watch(info.ID)
	defer cancel()
	var since uint64
	left := map[uint32]bool{} // receipts for another state folder, a person's mail
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		ch, err := f.store.Changes(ctx, info.ID, since)
		failed := err != nil
		if err == nil {
			for _, m := range ch.Messages {
				if m.HasFlag(bal.FlagHandled) || left[m.UID] {
					continue
				}
				leave, err := f.one(ctx, b, info, m.UID)
				if err != nil {
					failed = true
					f.log.Warn("httpapi: reading a received message, will retry", "bal", b.Address, "uid", m.UID, "err", err)
				}
				left[m.UID] = leave
			}
			for _, u := range ch.Expunged {
				delete(left, u)
			}
			if !failed {
				since = ch.ModSeq
			}
		} else if ctx.Err() == nil {
			f.log.Warn("httpapi: reading the INBOX, will retry", "bal", b.Address, "err", err)
		}
		if failed {
			retry.Reset(time.Minute)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-retry.C:
		}
	}
}

// one reads the message uid of b's INBOX; leave reports a message left for another reader.
func (f *storeFollower) one(ctx context.Context, b *mailbox.BAL, info *mailbox.MailboxInfo, uid uint32) (leave bool, err error) {
	var data []byte
	found := false
	err = f.store.Read(ctx, info.ID, []uint32{uid}, func(_ uint32, r io.ReaderAt, size int64) error {
		found = true
		if size > f.maxSize {
			return nil // parsed as unreadable below
		}
		data = make([]byte, size)
		_, err := r.ReadAt(data, 0)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return err
	})
	if err != nil || !found { // not found: expunged meanwhile
		return false, err
	}
	m := bal.ReadIncoming(data, f.maxSize)
	if m.MessageID == "" {
		// As bal.Watch: without a Message-ID the UID is the only identity.
		m.MessageID = fmt.Sprintf("uid-%d-%d@%s", info.UIDValidity, uid, mailbox.Inbox)
	}
	if m.Message != nil && m.Message.Kind != mssante.KindOrdinary {
		if rep := bal.ReadReport(m.Message); rep != nil {
			mine, err := f.s.applyReport(ctx, b.Address, rep)
			if err != nil || !mine {
				return !mine, err
			}
		}
		return false, f.flag(ctx, info.ID, uid, false)
	}
	if b.Type != mailbox.APP || f.receiptsOnly[strings.ToLower(b.Address)] {
		return true, nil
	}
	return false, f.h.receive(ctx, b.Address, m, data, fmt.Sprintf("%d:%d", info.UIDValidity, uid))
}

// flag marks a message handled as bal.Watch does.
func (f *storeFollower) flag(ctx context.Context, id mailbox.MailboxID, uid uint32, mdnSent bool) error {
	flags := []string{`\Seen`, bal.FlagHandled}
	if mdnSent {
		flags = append(flags, "$MDNSent")
	}
	_, err := f.store.StoreFlags(ctx, id, []uint32{uid}, mailbox.FlagsAdd, flags)
	return err
}

// receive keeps a message of addr for the DPI, once, with its raw form (for the MDN) and
// where it lies in the store (loc, "UIDVALIDITY:UID").
func (h *Handler) receive(ctx context.Context, addr string, m *bal.Incoming, raw []byte, loc string) error {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	rec, err := h.in.get(addr, m.MessageID)
	if err != nil || rec != nil {
		return err
	}
	dir := h.in.folder(addr, m.MessageID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	if err := writeDurable(dir, filepath.Join(dir, "raw"), raw); err != nil {
		return err
	}
	if err := writeDurable(dir, filepath.Join(dir, "loc"), []byte(loc)); err != nil {
		return err
	}
	if err := h.in.add(addr, h.in.receivedOf(m)); err != nil {
		return err
	}
	h.publish(ctx, webhook.Event{ID: eventID(addr, webhook.EventReceived, m.MessageID), Type: webhook.EventReceived,
		BAL: addr, MessageID: m.MessageID})
	return nil
}

// answer sends the MDN or error mail the sender of rec asked for, with the rules of
// bal.Watch (mssante.WriteReceipt; nothing when none is due; given up when the message
// cannot go, the decision kept), through the caller's own submission, then flags the
// message handled in the store.
func (f *storeFollower) answer(ctx context.Context, c *Caller, addr string, rec *Received) error {
	dir := f.h.in.folder(addr, rec.MessageID)
	raw, err := os.ReadFile(filepath.Join(dir, "raw"))
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	m := bal.ReadIncoming(raw, f.maxSize)
	mdnSent := false
	if m.Message != nil {
		from, err := mssante.NewAddress("", addr)
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(rec.MessageID))
		ro := &mssante.ReceiptOptions{From: from, ReportingUA: "mssante-go", NIL: f.s.o.NIL,
			MessageID: "rcpt-" + hex.EncodeToString(sum[:16]) + "@" + from.Domain(), Date: f.s.o.Now(),
			Compose: &mssante.ComposeOptions{Now: f.s.o.Now, MaxSize: -1}}
		var buf bytes.Buffer
		_, err = mssante.WriteReceipt(&buf, m.Message, raw, mssante.MDNCode(rec.MDNCode), ro)
		switch {
		case errors.Is(err, mssante.ErrNothingToSend), errors.Is(err, mssante.ErrReportLoop):
		case err != nil:
			f.log.Warn("httpapi: cannot write the answer to the sender", "bal", addr, "message_id", rec.MessageID, "err", err)
		default:
			_, err := f.s.SendRaw(ctx, c, addr, &buf, &bal.SendOptions{Notify: []bal.DSNNotify{bal.NotifyNever}})
			switch {
			case errors.Is(err, bal.ErrAllRejected), errors.Is(err, bal.ErrMessage):
				f.log.Warn("httpapi: cannot answer the sender", "bal", addr, "message_id", rec.MessageID, "err", err)
			case err != nil:
				return err
			default:
				mdnSent = m.Message.WantMDN
			}
		}
	}
	loc, err := os.ReadFile(filepath.Join(dir, "loc"))
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	v, u, _ := strings.Cut(string(loc), ":")
	validity, _ := strconv.ParseUint(v, 10, 32)
	uid, _ := strconv.ParseUint(u, 10, 32)
	info, err := f.store.Mailbox(ctx, addr, mailbox.Inbox)
	if err != nil {
		return err
	}
	if info.UIDValidity != uint32(validity) {
		return nil // the folder was made again: the message is not where it was
	}
	err = f.flag(ctx, info.ID, uint32(uid), mdnSent)
	if errors.Is(err, mailbox.ErrNoMessage) {
		err = nil // expunged meanwhile
	}
	return err
}
