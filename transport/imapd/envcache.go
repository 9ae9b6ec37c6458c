package imapd

import (
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// envCacheBytes bounds the memory of the envelopes the server keeps (estimated).
const envCacheBytes = 8 << 20

// envKey names a message for good: a UID is never given twice in a folder under one
// UIDVALIDITY (RFC 3501 §2.3.1.1), and a folder created again gets another UIDVALIDITY.
type envKey struct {
	mbox        mailbox.MailboxID
	uidValidity uint32
	uid         uint32
}

// envCache keeps the envelopes of the messages fetched last, shared by the server's sessions:
// a message's header never changes, and building its envelope (parsing the header, its
// addresses and date) is most of what a FETCH ENVELOPE costs. Dovecot keeps them in its
// index cache for the same reason. Oldest out first, within envCacheBytes.
type envCache struct {
	mu    sync.Mutex
	m     map[envKey]*imap.Envelope
	order []envKey // insertion order; order[head:] are in m
	head  int
	size  int
}

// get returns the cached envelope of k, or nil. The envelope is shared: read it only.
func (c *envCache) get(k envKey) *imap.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

// has reports whether k is cached.
func (c *envCache) has(k envKey) bool { return c.get(k) != nil }

func (c *envCache) put(k envKey, e *imap.Envelope) {
	n := envSize(e)
	if n > envCacheBytes/16 {
		return // a huge header is not worth the room
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[envKey]*imap.Envelope{}
	}
	if _, ok := c.m[k]; ok {
		return
	}
	for c.size+n > envCacheBytes && c.head < len(c.order) {
		old := c.order[c.head]
		c.head++
		c.size -= envSize(c.m[old])
		delete(c.m, old)
	}
	if c.head > len(c.order)/2 { // drop the evicted prefix now and then
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	c.m[k] = e
	c.order = append(c.order, k)
	c.size += n
}

// envSize estimates the memory an envelope holds.
func envSize(e *imap.Envelope) int {
	n := 256 + len(e.Subject) + len(e.MessageID)
	for _, id := range e.InReplyTo {
		n += 16 + len(id)
	}
	for _, l := range [][]imap.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		for _, a := range l {
			n += 64 + len(a.Name) + len(a.Mailbox) + len(a.Host)
		}
	}
	return n
}
