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

const receiveUsage = `--mailbox ADDRESS [--for D] [--count N] [--reject CODE | --receipts-only] [--save DIR] [--json] [connection options]

Watches the mailbox of the BAL --mailbox (IDLE, or polling) and prints each new message once:
sender, subject, patient INS, the documents of its XDM archive, its PDF copies and other
files; and the receipts (DSN, MDN) of the messages this BAL sent. Each message is accepted (an
MDN "processed" goes back when the sender asked for one), or refused with --reject 900…906.
With --save, every attachment is written to DIR/<Message-ID>/: the IHE_XDM.ZIP, the documents
it holds, the PDF copies and any other file; what cannot be written is named with the reason.
Stops after --for, after --count messages, or on Ctrl-C. --from is the old name of --mailbox.

With --receipts-only, only the receipts of what this state folder (--state) sent are followed
and printed; every other message is left in the mailbox, unanswered, for the program that
integrates them (run it with another --state). --count then counts receipts.

The output shows health data (names, INS): it is meant for the operator's own terminal.

With --json, one JSON object a line instead of text:
  {"type":"message","message_id":…,"size":…,"from":…,"subject":…,"ins":…,"ins_oid":…,
   "birth_name":…,"given":…,"documents":[{"path":…,"code":…,"title":…,"mime_type":…,"size":…}],
   "pdfs":[{"name":…,"size":…}],"files":[{"name":…,"content_type":…,"size":…}],
   "parse_error":…,"xdm_error":…,"saved":[path…],"skipped":[{"name":…,"reason":…}],
   "decision":"accepted"|"refused","reject_code":903}
  {"type":"receipt",…} as in "mssante send --help"
Empty fields are left out.

Connection options: as for "mssante send" (--sandbox DIR for "mssante dev").`

// incomingJSON is the --json line of a received message.
type incomingJSON struct {
	Type       string        `json:"type"` // "message"
	MessageID  string        `json:"message_id"`
	Size       int64         `json:"size"`
	From       string        `json:"from,omitempty"`
	Subject    string        `json:"subject,omitempty"`
	INS        string        `json:"ins,omitempty"`
	INSOID     string        `json:"ins_oid,omitempty"`
	BirthName  string        `json:"birth_name,omitempty"`
	Given      string        `json:"given,omitempty"`
	Documents  []docJSON     `json:"documents,omitempty"`
	PDFs       []fileJSON    `json:"pdfs,omitempty"`
	Files      []fileJSON    `json:"files,omitempty"`
	ParseError string        `json:"parse_error,omitempty"`
	XDMError   string        `json:"xdm_error,omitempty"`
	Saved      []string      `json:"saved,omitempty"`
	Skipped    []skippedJSON `json:"skipped,omitempty"`
	Decision   string        `json:"decision"`
	RejectCode int           `json:"reject_code,omitempty"`
}

type docJSON struct {
	Path     string `json:"path"`
	Code     string `json:"code"`
	Title    string `json:"title"`
	MimeType string `json:"mime_type"`
	Size     int    `json:"size"`
}

type fileJSON struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type,omitempty"`
	Size        int    `json:"size"`
}

type skippedJSON struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

