package imapd

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// session is one IMAP connection. imapserver calls its methods from one goroutine.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	// ctx is cancelled when the connection ends (or the server closes): store calls made for
	// this IMAP session stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	bal    string // authenticated BAL address, "" before
	// listener ("imap" or "imaps") and peer (address and port) name the session in the
	// operational log.
	listener, peer string
	lc             *transport.LimitedConn // the connection's deadlines; nil when served without limiter
	auth           *authlimit.Conn
	sel            *selected

	// pollMu serialises polls and Close. go-imap's handleIdle returns on a client's EOF without
	// waiting for Idle's goroutine, so that goroutine may still poll while the connection's own
	// goroutine polls again and then closes the session. After Close, Idle returns at once.
	pollMu sync.Mutex
	closed bool

	copyBuf []byte // reused to send message files (FETCH BODY[])

	sessionEnd *time.Timer // ends a session opened with a token (oauth.go)
}

// selected is the client's view of the selected folder: the UIDs in sequence-number order as
// the client last heard of them, and the modification sequence it is up to date with.
// envKey names a message of the folder in the server's envelope cache.
func (sel *selected) envKey(uid uint32) envKey {
	return envKey{mbox: sel.id, uidValidity: sel.uidValidity, uid: uid}
}

type selected struct {
	id          mailbox.MailboxID
	name        string
	readOnly    bool
	uidValidity uint32
	uids        uidList
	modSeq      uint64
	// own records the modseq of flag changes this IMAP session made (and already reported), so
	// they are not echoed back as unilateral updates.
	own map[uint32]uint64
	// gone holds the UIDs expunged by others that this IMAP session could not report yet (no
	// EXPUNGE during FETCH, STORE or SEARCH: RFC 3501 §7.4.1).
	gone []uint32
	// recent holds the messages that are \Recent for this IMAP session (RFC 3501 §2.3.2).
	recent map[uint32]bool
	// keywords announced in FLAGS, in order of appearance.
	keywords []string
	// echo lists the UIDs whose flags a non-silent STORE changed: their FETCH responses are
	// written by the Poll that follows the command, after any FLAGS response announcing a
	// new keyword.
	echo    []uint32
	changes <-chan struct{}
	cancel  func()
	// caches: the index as of idxModSeq (kept up to date with the changes since, for
	// SEARCH), and the header blocks up to UID hdrsUpTo
	idx       map[uint32]*mailbox.Message
	idxModSeq uint64
	hdrs      map[uint32][]byte
	hdrsUpTo  uint32
	hdrsSize  int // -1: too big, not cached
}

var (
	_ imapserver.SessionIMAP4rev2 = (*session)(nil)
	_ imapserver.SessionSASL      = (*session)(nil)
)

func (s *session) store() mailbox.Store { return s.srv.opts.Store }

func (s *session) Close() error {
	s.endBearer()
	s.cancel()
	s.pollMu.Lock()
	s.closed = true
	s.unselect()
	s.pollMu.Unlock()
	s.srv.sessionClosed()
	return nil
}

// ---- authentication ----

// loggedIn swaps the login deadline for the autologout timer (RFC 9051 §5.4).
func (s *session) loggedIn() {
	if s.lc != nil {
		s.lc.SetPhaseDeadline(time.Time{})
		s.lc.SetIdleTimeout(s.srv.opts.IdleTimeout)
	}
}

func (s *session) Login(username, password string) error {
	if err := s.refusePassword(username); err != nil {
		return err
	}
	if err := s.auth.Before(s.ctx, username); err != nil {
		s.authFailed(sasl.Plain, "auth_plain_locked", username, slog.Any("err", err))
		return s.hangUp()
	}
	if err := s.store().CheckPassword(s.ctx, username, password); err != nil {
		s.authFailed(sasl.Plain, "auth_plain_failed", username)
		if s.auth.Failed(username) != nil {
			return s.hangUp()
		}
		return imapserver.ErrAuthFailed
	}
	b, err := s.store().GetBAL(s.ctx, username)
	if err != nil {
		return imapserver.ErrAuthFailed
	}
	s.auth.Succeeded(username)
	s.bal = b.Address
	s.loggedIn()
	s.srv.logger().Info("imapd: login", "listener", s.listener, "peer", s.peer, "bal", s.bal, "mech", "PLAIN")
	return nil
}

// authFailed writes a refused login to the operational log, as a warning: the listener, the
// peer, the mechanism and the reason key (those of the SMTP submission listener), and the
// login only when it is an address, a BAL: a password typed in the login field must not be
// logged.
func (s *session) authFailed(mech, reason, login string, attrs ...slog.Attr) {
	all := []slog.Attr{slog.String("listener", s.listener), slog.String("peer", s.peer),
		slog.String("mech", mech), slog.String("reason", reason)}
	if a, err := mssante.NewAddress("", login); err == nil {
		all = append(all, slog.String("login", a.Addr))
	}
	s.srv.logger().LogAttrs(context.Background(), slog.LevelWarn, "imapd: authentication failed", append(all, attrs...)...)
}

