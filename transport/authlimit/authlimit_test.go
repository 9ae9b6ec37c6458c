package authlimit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// shared, when set, are the counters the tests' limiters use instead of memory: the
// conformance test over PostgreSQL sets it while it runs the behaviour tests again.
var shared authlimit.Counters

func newLimiter(o authlimit.Options) (*authlimit.Limiter, *clock) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	o.Now = c.now
	o.Counters = shared
	return authlimit.New(&o), c
}

// before runs Before with a deadline and reports whether it waited (the deadline ended it),
// was refused, or passed at once. The deadline leaves a database the time to answer.
func before(c *authlimit.Conn, account string) string {
	wait := 20 * time.Millisecond
	if shared != nil {
		wait = 300 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	switch err := c.Before(ctx, account); {
	case err == nil:
		return "pass"
	case errors.Is(err, authlimit.ErrLocked):
		return "locked"
	case errors.Is(err, authlimit.ErrUnavailable):
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "delayed"
	default:
		return err.Error()
	}
}

func TestLimits(t *testing.T) {
	const acct = "dr.martin@hopital.mssante.fr"
	l, clk := newLimiter(authlimit.Options{Delay: time.Hour, MaxDelay: 2 * time.Hour})
	attacker := "192.0.2.7:4711"
	// The connection is closed at its third failure.
	c := l.Conn("imap", attacker)
	for i := 1; i <= 3; i++ {
		if got := before(c, acct); got != "pass" {
			t.Fatalf("attempt %d: %s, want pass", i, got)
		}
		err := c.Failed(acct)
		if (i == 3) != errors.Is(err, authlimit.ErrTooManyFailures) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Past the free failures, the next attempt from that address waits, on any connection and
	// through the other protocol.
	if got := before(l.Conn("submission", "192.0.2.7:5000"), acct); got != "delayed" {
		t.Fatalf("4th attempt: %s, want delayed", got)
	}
	// The owner, elsewhere, passes at once; so does the address on another account.
	if got := before(l.Conn("imap", "198.51.100.1:1234"), acct); got != "pass" {
		t.Fatalf("owner from another address: %s", got)
	}
	if got := before(l.Conn("imap", attacker), "other@hopital.mssante.fr"); got != "pass" {
		t.Fatalf("same address, other account: %s", got)
	}
	// Up to LockoutFailures: refused without a check.
	c = l.Conn("imap", attacker)
	for range 7 {
		c.Failed(acct)
	}
	if got := before(l.Conn("imap", attacker), acct); got != "locked" {
		t.Fatalf("after 10 failures: %s, want locked", got)
	}
	if got := before(l.Conn("imap", "198.51.100.1:1234"), acct); got != "pass" {
		t.Fatalf("owner from another address during the lockout: %s", got)
	}
	// The window ends it.
	clk.add(15 * time.Minute)
	if got := before(l.Conn("imap", attacker), acct); got != "pass" {
		t.Fatalf("after the window: %s", got)
	}
}

func TestAddressLimits(t *testing.T) {
	l, _ := newLimiter(authlimit.Options{Delay: time.Hour, FreeAddressFailures: 4, LockoutAddressFailures: 8})
	// One failure on each of many accounts (a spray) from one address: delayed past 4,
	// refused past 8, on an account never tried.
	c := l.Conn("imap", "203.0.113.9:1")
	for i := range 4 {
		c.Failed(fmt.Sprintf("u%d@h.fr", i))
	}
	if got := before(c, "fresh@h.fr"); got != "delayed" {
		t.Fatalf("after 4: %s, want delayed", got)
	}
	for i := range 4 {
		c.Failed(fmt.Sprintf("v%d@h.fr", i))
	}
	if got := before(c, "fresh@h.fr"); got != "locked" {
		t.Fatalf("after 8: %s, want locked", got)
	}
	// An IPv6 host holds its /64: another address of it is the same source.
	l6, _ := newLimiter(authlimit.Options{Delay: time.Hour, LockoutFailures: 2})
	l6.Conn("imap", "[2001:db8:1:2::10]:1").Failed("a@h.fr")
	l6.Conn("imap", "[2001:db8:1:2::99]:1").Failed("a@h.fr")
	if got := before(l6.Conn("imap", "[2001:db8:1:2:ffff::1]:1"), "a@h.fr"); got != "locked" {
		t.Fatalf("same /64: %s, want locked", got)
	}
	if got := before(l6.Conn("imap", "[2001:db8:1:3::10]:1"), "a@h.fr"); got != "pass" {
		t.Fatalf("other /64: %s, want pass", got)
	}
}

// A token login that names no account counts on its address only: the address is braked as
// for a spray, and no shared "" account locks out other addresses.
func TestNoAccountLimit(t *testing.T) {
	l, _ := newLimiter(authlimit.Options{Delay: time.Hour, FreeAddressFailures: 2, LockoutAddressFailures: 4,
		AccountFailures: 3, MaxConnFailures: 100})
	c := l.Conn("imap", "192.0.2.1:1")
	for range 2 {
		c.Failed("")
	}
	if got := before(c, ""); got != "delayed" {
		t.Fatalf("after 2: %s, want delayed", got)
	}
	for range 2 {
		c.Failed("")
	}
	if got := before(c, "a@h.fr"); got != "locked" {
		t.Fatalf("after 4, on an account: %s, want locked", got)
	}
	if n := l.Tracked(); shared == nil && n != 1 {
		t.Fatalf("%d counters, want the address's only", n)
	}
	for i := range 3 {
		l.Conn("imap", fmt.Sprintf("198.51.100.%d:1", i)).Failed("")
	}
	if got := before(l.Conn("imap", "198.51.100.1:2"), ""); got != "pass" {
		t.Fatalf("an address with one failure: %s, want pass", got)
	}
}

// A guess spread over many addresses: past AccountFailures, an address that has failed on the
// account is refused, one that has not still passes.
func TestAccountLimit(t *testing.T) {
	l, _ := newLimiter(authlimit.Options{Delay: time.Hour, AccountFailures: 5})
	for i := range 5 {
		l.Conn("imap", fmt.Sprintf("192.0.2.%d:1", i)).Failed("a@h.fr")
	}
	if got := before(l.Conn("imap", "192.0.2.1:2"), "a@h.fr"); got != "locked" {
		t.Fatalf("a failed address: %s, want locked", got)
	}
	if got := before(l.Conn("imap", "198.51.100.1:2"), "a@h.fr"); got != "pass" {
		t.Fatalf("a clean address: %s, want pass", got)
	}
	// A success forgets the account's count.
	l.Conn("imap", "198.51.100.1:2").Succeeded("a@h.fr")
	l.Conn("imap", "192.0.2.6:1").Failed("a@h.fr")
	if got := before(l.Conn("imap", "192.0.2.6:1"), "a@h.fr"); got != "pass" {
		t.Fatalf("after the owner's success: %s, want pass", got)
	}
}

// Delays grow from Delay, doubling, and stop at MaxDelay. Real sleeps: the upper margin is
// wide for a loaded machine, yet below the next doubling, so a missing cap still fails.
func TestDelayGrows(t *testing.T) {
	const ms = time.Millisecond
	l, _ := newLimiter(authlimit.Options{Delay: 50 * ms, MaxDelay: 200 * ms, FreeFailures: 1, LockoutFailures: 100, MaxConnFailures: 100})
	c := l.Conn("imap", "192.0.2.1:1")
	var got []time.Duration
	for range 5 {
		c.Failed("a@h.fr")
		start := time.Now()
		if err := c.Before(context.Background(), "a@h.fr"); err != nil {
			t.Fatal(err)
		}
		got = append(got, time.Since(start).Round(10*ms))
	}
	want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 200 * ms, 200 * ms}
	for i := range want {
		if got[i] < want[i] || got[i] > want[i]+150*ms {
			t.Fatalf("delays %v, want about %v", got, want)
		}
	}
}

// Memory is bounded: the oldest counters are dropped past MaxTracked, and idle ones after the
// window.
func TestBoundedMemory(t *testing.T) {
	l, clk := newLimiter(authlimit.Options{MaxTracked: 100})
	for i := range 1000 {
		l.Conn("imap", fmt.Sprintf("10.0.%d.%d:1", i/256, i%256)).Failed(fmt.Sprintf("u%d@h.fr", i))
	}
	if n := l.Tracked(); n > 100 {
		t.Fatalf("%d counters kept, want ≤ 100", n)
	}
	clk.add(time.Hour)
	l.Conn("imap", "192.0.2.1:1").Failed("a@h.fr")
	if n := l.Tracked(); n != 3 {
		t.Fatalf("%d counters after the window, want 3", n)
	}
}

// Each failure and refusal is audited, with the login only when it is an address.
func TestAudit(t *testing.T) {
	dir := t.TempDir()
	a, err := audit.Open(&audit.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := newLimiter(authlimit.Options{Audit: a, Delay: time.Hour, LockoutFailures: 2})
	c := l.Conn("submission", "192.0.2.1:25")
	c.Failed("a@h.fr")
	c.Failed("hunter2 oops")
	c.Failed("a@h.fr")
	before(l.Conn("submission", "192.0.2.1:26"), "a@h.fr")
	before(l.Conn("submission", "192.0.2.1:26"), "a@h.fr")
	a.Close()
	f, err := os.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "hunter2") {
			t.Errorf("a login that is not an address reached the audit: %s", sc.Text())
		}
		var r audit.Record
		json.Unmarshal(sc.Bytes(), &r)
		got = append(got, fmt.Sprintf("%s %s %s %s %d %s", r.Event, r.Source, r.PeerAddr, r.BAL, r.Attempts, r.Reason))
	}
	want := []string{
		"auth_failed submission 192.0.2.1:25 a@h.fr 1 bad_credentials",
		"auth_failed submission 192.0.2.1:25  2 bad_credentials",
		"auth_failed submission 192.0.2.1:25 a@h.fr 3 bad_credentials_disconnect",
		"auth_failed submission 192.0.2.1:26 a@h.fr 0 locked_out",
		"auth_failed submission 192.0.2.1:26 a@h.fr 0 locked_out",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func BenchmarkFailed(b *testing.B) {
	l := authlimit.New(nil)
	for i := 0; b.Loop(); i++ {
		l.Conn("imap", fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)).Failed("a@h.fr")
	}
}
