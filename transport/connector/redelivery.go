package connector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/mail"
	"strings"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/queue"
)

// Redelivery from a peer operator or a BAL. SMTP is at least once: a sender that
// crashes after our 250 but before recording it, or loses the reply with the connection,
// hands the message over again, as RFC 5321 §6.1 and §4.5.4.1 make it do. The relay and the
// submission server give each message a key, and the queue commits a message once per recipient and key within its
// window (queue.Envelope.RedeliveryKey): the sender gets its 250 again and stops, the
// recipient keeps one copy.
//
// The key holds what makes a message the same message from the same sender: the peer's
// certificate DN (the operator the liste blanche lists) or the authenticated BAL, the reverse path, the Message-ID,
// which RFC 5322 §3.6.4 makes unique to one message, and a SHA-256 of the content as received
// (after the Received field we add): the same Message-ID on other content, from a faulty
// client, is not taken for a redelivery. A message without exactly one Message-ID gets no key
// and is stored each time, as before.

// digestWriter returns what the message content is written to in Data: w and, on the relay
// or for an authenticated BAL on submission, the session's digest.
func (ss *session) digestWriter(w io.Writer) io.Writer {
	ss.digest = nil
	if ss.sender() == "" {
		return w
	}
	ss.digest = sha256.New()
	return io.MultiWriter(w, ss.digest)
}

// redeliveryKey returns the key of the message whose header block is hdr, once its content is
// written, or "" when it has none.
func (ss *session) redeliveryKey(hdr []byte) string {
	sender := ss.sender()
	if ss.digest == nil || sender == "" {
		return ""
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte(nil), hdr...), "\r\n"...)))
	if err != nil {
		return ""
	}
	ids := m.Header["Message-Id"]
	if len(ids) != 1 || strings.TrimSpace(ids[0]) == "" {
		return ""
	}
	k := sha256.New()
	for _, p := range []string{"mssante redelivery 1", sender, ss.from, strings.TrimSpace(ids[0])} {
		io.WriteString(k, p)
		k.Write([]byte{0})
	}
	k.Write(ss.digest.Sum(nil))
	return hex.EncodeToString(k.Sum(nil))
}

// sender names who hands the message over, for its key: on the relay the peer operator's
// certificate DN, on submission the BAL the session authenticated ("" before that). A BAL's
// software retries a submission whose reply it lost just as an operator does (RFC 5321
// §6.1), so the same message from the same BAL is also stored once per recipient.
func (ss *session) sender() string {
	if ss.s.opts.Mode == ModeRelay {
		return ss.dn
	}
	if ss.bal == "" {
		return ""
	}
	return "bal " + ss.bal
}

// auditRedelivered records the recipients the queue left out as redelivered, one record per
// message that holds them.
func (ss *session) auditRedelivered(dups []queue.Redelivered) {
	byID := map[string][]string{}
	var ids []string
	for _, d := range dups {
		if byID[d.ID] == nil {
			ids = append(ids, d.ID)
		}
		byID[d.ID] = append(byID[d.ID], d.Addr)
	}
	for _, id := range ids {
		ss.s.audit(&audit.Record{Event: audit.EventRedelivered, MsgID: id, From: ss.from, Rcpts: byID[id], PeerAddr: ss.peerAddr,
			PeerDN: ss.dn, TLS: ss.tlsVersion(), Code: "250 2.0.0"})
	}
}

// committedRcpts returns the recipients of the session that the queue did not leave out.
func (ss *session) committedRcpts(dups []queue.Redelivered) []string {
	all := ss.rcptAddrs()
	if len(dups) == 0 {
		return all
	}
	left := map[string]bool{}
	for _, d := range dups {
		left[d.Addr] = true
	}
	var out []string
	for _, a := range all {
		if !left[a] {
			out = append(out, a)
		}
	}
	return out
}