// hangUp ends a connection that may not try again: BYE, then close (RFC 9051 §7.1.5). The
// tagged NO that follows finds the connection closed. BYE is written on the connection
// directly: imapserver.Conn.Bye waits for the response encoder, which AUTHENTICATE holds for
// its whole exchange, so it would never return from AUTHENTICATE PLAIN, XOAUTH2 or
// OAUTHBEARER. Before login, nothing else writes and every response has been flushed.
func (s *session) hangUp() error {
	c := s.conn.NetConn()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "* BYE Too many failed authentications, try again later\r\n")
	c.Close()
	return imapserver.ErrAuthFailed
}

func (s *session) AuthenticateMechanisms() []string {
	return append(append([]string{sasl.External}, s.passwordMechanisms()...), s.bearerMechanisms()...)
}

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return imapserver.ErrAuthFailed
			}
			return s.Login(username, password)
		}), nil
	case sasl.External:
		return sasl.NewExternalServer(s.external), nil
	}
	if srv := s.bearer(mech); srv != nil {
		return srv, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported mechanism"}
}

// external maps the verified client certificate to its APP BAL (SASL EXTERNAL, RFC 4422 A).
func (s *session) external(identity string) error {
	tc, ok := s.conn.NetConn().(*tls.Conn)
	if !ok {
		return imapserver.ErrAuthFailed
	}
	st := tc.ConnectionState()
	if err := s.srv.verifyPeer(st); err != nil || len(st.PeerCertificates) == 0 {
		s.authFailed(sasl.External, "auth_external_no_valid_certificate", "")
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "No valid client certificate"}
	}
	dn := s.srv.peerDN(st.PeerCertificates[0])
	b, err := s.store().BALByCertDN(s.ctx, dn)
	if err != nil {
		s.authFailed(sasl.External, "auth_external_unknown_certificate", "", slog.String("peer_dn", dn))
		return imapserver.ErrAuthFailed
	}
	if identity != "" && !strings.EqualFold(identity, b.Address) {
		return imapserver.ErrAuthFailed
	}
	s.bal = b.Address
	s.loggedIn()
	s.srv.logger().Info("imapd: login", "listener", s.listener, "peer", s.peer, "bal", s.bal, "mech", "EXTERNAL")
	return nil
}

// ---- errors ----

// imapErr turns a store error into an IMAP status with a generic text.
func imapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, mailbox.ErrNoMailbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, mailbox.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, mailbox.ErrOverQuota):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded"}
	case errors.Is(err, mailbox.ErrTooBig):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	case errors.Is(err, mailbox.ErrMailboxReserved):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Not allowed on INBOX"}
	case errors.Is(err, mailbox.ErrInvalid):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, mailbox.ErrNoBAL):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such BAL"}
	}
	return err // imapserver logs it and answers a generic server error
}

var errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}

func destErr(err error) error {
	if errors.Is(err, mailbox.ErrNoMailbox) {
		return errTryCreate
	}
	return imapErr(err)
}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only"}

// ---- authenticated state ----

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: mailbox.Delim}}}, nil
}

func (s *session) Create(name string, _ *imap.CreateOptions) error {
	return imapErr(s.store().CreateMailbox(s.ctx, s.bal, name))
}

func (s *session) Delete(name string) error {
	if s.sel != nil && strings.EqualFold(s.sel.name, name) {
		s.unselect()
	}
	return imapErr(s.store().DeleteMailbox(s.ctx, s.bal, name))
}

func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	return imapErr(s.store().RenameMailbox(s.ctx, s.bal, oldName, newName))
}

func (s *session) Subscribe(name string) error {
	return imapErr(s.store().SetSubscribed(s.ctx, s.bal, name, true))
}

