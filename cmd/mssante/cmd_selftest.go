package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/textproto"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
)

const selftestUsage = `[--sandbox DIR | --from ADDRESS connection options] [--responder ADDRESS] [--outside ADDRESS] [--json]

Runs the two acceptance checks of a BAL, with the BAL client a DPI embeds (package bal):
  1. send a message to the test responder and wait, on the BAL's mailbox, for its automatic
     answer (RFC 3834); print the round trip;
  2. confirm that a message to an address outside MSSanté is refused: the client checks every
     recipient against the liste blanche and sends nothing. With --dev, the operator's
     submission server is also asked directly, and must refuse it (5xx).
By default, and with --sandbox DIR, they run in the trust space of "mssante dev" (default
BAL dpi@hopital.dev.mssante.fr, its responder; the default folder is the one "mssante dev"
uses, so a bare "mssante selftest" in the folder where "mssante dev" runs works). For your BAL
and operator, give the connection options of "mssante send" (--submission, --imap,
--whitelist, the certificate…); the responder is then reponse.automatique@test.mssante.fr.
Before the ANS lists your domain, give --responder the address of your own connector's
responder ([responder] address, in the BAL's domain): check 1 then runs through your
connector alone (the client does not look the BAL's own domain up on the liste blanche),
and check 2 as usual.
--dev is the old name of --sandbox. Exits 0 when both pass, 1 otherwise.

With --json, one JSON object a line per check instead of text:
  {"check":1,"name":"responder round trip","status":"ok"|"fail","detail":…}
  {"check":2,"name":"non-MSSanté recipient refused by the client",…}
  {"check":2,"name":"non-MSSanté recipient refused by the submission server",…} (sandbox only)`

// selftestResponder is the test responder of the MSSanté trust space (the ANS texts read do not
// document it; --responder names another).
const selftestResponder = "reponse.automatique@test.mssante.fr"

func runSelftest(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "selftest", selftestUsage)
	var cf connFlags
	cf.register(fs)
	responder := fs.String("responder", "", "the test responder (default: the trust space's)")
	outside := fs.String("outside", "selftest@example.com", "an address outside MSSanté")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the responder's answer")
	asJSON := fs.Bool("json", false, "print one JSON object a line per check (fields above)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		return exitCode(2, fmt.Errorf("unexpected argument %q: every input is an option (see --help)", fs.Arg(0)))
	}
	if cf.explicitOperator() && cf.from == "" {
		return exitCode(2, errors.New("--from is required with the connection options of an operator: the address of the BAL to test"))
	}
	cf.sandboxDefault()
	var info *sandbox.Info
	if cf.dev != "" {
		var err error
		if info, err = loadSandbox(cf.dev); err != nil {
			return err
		}
		if cf.from == "" {
			cf.from = "dpi@" + sandbox.Hopital
		}
		if info.BAL(cf.from) == nil {
			return exitCode(2, fmt.Errorf("%s is not a BAL of the trust space in %s: use one of %s", cf.from, info.Dir, sandboxBALs(info)))
		}
		if cf.state == "" { // the client's outbox and checkpoint stay with the trust space
			cf.state = filepath.Join(info.Dir, "selftest", cf.from)
		}
		if *responder == "" {
			*responder = info.Responder
		}
	}
	if *responder == "" {
		*responder = selftestResponder
	}
	// A responder of the BAL's own domain ([responder] address of its connector) tests the
	// connector before the ANS lists the domain: its connector delivers there locally, so
	// the client need not find the domain on the list. Other domains are still checked.
	_, fromDomain, _ := strings.Cut(cf.from, "@")
	_, respDomain, _ := strings.Cut(*responder, "@")
	own := fromDomain != "" && strings.EqualFold(fromDomain, respDomain)
	if own {
		cf.ownDomain = fromDomain
	}
	if cf.nil_ == "" {
		cf.nil_ = "MSSANTE-GO-SELFTEST"
	}
	client, err := cf.client(e)
	if err != nil {
		return err
	}
	defer client.Close()

	failed := false
	check, name := 0, ""
	heading := func(n int, checkName, text string) {
		check, name = n, checkName
		if !*asJSON {
			fmt.Fprintln(e.stdout, text)
		}
	}
	report := func(err error, okText string) {
		line := selftestJSON{Check: check, Name: name, Status: "ok", Detail: okText}
		if err != nil {
			failed = true
			line.Status, line.Detail = "fail", err.Error()
		}
		switch {
		case *asJSON:
			jsonLine(e.stdout, line)
		case err != nil:
			fmt.Fprintf(e.stdout, "  FAIL  %v\n", err)
		default:
			fmt.Fprintf(e.stdout, "  ok    %s\n", okText)
		}
	}

	heading(1, "responder round trip", fmt.Sprintf("1. %s → %s and back", cf.from, *responder))
	rtt, err := selftestRoundTrip(ctx, client, cf.from, *responder, cf.nil_, *timeout)
	path := "submission, relay to the responder's operator, relay back, IMAP"
	if own {
		path = "submission, your connector's queue, local delivery to its responder and back, IMAP; " +
			"the relay with the other operators is not tested"
	}
	report(err, fmt.Sprintf("automatic answer received after %s (%s)", rtt.Round(time.Millisecond), path))

	heading(2, "non-MSSanté recipient refused by the client", fmt.Sprintf("2. %s → %s (not MSSanté) is refused", cf.from, *outside))
	msg, err := selftestMail(cf.from, *outside, selftestID(cf.from), cf.nil_)
	if err == nil {
		_, err = client.Send(ctx, msg, nil)
	}
	switch {
	case errors.Is(err, bal.ErrNotWhitelisted):
		report(nil, "the liste blanche does not list it: the BAL client sent nothing")
	case err == nil:
		report(errors.New("the BAL client sent a message to a domain outside MSSanté"), "")
	default:
		report(fmt.Errorf("unexpected error: %w", err), "")
	}
	if info != nil {
		// Ask the operator directly, as a client that does not check the list would.
		name = "non-MSSanté recipient refused by the submission server"
		err := info.Submit(ctx, cf.from, []string{*outside}, selftestMessage(cf.from, *outside, selftestID(cf.from)))
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code >= 500:
			report(nil, fmt.Sprintf("the submission server refused it too: %d %d.%d.%d %s", se.Code,
				se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message))
		case err == nil:
			report(errors.New("the submission server accepted a message for a domain outside MSSanté"), "")
		default:
			report(fmt.Errorf("the submission server did not answer as expected: %w", err), "")
		}
	}
	if info != nil && info.PSC != nil && len(info.PSC.Practitioners) > 0 {
		p := info.PSC.Practitioners[0]
		heading(3, "Pro Santé Connect login", fmt.Sprintf("3. %s opens %s with a Pro Santé Connect token", p.ClientID, strings.Join(p.BALs, " and ")))
		err := selftestPSC(ctx, info, p)
		report(err, "token from the sandbox provider, OAUTHBEARER accepted on IMAPS and submission for each BAL held")
	}
	if failed {
		return exitCode(1, errors.New("selftest failed"))
	}
	if !*asJSON {
		fmt.Fprintln(e.stdout, "selftest passed")
	}
	return nil
}

