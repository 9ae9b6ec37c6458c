package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
)

const receiveUsage = `--from ADDRESS [--for D] [--count N] [--reject CODE] [--save DIR] [connection options]

Watches the mailbox of the BAL --from (IDLE, or polling) and prints each new message once:
sender, subject, patient INS, the documents of its XDM archive; and the receipts (DSN, MDN)
of the messages this BAL sent. Each message is accepted (an MDN "processed" goes back when
the sender asked for one), or refused with --reject 900…906. With --save, the documents are
written to DIR. Stops after --for, after --count messages, or on Ctrl-C.

The output shows health data (names, INS): it is meant for the operator's own terminal.

Connection options: as for "mssante send" (--dev DIR for "mssante dev").`

func runReceive(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "receive", receiveUsage)
	var cf connFlags
	cf.register(fs)
	dur := fs.Duration("for", 0, "stop after this long (default: until Ctrl-C)")
	count := fs.Int("count", 0, "stop after this many messages")
	reject := fs.Int("reject", 0, "refuse every message with this code (900–906) instead of accepting it")
	save := fs.String("save", "", "write the documents of each message to this folder")
	poll := fs.Duration("poll", time.Minute, "polling interval when the server has no IDLE")
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
	if *reject != 0 && !mssante.MDNCode(*reject).Valid() {
		return exitCode(2, fmt.Errorf("--reject %d: use a code 900–906", *reject))
	}
	cf.pollInterval = *poll
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	n := 0
	h := func(_ context.Context, m *bal.Incoming) error {
		mu.Lock()
		defer mu.Unlock()
		printIncoming(e, m)
		if *save != "" {
			if err := saveDocuments(e, *save, m); err != nil {
				return err // not a decision: the message is handed again later
			}
		}
		if *reject != 0 {
			fmt.Fprintf(e.stdout, "  → refused %d %s\n", *reject, mssante.MDNCode(*reject).Label())
			return bal.Reject(mssante.MDNCode(*reject))
		}
		fmt.Fprintf(e.stdout, "  → accepted\n")
		return nil
	}
	err = c.Watch(ctx, h, &bal.WatchOptions{OnReceipt: func(_ context.Context, r bal.Receipt) {
		mu.Lock()
		defer mu.Unlock()
		printReceipt(e, r)
	}, OnHandled: func(context.Context, string) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if *count > 0 && n >= *count {
			stop() // once the answer went out
		}
	}})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func printIncoming(e *env, m *bal.Incoming) {
	fmt.Fprintf(e.stdout, "message <%s> (%d bytes)\n", m.MessageID, m.Size)
	if m.Message == nil {
		fmt.Fprintf(e.stdout, "  unreadable: %v\n", m.ParseError)
		return
	}
	fmt.Fprintf(e.stdout, "  from     %s\n  subject  %s\n", m.Message.From.Addr, m.Message.Subject)
	if m.Patient != nil {
		fmt.Fprintf(e.stdout, "  patient  %s %s, INS %s (OID %s)\n", m.Patient.BirthName, m.Patient.FirstGivenName, m.INS.Value, m.INS.OID)
	} else if !m.INS.IsZero() {
		fmt.Fprintf(e.stdout, "  patient  INS %s (OID %s)\n", m.INS.Value, m.INS.OID)
	}
	if m.XDMError != nil {
		fmt.Fprintf(e.stdout, "  XDM      unreadable: %v\n", m.XDMError)
	}
	for _, d := range m.Documents() {
		fmt.Fprintf(e.stdout, "  document %s %q (%s, %d bytes)\n", d.Entry.TypeCode.Code, d.Entry.Title, d.Entry.MimeType, len(d.Data))
	}
	for _, d := range m.Message.Documents {
		fmt.Fprintf(e.stdout, "  PDF      %s (%d bytes)\n", d.PDFName, len(d.PDF))
	}
	for _, a := range m.Message.Attachments {
		fmt.Fprintf(e.stdout, "  file     %s %s (%d bytes)\n", a.Filename, a.ContentType, len(a.Data))
	}
}

// saveDocuments writes the documents and PDF copies of m under dir/<message id hash>/.
func saveDocuments(e *env, dir string, m *bal.Incoming) error {
	sub := filepath.Join(dir, safeName(m.MessageID))
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return err
	}
	for _, d := range m.Documents() {
		if err := os.WriteFile(filepath.Join(sub, safeName(filepath.Base(d.Path))), d.Data, 0o600); err != nil {
			return err
		}
	}
	for _, d := range m.Message.Documents {
		if err := os.WriteFile(filepath.Join(sub, safeName(d.PDFName)), d.PDF, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "  saved to %s\n", sub)
	return nil
}

// safeName keeps a file name inside its folder.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}