func (s *session) Unsubscribe(name string) error {
	return imapErr(s.store().SetSubscribed(s.ctx, s.bal, name, false))
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 || (len(patterns) == 1 && patterns[0] == "") {
		// LIST "" "": the hierarchy delimiter and root (RFC 3501 §6.3.8)
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailbox.Delim})
	}
	boxes, err := s.store().ListMailboxes(s.ctx, s.bal)
	if err != nil {
		return imapErr(err)
	}
	names := make(map[string]bool, len(boxes))
	for _, b := range boxes {
		names[b.Name] = true
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if imapserver.MatchList(name, mailbox.Delim, ref, p) {
				return true
			}
		}
		return false
	}
	subscribedOnly := options != nil && options.SelectSubscribed
	if subscribedOnly {
		// LSUB: a parent that matches a "%" level, whose children are subscribed but it is
		// not, is listed with \Noselect (RFC 3501 §6.3.9).
		sent := map[string]bool{}
		for _, b := range boxes {
			if !b.Subscribed {
				continue
			}
			parts := strings.Split(b.Name, string(mailbox.Delim))
			for i := 1; i < len(parts); i++ {
				parent := strings.Join(parts[:i], string(mailbox.Delim))
				if sent[parent] || !matches(parent) || isSubscribed(boxes, parent) {
					continue
				}
				sent[parent] = true
				if err := w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailbox.Delim, Mailbox: parent}); err != nil {
					return err
				}
			}
		}
	}
	for _, b := range boxes {
		if !matches(b.Name) || (subscribedOnly && !b.Subscribed) {
			continue
		}
		data := imap.ListData{Delim: mailbox.Delim, Mailbox: b.Name}
		if hasChild(boxes, b.Name) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if options != nil && (options.ReturnSubscribed || options.SelectSubscribed) && b.Subscribed {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

func isSubscribed(boxes []mailbox.MailboxInfo, name string) bool {
	for _, b := range boxes {
		if b.Name == name {
			return b.Subscribed
		}
	}
	return false
}

func hasChild(boxes []mailbox.MailboxInfo, name string) bool {
	for _, b := range boxes {
		if strings.HasPrefix(b.Name, name+string(mailbox.Delim)) {
			return true
		}
	}
	return false
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.store().Mailbox(s.ctx, s.bal, name)
	if err != nil {
		return nil, imapErr(err)
	}
	data := &imap.StatusData{Mailbox: mb.Name}
	if options.NumMessages {
		data.NumMessages = &mb.Messages
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(mb.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = mb.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &mb.Unseen
	}
	if options.NumRecent {
		data.NumRecent = &mb.Recent
	}
	if options.NumDeleted {
		data.NumDeleted = &mb.Deleted
	}
	if options.Size {
		data.Size = &mb.Size
	}
	return data, nil
}

func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	o := &mailbox.AppendOptions{Date: options.Time}
	for _, f := range options.Flags {
		o.Flags = append(o.Flags, string(f))
	}
	res, err := s.store().Append(s.ctx, s.bal, name, r, o)
	if err != nil {
		io.Copy(io.Discard, r)
		return nil, destErr(err)
	}
	return &imap.AppendData{UID: imap.UID(res.UID), UIDValidity: res.UIDValidity}, nil
}

func (s *session) AppendLimit() uint32 { return 64 << 20 }

// ---- selection and updates ----

var mailboxFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	// The folder's counters, its UIDs as runs (the sequence numbers) and its keyword list: no
	// message entry is read. Changes after mb.ModSeq reach the session through Poll.
	mb, err := s.store().Mailbox(s.ctx, s.bal, name)
	if err != nil {
		return nil, imapErr(err)
	}
	runs, err := s.store().UIDRuns(s.ctx, mb.ID)
	if err != nil {
		return nil, imapErr(err) // deleted meanwhile: NO [NONEXISTENT]
	}
	sel := &selected{id: mb.ID, name: mb.Name, readOnly: options.ReadOnly, uidValidity: mb.UIDValidity, modSeq: mb.ModSeq,
		uids: newUIDList(runs), own: map[uint32]uint64{}, recent: map[uint32]bool{}}
	sel.addKeywords(mb.Keywords)
	from := mb.RecentUID
	to := ^uint32(0)
	if !options.ReadOnly {
		// SELECT takes the \Recent messages for itself; EXAMINE only looks at them.
		if from, to, err = s.store().ClaimRecent(s.ctx, mb.ID); err != nil {
			return nil, err
		}
	}
	for k := len(runs) - 1; k >= 0 && runs[k].Last > from; k-- {
		for u, hi := max(runs[k].First, from+1), min(runs[k].Last, to); u <= hi; u++ {
			sel.recent[u] = true
			if u == hi { // hi may be the greatest uint32
				break
			}
		}
	}
	var firstUnseen uint32
	if mb.FirstUnseen != 0 {
		if seq, ok := sel.seqOf(mb.FirstUnseen); ok {
			firstUnseen = seq
		}
	}
	uidNext := mb.UIDNext
	if last := sel.uids.last(); last >= uidNext {
		uidNext = last + 1
	}
	sel.changes, sel.cancel = s.store().Watch(mb.ID)
	s.sel = sel
	data := &imap.SelectData{
		Flags:             sel.flags(),
		PermanentFlags:    append(sel.flags(), imap.FlagWildcard),
		NumMessages:       sel.uids.len(),
		NumRecent:         uint32(len(sel.recent)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(uidNext),
		UIDValidity:       mb.UIDValidity,
	}
	if options.ReadOnly {
		data.PermanentFlags = nil
	}
	return data, nil
}

// seqOf returns the sequence number of uid in the client's view (sel.uids is in UID order).
func (sel *selected) seqOf(uid uint32) (uint32, bool) {
	i, ok := sel.uids.search(uid)
	return i + 1, ok
}

// addKeywords records the keywords of flags not yet announced; it reports whether any was new.
func (sel *selected) addKeywords(flags []string) bool {
	added := false
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			continue
		}
		known := false
		for _, k := range sel.keywords {
			if strings.EqualFold(k, f) {
				known = true
				break
			}
		}
		if !known {
			sel.keywords = append(sel.keywords, f)
			added = true
		}
	}
	return added
}

