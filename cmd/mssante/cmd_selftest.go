package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/whitelist"
)

const selftestUsage = `[--state DIR] [--bal ADDRESS] [--outside ADDRESS] [--timeout D]

Runs the two acceptance checks of a BAL against the trust space of "mssante dev":
  1. send a message to the test responder through the BAL's submission server and wait, on
     the BAL's IMAP server, for its automatic answer; print the round trip;
  2. confirm that a message to an address outside MSSanté is refused: by the liste blanche
     (nothing is sent) and by the operator's submission server (5xx at RCPT).
Exits 0 when both pass, 1 otherwise.`

func runSelftest(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "selftest", selftestUsage)
	state := fs.String("state", defaultDevState(), "state folder of \"mssante dev\"")
	balAddr := fs.String("bal", "dpi@"+sandbox.Hopital, "the BAL that runs the checks")
	outside := fs.String("outside", "selftest@example.com", "an address outside MSSanté")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the responder's answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	info, err := sandbox.Load(*state)
	if err != nil {
		return err
	}
	if info.BAL(*balAddr) == nil {
		return exitCode(2, fmt.Errorf("%s is not a BAL of the trust space in %s", *balAddr, info.Dir))
	}
	if info.Responder == "" {
		return errors.New("this trust space runs no test responder")
	}
	failed := false
	report := func(err error, okText string) {
		if err != nil {
			failed = true
			fmt.Fprintf(e.stdout, "  FAIL  %v\n", err)
			return
		}
		fmt.Fprintf(e.stdout, "  ok    %s\n", okText)
	}

	fmt.Fprintf(e.stdout, "1. %s → %s and back\n", *balAddr, info.Responder)
	rtt, err := selftestRoundTrip(ctx, info, *balAddr, *timeout)
	report(err, fmt.Sprintf("automatic answer received after %s (submission, relay between operators, responder, relay back, IMAP)",
		rtt.Round(time.Millisecond)))

	fmt.Fprintf(e.stdout, "2. %s → %s (not MSSanté) is refused\n", *balAddr, *outside)
	list, err := info.Whitelist()
	if err == nil {
		_, domain, _ := cutAt(*outside)
		if err = list.CheckDomain(domain); errors.Is(err, whitelist.ErrDomainNotListed) {
			report(nil, "the liste blanche does not list "+domain+": a BAL client sends nothing")
		} else if err == nil {
			report(fmt.Errorf("%s is on the liste blanche", domain), "")
		} else {
			report(err, "")
		}
	} else {
		report(fmt.Errorf("liste blanche: %w", err), "")
	}
	msg := selftestMessage(*balAddr, *outside, selftestID())
	err = info.Submit(ctx, *balAddr, []string{*outside}, msg)
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se) && se.Code >= 500:
		report(nil, fmt.Sprintf("the submission server refused it: %d %d.%d.%d %s", se.Code,
			se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message))
	case err == nil:
		report(errors.New("the submission server accepted a message for a domain outside MSSanté"), "")
	default:
		report(fmt.Errorf("the submission server did not answer as expected: %w", err), "")
	}
	if failed {
		return exitCode(1, errors.New("selftest failed"))
	}
	fmt.Fprintln(e.stdout, "selftest passed")
	return nil
}

func cutAt(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

func selftestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "selftest." + hex.EncodeToString(b) + "@mssante-go"
}

func selftestMessage(from, to, id string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: mssante selftest\r\nMessage-ID: <%s>\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTest d'émission et de réception (mssante selftest).\r\n",
		from, to, id, time.Now().Format(time.RFC1123Z)))
}

// selftestRoundTrip sends to the responder and waits for the answer that refers to the sent
// message (In-Reply-To), returning the time it took.
func selftestRoundTrip(ctx context.Context, info *sandbox.Info, bal string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := selftestID()
	start := time.Now()
	if err := info.Submit(ctx, bal, []string{info.Responder}, selftestMessage(bal, info.Responder, id)); err != nil {
		return 0, fmt.Errorf("sending to the responder: %w", err)
	}
	reply, err := info.WaitFor(ctx, bal, func(raw []byte) bool {
		return bytes.Contains(raw, []byte("In-Reply-To: <"+id+">"))
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for the responder's answer: %w", err)
	}
	if !bytes.Contains(reply, []byte("Auto-Submitted: auto-replied")) {
		return 0, errors.New("the answer is not marked Auto-Submitted: auto-replied (RFC 3834)")
	}
	return time.Since(start), nil
}
