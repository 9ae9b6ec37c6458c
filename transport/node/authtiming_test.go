package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// A failed password login takes as long for an address that has no BAL as for a BAL with a
// wrong password, over IMAPS and over submission: the answer time does not tell which
// addresses exist. Medians of interleaved tries; the bounds are wide because only a missing
// key derivation (a ratio near 100) is the defect.
func TestLoginTimingDoesNotRevealAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	per := "dr.martin@" + a.domain
	a.extra = "[submission]\nallow_plain = true\n" +
		"[[bal]]\naddress = \"" + per + "\"\ntype = \"PER\"\nlogin = \"" + per + "\"\npassword = \"correct horse battery\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := s.start(t, ctx, a, nil)

	imapLogin := func(user string) time.Duration {
		t.Helper()
		c, err := imapclient.DialTLS(a.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(a, nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if err := c.Authenticate(sasl.NewPlainClient("", user, "wrong horse battery")); err == nil {
			t.Fatalf("IMAP login of %s with a wrong password accepted", user)
		}
		return time.Since(start)
	}
	smtpLogin := func(user string) time.Duration {
		t.Helper()
		c, err := smtp.DialStartTLS(a.addr("submission"), s.clientTLS(a, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Auth(sasl.NewPlainClient("", user, "wrong horse battery")); err == nil {
			t.Fatalf("submission login of %s with a wrong password accepted", user)
		}
		return time.Since(start)
	}
	for _, p := range []struct {
		name  string
		login func(string) time.Duration
	}{{"imaps", imapLogin}, {"submission", smtpLogin}} {
		const tries = 20
		var known, unknown []time.Duration
		for range tries {
			known = append(known, p.login(per))
			unknown = append(unknown, p.login("nobody@"+a.domain))
		}
		mk, mu := median(known), median(unknown)
		ratio := float64(mk) / float64(mu)
		t.Logf("%s: median wrong password %v, unknown address %v, ratio %.2f", p.name, mk, mu, ratio)
		if ratio < 0.5 || ratio > 2 {
			t.Errorf("%s: a known address with a wrong password takes %v, an unknown one %v (ratio %.1f, want 0.5–2)",
				p.name, mk, mu, ratio)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func median(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}