func (sel *selected) knownKeyword(f string) bool {
	for _, k := range sel.keywords {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// flags is the FLAGS list of the folder: the system flags and the keywords in use.
func (sel *selected) flags() []imap.Flag {
	out := append([]imap.Flag(nil), mailboxFlags...)
	for _, k := range sel.keywords {
		out = append(out, imap.Flag(k))
	}
	return out
}

// msgFlags is a message's FLAGS as this IMAP session sees them: with \Recent, and without the
// keywords not yet announced in a FLAGS response (the next Poll announces them, then sends
// the message's flags again).
func (sel *selected) msgFlags(uid uint32, flags []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(flags)+1)
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) || sel.knownKeyword(f) {
			out = append(out, imap.Flag(f))
		}
	}
	if sel.recent[uid] {
		out = append(out, imap.Flag(`\Recent`))
	}
	return out
}

func (s *session) unselect() {
	if s.sel != nil {
		s.sel.cancel()
		s.sel = nil
	}
}

func (s *session) Unselect() error {
	s.unselect()
	return nil
}

// Poll sends the changes other sessions (or deliveries) made since the client's view.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	return s.poll(w, allowExpunge)
}

func (s *session) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.closed {
		return nil
	}
	sel := s.sel
	if sel == nil {
		return nil
	}
	cur, err := s.store().ModSeq(s.ctx, sel.id)
	if err != nil {
		return nil // folder deleted under us: nothing more to say about it
	}
	if cur == sel.modSeq && !(allowExpunge && len(sel.gone) > 0) && len(sel.echo) == 0 {
		return nil
	}
	// Only what changed since the client's view: the cost of a poll is the change.
	ch := &mailbox.Changes{ModSeq: sel.modSeq}
	if cur != sel.modSeq {
		if ch, err = s.store().Changes(s.ctx, sel.id, sel.modSeq); err != nil {
			return nil // deleted meanwhile
		}
		if ch.ExpungedUnknown { // too far behind for the store's log: compare the UIDs
			if ch.Expunged, err = s.missing(sel); err != nil {
				return nil
			}
		}
	}
	// 0. keywords new to this IMAP session, before any FETCH that uses them
	newKw := false
	for _, m := range ch.Messages {
		if sel.addKeywords(m.Flags) {
			newKw = true
		}
	}
	if newKw {
		if err := w.WriteMailboxFlags(sel.flags()); err != nil {
			return err
		}
	}
	// 1. expunges, in the client's numbering, when the command allows them
	sel.gone = append(sel.gone, ch.Expunged...)
	if allowExpunge && len(sel.gone) > 0 {
		gone := sel.gone
		sel.gone = nil
		if err := s.forget(gone, w.WriteExpunge); err != nil {
			return err
		}
	}
	// 2. new messages
	last := sel.uids.last()
	var added []uint32
	for _, m := range ch.Messages {
		if m.UID > last {
			added = append(added, m.UID)
		}
	}
	if len(added) > 0 {
		slices.Sort(added)
		for _, uid := range added {
			sel.uids.add(uid)
		}
		if !sel.readOnly {
			from, to, err := s.store().ClaimRecent(s.ctx, sel.id)
			if err != nil {
				return err
			}
			for _, uid := range added {
				if uid > from && uid <= to {
					sel.recent[uid] = true
				}
			}
		}
		if err := w.WriteNumMessages(sel.uids.len()); err != nil {
			return err
		}
		if err := w.WriteNumRecent(uint32(len(sel.recent))); err != nil {
			return err
		}
	}
	// 3. flag changes: this IMAP session's STORE echoes, then changes by others, in sequence order
	echo := make(map[uint32]bool, len(sel.echo))
	for _, uid := range sel.echo {
		echo[uid] = true
	}
	sel.echo = nil
	type update struct {
		seq, uid uint32
		flags    []string
	}
	var updates []update
	for _, m := range ch.Messages {
		if m.UID > last {
			continue
		}
		if own, ok := sel.own[m.UID]; ok && own == m.ModSeq && !echo[m.UID] {
			continue
		}
		if seq, ok := sel.seqOf(m.UID); ok {
			updates = append(updates, update{seq, m.UID, m.Flags})
		}
		delete(echo, m.UID)
	}
	if len(echo) > 0 { // echoes of a STORE that changed nothing: their flags as they are
		ms, err := s.store().MessagesByUID(s.ctx, sel.id, slices.Collect(maps.Keys(echo)))
		if err != nil {
			return err
		}
		for _, m := range ms {
			if seq, ok := sel.seqOf(m.UID); ok {
				updates = append(updates, update{seq, m.UID, m.Flags})
			}
		}
	}
	slices.SortFunc(updates, func(a, b update) int { return cmp.Compare(a.seq, b.seq) })
	for _, u := range updates {
		if err := w.WriteMessageFlags(u.seq, imap.UID(u.uid), sel.msgFlags(u.uid, u.flags)); err != nil {
			return err
		}
	}
	sel.own = map[uint32]uint64{}
	sel.modSeq = ch.ModSeq
	return nil
}

