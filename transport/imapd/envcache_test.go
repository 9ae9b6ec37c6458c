package imapd

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestEnvelopeCache: the second session fetching a message's envelope gets it from the
// server's cache, identical; a folder deleted and created again reuses UID 1 under another
// UIDVALIDITY, and its new message never gets the envelope of the old one.
func TestEnvelopeCache(t *testing.T) {
	e := newEnv(t)
	envOf := func(box string) *imap.Envelope {
		t.Helper()
		c := e.dialApp(t, nil)
		if _, err := c.Select(box, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, UID: true}).Collect()
		if err != nil || len(msgs) != 1 || msgs[0].Envelope == nil {
			t.Fatalf("FETCH ENVELOPE = %v, %v", msgs, err)
		}
		c.Logout()
		return msgs[0].Envelope
	}
	c := e.dialApp(t, nil)
	if err := c.Create("Dossier", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "Dossier", "From: A <a@b.org>\r\nSubject: premier\r\nMessage-ID: <1@b.org>\r\n\r\nx\r\n")
	first := envOf("Dossier")
	if first.Subject != "premier" || len(first.From) != 1 || first.From[0].Host != "b.org" {
		t.Fatalf("envelope = %+v", first)
	}
	if n := e.srv.envs.len(); n != 1 {
		t.Fatalf("%d envelopes cached, want 1", n)
	}
	if again := envOf("Dossier"); again.Subject != first.Subject || again.MessageID != first.MessageID {
		t.Fatalf("second session: %+v, want %+v", again, first)
	}
	if n := e.srv.envs.len(); n != 1 {
		t.Fatalf("%d envelopes cached after the second FETCH, want 1", n)
	}
	if err := c.Delete("Dossier").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Dossier", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if d := appendMsg(t, c, "Dossier", "From: C <c@d.org>\r\nSubject: second\r\n\r\ny\r\n"); d.UID != 1 {
		t.Fatalf("UID %d in the new folder, want 1 (the case under test)", d.UID)
	}
	if got := envOf("Dossier"); got.Subject != "second" || got.From[0].Host != "d.org" {
		t.Fatalf("new folder, UID 1: envelope %+v, the old message's?", got)
	}
}

// TestEnvCacheBound fills the cache beyond its bound: the oldest envelopes leave, the size
// stays under envCacheBytes, and an envelope too big to be worth the room is not kept.
func TestEnvCacheBound(t *testing.T) {
	var c envCache
	subject := strings.Repeat("s", 1000)
	n := 2 * envCacheBytes / envSize(&imap.Envelope{Subject: subject})
	for i := range n {
		c.put(envKey{mbox: 1, uidValidity: 1, uid: uint32(i + 1)}, &imap.Envelope{Subject: subject})
	}
	if c.size > envCacheBytes || len(c.m) >= n {
		t.Fatalf("%d envelopes, %d bytes: bound %d", len(c.m), c.size, envCacheBytes)
	}
	if c.has(envKey{1, 1, 1}) || !c.has(envKey{1, 1, uint32(n)}) {
		t.Fatal("the oldest envelope should be gone and the newest kept")
	}
	if len(c.order)-c.head != len(c.m) {
		t.Fatalf("order holds %d keys for %d envelopes", len(c.order)-c.head, len(c.m))
	}
	big := &imap.Envelope{Subject: strings.Repeat("x", envCacheBytes/8)}
	c.put(envKey{2, 1, 1}, big)
	if c.has(envKey{2, 1, 1}) {
		t.Fatal("an envelope of an eighth of the cache was kept")
	}
}

func (c *envCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