// selftestJSON is the --json line of one check.
type selftestJSON struct {
	Check  int    `json:"check"`
	Name   string `json:"name"`
	Status string `json:"status"` // ok or fail
	Detail string `json:"detail"`
}

// selftestID returns a new Message-ID on the domain of from (as MSSanté asks).
func selftestID(from string) string {
	b := make([]byte, 8)
	rand.Read(b)
	_, domain, _ := strings.Cut(from, "@")
	return "selftest." + hex.EncodeToString(b) + "@" + domain
}

// selftestMail is the test message as the BAL client sends it.
func selftestMail(from, to, id, nil_ string) (*mssante.Message, error) {
	f, err := mssante.ParseAddress(from)
	if err != nil {
		return nil, err
	}
	t, err := mssante.ParseAddress(to)
	if err != nil {
		return nil, err
	}
	return &mssante.Message{From: f, To: []mssante.Address{t}, MessageID: strings.Trim(id, "<>"), Subject: "mssante selftest",
		Text: "Test d'émission et de réception (mssante selftest).", NIL: nil_}, nil
}

// selftestMessage is the raw test message of the direct submission check.
func selftestMessage(from, to, id string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: mssante selftest\r\nMessage-ID: <%s>\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTest d'émission et de réception (mssante selftest).\r\n",
		from, to, id, time.Now().Format(time.RFC1123Z)))
}

// selftestRoundTrip sends to the responder and watches the BAL until the answer that refers to
// the sent message (In-Reply-To) arrives, returning the time it took.
func selftestRoundTrip(ctx context.Context, c *bal.Client, from, responder, nil_ string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := selftestID(from)
	msg, err := selftestMail(from, responder, id, nil_)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := c.Send(ctx, msg, nil); err != nil {
		return 0, fmt.Errorf("sending to the responder: %w", err)
	}
	var rtt time.Duration
	var answerErr error
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	err = c.Watch(wctx, func(_ context.Context, m *bal.Incoming) error {
		h, err := selftestHeader(m)
		if err != nil || !strings.Contains(h.Get("In-Reply-To"), "<"+id+">") {
			return nil // another message: the DPI would integrate it
		}
		rtt = time.Since(start)
		if !strings.EqualFold(strings.TrimSpace(h.Get("Auto-Submitted")), "auto-replied") {
			answerErr = errors.New("the answer is not marked Auto-Submitted: auto-replied (RFC 3834)")
		}
		stop()
		return nil
	}, nil)
	if rtt == 0 {
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = fmt.Errorf("no answer within %s", timeout)
		}
		return 0, fmt.Errorf("waiting for the responder's answer: %w", err)
	}
	return rtt, answerErr
}

// selftestHeader reads the header of a received message.
func selftestHeader(m *bal.Incoming) (textproto.MIMEHeader, error) {
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return textproto.NewReader(bufio.NewReader(r)).ReadMIMEHeader()
}