func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.pollMu.Lock()
	err := s.poll(w, true)
	var changes <-chan struct{}
	if s.sel != nil {
		changes = s.sel.changes
	}
	s.pollMu.Unlock()
	if err != nil {
		return err
	}
	// The Store's Watch signals every change, those of other processes included; IdlePoll
	// adds a check of the session's own, for a Store whose Watch does not see them.
	var tick <-chan time.Time
	if d := s.srv.opts.IdlePoll; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-stop:
			return nil
		case <-changes:
		case <-tick:
		}
		if err := s.Poll(w, true); err != nil {
			return err
		}
	}
}

func fromFlags(fs []imap.Flag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// ---- message sets ----

// target is one message of a command: its sequence number in the client's view and UID.
type target struct {
	seq uint32
	uid uint32
}

// resolve turns a sequence or UID set into the messages of the client's view, in order. Its
// cost is the number of messages named, not the size of the folder.
func (sel *selected) resolve(set imap.NumSet) []target {
	n := sel.uids.len()
	if n == 0 {
		return nil
	}
	var spans [][2]uint32 // [from, to) indexes into sel.uids
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			lo, hi := bounds(r.Start, r.Stop, n)
			if lo < 1 {
				lo = 1
			}
			if lo <= n {
				spans = append(spans, [2]uint32{lo - 1, min(hi, n)})
			}
		}
	case imap.UIDSet:
		max := sel.uids.last()
		for _, r := range set {
			lo, hi := bounds(uint32(r.Start), uint32(r.Stop), max)
			i, _ := sel.uids.search(lo)
			j, found := sel.uids.search(hi)
			if found {
				j++
			}
			if i < j {
				spans = append(spans, [2]uint32{i, j})
			}
		}
	}
	slices.SortFunc(spans, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	var out []target
	next := uint32(0) // first index not yet emitted: overlapping spans are emitted once
	for _, sp := range spans {
		for i, uid := range sel.uids.all(max(sp[0], next)) {
			if i >= sp[1] {
				break
			}
			out = append(out, target{i + 1, uid})
		}
		next = max(next, sp[1])
	}
	return out
}

func uidsOf(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.uid
	}
	return out
}

// index returns the folder's index entries by UID (for SEARCH): read whole once, then kept
// up to date with the changes since.
func (s *session) index() (map[uint32]*mailbox.Message, error) {
	sel := s.sel
	cur, err := s.store().ModSeq(s.ctx, sel.id)
	if err != nil {
		return nil, err
	}
	if sel.idx != nil && sel.idxModSeq == cur {
		return sel.idx, nil
	}
	since := sel.idxModSeq
	if sel.idx == nil {
		since = 0
	}
	ch, err := s.store().Changes(s.ctx, sel.id, since)
	if err == nil && ch.ExpungedUnknown { // too far behind for the store's log: read it whole
		sel.idx = nil
		ch, err = s.store().Changes(s.ctx, sel.id, 0)
	}
	if err != nil {
		return nil, err
	}
	if sel.idx == nil {
		sel.idx = make(map[uint32]*mailbox.Message, len(ch.Messages))
	}
	for i := range ch.Messages {
		sel.idx[ch.Messages[i].UID] = &ch.Messages[i]
	}
	for _, u := range ch.Expunged {
		delete(sel.idx, u)
	}
	sel.idxModSeq = ch.ModSeq
	return sel.idx, nil
}

// entries returns the index entries of the targets of a command, read for them alone.
func (s *session) entries(ts []target) (map[uint32]*mailbox.Message, error) {
	ms, err := s.store().MessagesByUID(s.ctx, s.sel.id, uidsOf(ts))
	if err != nil {
		return nil, err
	}
	m := make(map[uint32]*mailbox.Message, len(ms))
	for i := range ms {
		m[ms[i].UID] = &ms[i]
	}
	return m, nil
}