func runReceive(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "receive", receiveUsage)
	var cf connFlags
	cf.register(fs)
	fs.StringVar(&cf.from, "mailbox", "", "address of the BAL whose mailbox is watched")
	fs.Lookup("from").Usage = "old name of --mailbox"
	dur := fs.Duration("for", 0, "stop after this long (default: until Ctrl-C)")
	count := fs.Int("count", 0, "stop after this many messages")
	reject := fs.Int("reject", 0, "refuse every message with this code (900–906) instead of accepting it")
	save := fs.String("save", "", "write every attachment of each message under this folder")
	poll := fs.Duration("poll", time.Minute, "polling interval when the server has no IDLE")
	asJSON := fs.Bool("json", false, "print one JSON object a line (fields above)")
	receiptsOnly := fs.Bool("receipts-only", false, "follow only the receipts of what --state sent; leave every other message in the mailbox")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		return exitCode(2, fmt.Errorf("unexpected argument %q: every input is an option (see --help)", fs.Arg(0)))
	}
	if cf.from == "" {
		return exitCode(2, errors.New("--mailbox is required: the address of the BAL to watch"))
	}
	if *receiptsOnly && (*reject != 0 || *save != "") {
		return exitCode(2, errors.New("--receipts-only reads no message: --reject and --save do not apply"))
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
		out := describeIncoming(m)
		if !*asJSON {
			printIncoming(e, out)
		}
		if *save != "" {
			sub := filepath.Join(*save, safeName(m.MessageID))
			saved, skipped, err := saveAttachments(sub, m)
			out.Saved, out.Skipped = saved, skipped
			if !*asJSON {
				for _, f := range saved {
					fmt.Fprintf(e.stdout, "  saved    %s\n", f)
				}
				for _, sk := range skipped {
					fmt.Fprintf(e.stdout, "  skipped  %s: %s\n", sk.Name, sk.Reason)
				}
			}
			if err != nil {
				return fmt.Errorf("saving under %s: %w", sub, err) // not a decision: the message is handed again later
			}
		}
		out.Decision = "accepted"
		if *reject != 0 {
			out.Decision, out.RejectCode = "refused", *reject
		}
		if *asJSON {
			jsonLine(e.stdout, out)
		} else if *reject != 0 {
			fmt.Fprintf(e.stdout, "  → refused %d %s\n", *reject, mssante.MDNCode(*reject).Label())
		} else {
			fmt.Fprintf(e.stdout, "  → accepted\n")
		}
		if *reject != 0 {
			return bal.Reject(mssante.MDNCode(*reject))
		}
		return nil
	}
	err = c.Watch(ctx, h, &bal.WatchOptions{ReceiptsOnly: *receiptsOnly, OnReceipt: func(_ context.Context, r bal.Receipt) {
		mu.Lock()
		defer mu.Unlock()
		printReceipt(e, r, *asJSON)
		if *receiptsOnly {
			n++
			if *count > 0 && n >= *count {
				stop()
			}
		}
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

// describeIncoming is what "mssante receive" shows of m.
func describeIncoming(m *bal.Incoming) *incomingJSON {
	out := &incomingJSON{Type: "message", MessageID: m.MessageID, Size: m.Size}
	if m.Message == nil {
		out.ParseError = fmt.Sprint(m.ParseError)
		return out
	}
	out.From, out.Subject = m.Message.From.Addr, m.Message.Subject
	if !m.INS.IsZero() {
		out.INS, out.INSOID = m.INS.Value, m.INS.OID
	}
	if m.Patient != nil {
		out.BirthName, out.Given = m.Patient.BirthName, m.Patient.FirstGivenName
	}
	if m.XDMError != nil {
		out.XDMError = m.XDMError.Error()
	}
	for _, d := range m.Documents() {
		out.Documents = append(out.Documents, docJSON{d.Path, d.Entry.TypeCode.Code, d.Entry.Title, d.Entry.MimeType, len(d.Data)})
	}
	for _, d := range m.Message.Documents {
		out.PDFs = append(out.PDFs, fileJSON{Name: d.PDFName, Size: len(d.PDF)})
	}
	for _, a := range m.Message.Attachments {
		out.Files = append(out.Files, fileJSON{a.Filename, a.ContentType, len(a.Data)})
	}
	return out
}

func printIncoming(e *env, m *incomingJSON) {
	fmt.Fprintf(e.stdout, "message <%s> (%d bytes)\n", m.MessageID, m.Size)
	if m.ParseError != "" {
		fmt.Fprintf(e.stdout, "  unreadable: %s\n", m.ParseError)
		return
	}
	fmt.Fprintf(e.stdout, "  from     %s\n  subject  %s\n", m.From, m.Subject)
	if m.BirthName != "" {
		fmt.Fprintf(e.stdout, "  patient  %s %s, INS %s (OID %s)\n", m.BirthName, m.Given, m.INS, m.INSOID)
	} else if m.INS != "" {
		fmt.Fprintf(e.stdout, "  patient  INS %s (OID %s)\n", m.INS, m.INSOID)
	}
	if m.XDMError != "" {
		fmt.Fprintf(e.stdout, "  XDM      unreadable: %s\n", m.XDMError)
	}
	for _, d := range m.Documents {
		fmt.Fprintf(e.stdout, "  document %s %q (%s, %d bytes)\n", d.Code, d.Title, d.MimeType, d.Size)
	}
	for _, d := range m.PDFs {
		fmt.Fprintf(e.stdout, "  PDF      %s (%d bytes)\n", d.Name, d.Size)
	}
	for _, a := range m.Files {
		fmt.Fprintf(e.stdout, "  file     %s %s (%d bytes)\n", a.Name, a.ContentType, a.Size)
	}
}

// saveAttachments writes every attachment of m into dir: the IHE_XDM.ZIP and the documents it
// holds, the PDF copies and the other files, each under its own name made safe (a name taken
// twice gets a numbered suffix, an unnamed file "attachment-N"). It returns the files written
// and those skipped with the reason; err stops at the first file that cannot be written.
func saveAttachments(dir string, m *bal.Incoming) (saved []string, skipped []skippedJSON, err error) {
	if m.Message == nil {
		return nil, []skippedJSON{{"(whole message)", fmt.Sprintf("the mail could not be read (%v): nothing to save", m.ParseError)}}, nil
	}
	type file struct {
		name string
		data []byte
	}
	var files []file
	if m.Message.XDM != nil {
		files = append(files, file{mssante.XDMFilename, m.Message.XDM})
		if m.XDM == nil {
			skipped = append(skipped, skippedJSON{"documents of " + mssante.XDMFilename, fmt.Sprintf("the archive was refused (%v): saved as it came, not opened", m.XDMError)})
		}
	}
	for _, d := range m.Documents() {
		files = append(files, file{filepath.Base(d.Path), d.Data})
	}
	for _, d := range m.Message.Documents {
		files = append(files, file{d.PDFName, d.PDF})
	}
	for _, a := range m.Message.Attachments {
		files = append(files, file{a.Filename, a.Data})
	}
	if len(files) == 0 {
		return nil, skipped, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, skipped, err
	}
	taken := map[string]bool{}
	for i, f := range files {
		name := f.name
		if name == "" {
			name = fmt.Sprintf("attachment-%d", i+1)
		}
		name = safeName(name)
		base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		for k := 2; taken[strings.ToLower(name)]; k++ {
			name = fmt.Sprintf("%s-%d%s", base, k, ext)
		}
		taken[strings.ToLower(name)] = true
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			return saved, skipped, err
		}
		saved = append(saved, path)
	}
	return saved, skipped, nil
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