// maxHeaderCache bounds the header blocks a session keeps (they never change once stored).
const maxHeaderCache = 32 << 20

// headers returns the indexed header blocks of the selected folder, reading only those of
// messages added since the last call.
func (s *session) headers() (map[uint32][]byte, error) {
	sel := s.sel
	if sel.hdrsSize < 0 {
		return s.store().Headers(s.ctx, sel.id, 0) // too big to keep: read them all each time
	}
	more, err := s.store().Headers(s.ctx, sel.id, sel.hdrsUpTo)
	if err != nil {
		return nil, err
	}
	if sel.hdrs == nil {
		sel.hdrs = map[uint32][]byte{}
	}
	upTo := sel.hdrsUpTo
	for uid, h := range more {
		sel.hdrs[uid] = h
		sel.hdrsSize += len(h)
		upTo = max(upTo, uid)
	}
	all := sel.hdrs
	if sel.hdrsSize > maxHeaderCache {
		sel.hdrs, sel.hdrsSize = nil, -1
	}
	sel.hdrsUpTo = upTo
	return all, nil
}

// ---- selected state ----

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return nil // nothing can be \Deleted in a read-only view; CLOSE after EXAMINE is fine
	}
	var list []uint32
	if uids != nil {
		list = uidsOf(sel.resolve(*uids))
		if len(list) == 0 {
			return nil
		}
	}
	removed, err := s.store().Expunge(s.ctx, sel.id, list)
	if err != nil {
		return imapErr(err)
	}
	return s.forget(removed, w.WriteExpunge)
}

// missing returns the UIDs the IMAP session knows that the folder no longer holds, looking
// each up in the folder's runs of UIDs.
func (s *session) missing(sel *selected) ([]uint32, error) {
	runs, err := s.store().UIDRuns(s.ctx, sel.id)
	if err != nil {
		return nil, err
	}
	now := newUIDList(runs)
	var gone []uint32
	for _, u := range sel.uids.all(0) {
		if _, ok := now.search(u); !ok {
			gone = append(gone, u)
		}
	}
	return gone, nil
}

// forget removes uids from the client's view, reporting each with write(seq), in UID order;
// a failed write leaves the UIDs not yet reported in the view.
func (s *session) forget(uids []uint32, write func(uint32) error) error {
	sorted := slices.Compact(slices.Sorted(slices.Values(uids)))
	sel := s.sel
	var removed []uint32
	var err error
	for _, uid := range sorted {
		i, ok := sel.uids.search(uid)
		if !ok {
			continue
		}
		// the sequence number as the client knows it: those reported before are gone
		if err = write(i + 1 - uint32(len(removed))); err != nil {
			break
		}
		delete(sel.recent, uid)
		removed = append(removed, uid)
	}
	sel.uids.remove(removed)
	return err
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	ts := sel.resolve(numSet)
	if len(ts) == 0 {
		return nil
	}
	op := map[imap.StoreFlagsOp]mailbox.FlagOp{imap.StoreFlagsSet: mailbox.FlagsSet, imap.StoreFlagsAdd: mailbox.FlagsAdd, imap.StoreFlagsDel: mailbox.FlagsRemove}[flags.Op]
	res, err := s.store().StoreFlags(s.ctx, sel.id, uidsOf(ts), op, fromFlags(flags.Flags))
	if err != nil {
		return imapErr(err)
	}
	for i := range res {
		if res[i].ModSeq != 0 {
			sel.own[res[i].UID] = res[i].ModSeq
		}
		if !flags.Silent {
			// written by the Poll that imapserver runs right after this command
			sel.echo = append(sel.echo, res[i].UID)
		}
	}
	return nil
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	ts := s.sel.resolve(numSet)
	if len(ts) == 0 {
		if _, err := s.store().Mailbox(s.ctx, s.bal, dest); err != nil {
			return nil, destErr(err)
		}
		return &imap.CopyData{}, nil
	}
	res, err := s.store().Copy(s.ctx, s.sel.id, uidsOf(ts), dest)
	if err != nil {
		return nil, destErr(err)
	}
	return copyData(res), nil
}

func copyData(res *mailbox.CopyResult) *imap.CopyData {
	d := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.SourceUIDs {
		d.SourceUIDs.AddNum(imap.UID(res.SourceUIDs[i]))
		d.DestUIDs.AddNum(imap.UID(res.DestUIDs[i]))
	}
	return d
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	ts := sel.resolve(numSet)
	if len(ts) == 0 {
		if _, err := s.store().Mailbox(s.ctx, s.bal, dest); err != nil {
			return destErr(err)
		}
		return nil
	}
	res, err := s.store().Move(s.ctx, sel.id, uidsOf(ts), dest)
	if err != nil {
		return destErr(err)
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	return s.forget(res.SourceUIDs, w.WriteExpunge)
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	idx, err := s.index()
	if err != nil {
		return nil, err
	}
	var hdrs map[uint32][]byte
	if needsHeader(criteria) {
		if hdrs, err = s.headers(); err != nil {
			return nil, err
		}
	}
	matched, err := s.matches(criteria, idx, hdrs)
	if err != nil {
		return nil, err
	}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	data := &imap.SearchData{}
	for i, uid := range sel.uids.all(0) {
		if !matched[i] {
			continue
		}
		num := i + 1
		if kind == imapserver.NumKindUID {
			num = uid
			uids.AddNum(imap.UID(uid))
		} else {
			seqs.AddNum(num)
		}
		if data.Min == 0 {
			data.Min = num
		}
		data.Max = num
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

// ---- FETCH ----

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel
	ts := sel.resolve(numSet)
	if len(ts) == 0 {
		return nil
	}
	idx, err := s.entries(ts)
	if err != nil {
		return err
	}
	// Reading a body section without PEEK sets \Seen (RFC 3501 §6.4.5), before the response
	// so it can carry the new flags.
	setsSeen := false
	for _, bs := range options.BodySection {
		if !bs.Peek {
			setsSeen = true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			setsSeen = true
		}
	}
	seenChanged := map[uint32]bool{}
	if setsSeen && !sel.readOnly {
		var unseen []uint32
		for _, t := range ts {
			if m, ok := idx[t.uid]; ok && !m.HasFlag(`\Seen`) {
				unseen = append(unseen, t.uid)
			}
		}
		if len(unseen) > 0 {
			res, err := s.store().StoreFlags(s.ctx, sel.id, unseen, mailbox.FlagsAdd, []string{`\Seen`})
			if err != nil {
				return err
			}
			for i := range res {
				idx[res[i].UID].Flags = res[i].Flags
				sel.own[res[i].UID] = res[i].ModSeq
				seenChanged[res[i].UID] = true
			}
		}
	}
	var hdrs map[uint32][]byte
	if options.Envelope { // the header blocks of the targets whose envelope is not cached
		var want []uint32
		for _, t := range ts {
			if !s.srv.envs.has(sel.envKey(t.uid)) {
				want = append(want, t.uid)
			}
		}
		if len(want) > 0 {
			if hdrs, err = s.store().HeadersByUID(s.ctx, sel.id, want); err != nil {
				return err
			}
		}
	}
	needsContent := options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	if !needsContent {
		for _, t := range ts {
			m, ok := idx[t.uid]
			if !ok {
				continue // expunged by another session, not yet reported to this one
			}
			if err := s.fetchOne(w, t, m, options, seenChanged[t.uid], hdrs[t.uid], nil, 0); err != nil {
				return err
			}
		}
		return nil
	}
	// One index lookup for all the files; each stays readable while its response is written,
	// even if another session expunges it meanwhile; those already gone are left out.
	bySeq := make(map[uint32]target, len(ts))
	uids := make([]uint32, 0, len(ts))
	for _, t := range ts {
		if _, ok := idx[t.uid]; ok {
			bySeq[t.uid] = t
			uids = append(uids, t.uid)
		}
	}
	if len(uids) == 1 { // one message: one Open, one query on PostgreSQL where Read takes two
		u := uids[0]
		f, size, err := s.store().Open(s.ctx, sel.id, u)
		if errors.Is(err, mailbox.ErrNoMessage) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		ra, ok := f.(io.ReaderAt)
		if !ok {
			b := make([]byte, size)
			if _, err := io.ReadFull(f, b); err != nil {
				return err
			}
			ra = bytes.NewReader(b)
		}
		return s.fetchOne(w, bySeq[u], idx[u], options, seenChanged[u], hdrs[u], ra, size)
	}
	return s.store().Read(s.ctx, sel.id, uids, func(uid uint32, r io.ReaderAt, size int64) error {
		return s.fetchOne(w, bySeq[uid], idx[uid], options, seenChanged[uid], hdrs[uid], r, size)
	})
}

func (s *session) fetchOne(w *imapserver.FetchWriter, t target, m *mailbox.Message, options *imap.FetchOptions, flagsChanged bool, hdr []byte, ra io.ReaderAt, size int64) (err error) {
	c := &content{s: s, uid: t.uid, raw: hdr, ra: ra, size: size}
	defer c.close()
	var env *imap.Envelope
	if options.Envelope {
		env = s.srv.envs.get(s.sel.envKey(t.uid))
	}
	if options.Envelope && env == nil && hdr == nil && ra == nil {
		// Open the message before starting its response: once open it stays readable even if
		// another session expunges it; if it is already gone, it is left out.
		if _, _, err := c.file(); err != nil {
			if errors.Is(err, mailbox.ErrNoMessage) {
				return nil
			}
			return err
		}
	}
	// The response writer holds the connection's write lock until Close: close it on every path.
	rw := w.CreateMessage(t.seq)
	closed := false
	defer func() {
		if !closed {
			if cerr := rw.Close(); err == nil {
				err = cerr
			}
		}
	}()
	if options.UID {
		rw.WriteUID(imap.UID(t.uid))
	}
	if options.Flags || flagsChanged {
		rw.WriteFlags(s.sel.msgFlags(t.uid, m.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		if env == nil {
			h, err := c.header()
			if err != nil {
				return err
			}
			env = envelope(h)
			s.srv.envs.put(s.sel.envKey(t.uid), env)
		}
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		b, err := c.bytes()
		if err != nil {
			return err
		}
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(b)))
	}
	for _, bs := range options.BodySection {
		if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && bs.Partial == nil {
			// whole message: streamed from its file
			f, size, err := c.file()
			if err != nil {
				return err
			}
			wc := rw.WriteBodySection(bs, size)
			err = s.copyFile(wc, f, size)
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		}
		b, err := c.bytes()
		if err != nil {
			return err
		}
		sec := imapserver.ExtractBodySection(bytes.NewReader(b), bs)
		wc := rw.WriteBodySection(bs, int64(len(sec)))
		_, err = wc.Write(sec)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b, err := c.bytes()
		if err != nil {
			return err
		}
		sec := imapserver.ExtractBinarySection(bytes.NewReader(b), bs)
		wc := rw.WriteBinarySection(bs, int64(len(sec)))
		_, err = wc.Write(sec)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		b, err := c.bytes()
		if err != nil {
			return err
		}
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(b), bss))
	}
	closed = true
	return rw.Close()
}

// copyFile writes the size bytes of f to w through the session's buffer (io.Copy would
// allocate 32 KB for every message).
func (s *session) copyFile(w io.Writer, f io.ReaderAt, size int64) error {
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 64<<10)
	}
	for off := int64(0); off < size; {
		n, err := f.ReadAt(s.copyBuf[:min(int64(len(s.copyBuf)), size-off)], off)
		if n > 0 {
			if _, werr := w.Write(s.copyBuf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err != nil && (err != io.EOF || off < size) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the file is shorter than the index says
			}
			return err
		}
	}
	return nil
}

// content opens a message lazily, once, for the items of one FETCH response or one SEARCH.
type content struct {
	s    *session
	uid  uint32
	raw  []byte // the indexed header block, when known
	ra   io.ReaderAt
	f    io.ReadSeekCloser
	size int64
	buf  []byte
	hdr  *textproto.Header
}

func (c *content) file() (io.ReaderAt, int64, error) {
	if c.ra != nil {
		return c.ra, c.size, nil
	}
	if c.f == nil {
		f, size, err := c.s.store().Open(c.s.ctx, c.s.sel.id, c.uid)
		if err != nil {
			return nil, 0, err
		}
		c.f, c.size = f, size
	}
	if ra, ok := c.f.(io.ReaderAt); ok {
		return ra, c.size, nil
	}
	b, err := c.bytes()
	return bytes.NewReader(b), int64(len(b)), err
}

func (c *content) bytes() ([]byte, error) {
	if c.buf != nil {
		return c.buf, nil
	}
	if c.ra != nil {
		b := make([]byte, c.size)
		if _, err := c.ra.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && c.size == 0) {
			return nil, err
		}
		c.buf = b
		return b, nil
	}
	if c.f == nil {
		f, size, err := c.s.store().Open(c.s.ctx, c.s.sel.id, c.uid)
		if err != nil {
			return nil, err
		}
		c.f, c.size = f, size
	}
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := make([]byte, c.size)
	if _, err := io.ReadFull(c.f, b); err != nil {
		return nil, err
	}
	c.buf = b
	return b, nil
}

func (c *content) header() (textproto.Header, error) {
	if c.hdr != nil {
		return *c.hdr, nil
	}
	var r io.Reader
	if c.buf != nil {
		r = bytes.NewReader(c.buf)
	} else if c.raw != nil {
		r = bytes.NewReader(c.raw)
	} else {
		f, size, err := c.file()
		if err != nil {
			return textproto.Header{}, err
		}
		r = io.NewSectionReader(f, 0, size)
	}
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		h = textproto.Header{} // a malformed header still gets an (empty) envelope
	}
	c.hdr = &h
	return h, nil
}

func (c *content) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}
