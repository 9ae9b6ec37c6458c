package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/mssante/xdm"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

const sendUsage = `--from ADDRESS --to ADDRESS[,ADDRESS…] (--cda FILE --pdf FILE | --xdm FILE [--pdf FILE] | --pdf FILE --ins … --birth-name … ) [connection options]

Sends a lettre de liaison from the BAL --from: an existing CDA document (--cda, with its PDF
copy --pdf), an IHE_XDM.ZIP made by "mssante xdm pack" (--xdm, sent as it is; the PDF copy of
an N1 document is taken from the document, a structured one needs --pdf), or a PDF and the
patient and author fields, from which an N1 CDA is built (the PDF is then the document). The
CDA goes in IHE_XDM.ZIP with its metadata, the mail gets the MSSanté headers and subject,
every recipient is checked against the liste blanche, and the mail is submitted with DSN
requests (and an MDN request with --mdn). Only the submission server is needed to send; with
--wait, waits on the BAL's mailbox (IMAP) for the receipts and prints them.

X-MSS-NIL, the reference of the sending software that MSSanté asks on every mail, is
` + cliNIL + ` by default: this program is the sending software. A DPI that sends through
it on its own behalf gives its own with --nil.

With --json, one JSON object a line instead of text:
  {"type":"sent","message_id":…}
  {"type":"recipient","message_id":…,"recipient":…,"state":"accepted"|"already sent"|"refused"|"refused for now","code":250,"text":…}
  {"type":"receipt","message_id":…,"recipient":…,"status":…,"smtp_code":550,"mdn_code":902,"code":…,"detail":…,"final":true|false} (with --wait)
    smtp_code: the SMTP reply code a DSN reports (absent when it reports none, as for most
    deliveries); mdn_code: the MSSanté error code 900–906 of a refusal; code: the older field,
    mdn_code when there is one, else smtp_code.

Connection: --sandbox DIR takes everything from "mssante dev" (its sandbox folder DIR, by
default the one "mssante dev" uses: see --sandbox below); otherwise give --submission (and --imap to
wait for receipts), --cert/--key or --p12, --trust, --crl and --whitelist. Without
--sandbox, --submission, --imap, --whitelist, --cert and --p12, the default sandbox folder
is used. --dev is the old name of --sandbox.`

// connFlags are the connection options "mssante send" and "mssante receive" share.
type connFlags struct {
	dev, from, submission, imap     string
	submissionTLS, imapTLS          bool
	cert, key, p12, p12Pass, trust  string
	crl, whitelistFile, auth, user  string
	password, token, state, nil_    string
	tokenFile, tokenCommand         string
	whitelistPin                    string
	pollInterval, minBackoff, maxBO time.Duration
	// ownDomain, when set, is a domain the client sends to without the liste blanche: the
	// BAL's own, whose mail the operator delivers itself (selftest before the ANS lists it).
	ownDomain string
}

// ownDomainPolicy is a liste blanche policy that also accepts one domain: the BAL's own, which
// its operator delivers locally whether the ANS lists it or not.
type ownDomainPolicy struct {
	whitelist.Policy
	domain string
}

func (p ownDomainPolicy) CheckDomain(d string) error {
	if strings.EqualFold(d, p.domain) {
		return nil
	}
	return p.Policy.CheckDomain(d)
}

func (c *connFlags) register(fs *flag.FlagSet) {
	sandboxFlags(fs, &c.dev, "dev")
	fs.StringVar(&c.from, "from", "", "address of the BAL")
	fs.StringVar(&c.submission, "submission", "", "submission server host:port (STARTTLS; default: DNS SRV _submission._tcp)")
	fs.BoolVar(&c.submissionTLS, "submission-tls", false, "implicit TLS for --submission (port 465)")
	fs.StringVar(&c.imap, "imap", "", "IMAP server host:port (STARTTLS; default: DNS SRV _imaps._tcp / _imap._tcp)")
	fs.BoolVar(&c.imapTLS, "imap-tls", false, "implicit TLS for --imap (port 993)")
	fs.StringVar(&c.cert, "cert", "", "PEM certificate (with its chain) of the BAL")
	fs.StringVar(&c.key, "key", "", "PEM private key of --cert")
	fs.StringVar(&c.p12, "p12", "", "PKCS#12 file of the BAL certificate (instead of --cert/--key)")
	fs.StringVar(&c.p12Pass, "p12-password", os.Getenv("MSSANTE_P12_PASSWORD"), "password of --p12 (default $MSSANTE_P12_PASSWORD)")
	fs.StringVar(&c.trust, "trust", "", "PEM/DER/p7b roots and intermediates trusted besides the embedded IGC-Santé root")
	fs.StringVar(&c.crl, "crl", "", "CRL file(s) of the operator's CA, comma-separated (revocation is required)")
	fs.StringVar(&c.whitelistFile, "whitelist", "", "the signed liste blanche (XML); verified before use")
	fs.StringVar(&c.whitelistPin, "whitelist-pin", "", "certificate of the whitelist signer to pin (default: the ANS signer, or a chain to --trust)")
	fs.StringVar(&c.auth, "auth", "", "SASL mechanism: external (default), plain, xoauth2, oauthbearer, none (submission only)")
	fs.StringVar(&c.user, "user", "", "login for --auth plain; for xoauth2 and oauthbearer the BAL opened (default --from)")
	fs.StringVar(&c.password, "password", os.Getenv("MSSANTE_PASSWORD"), "password for --auth plain (default $MSSANTE_PASSWORD)")
	fs.StringVar(&c.token, "token", os.Getenv("MSSANTE_TOKEN"), "Pro Santé Connect access token for --auth xoauth2 or oauthbearer (default $MSSANTE_TOKEN)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the access token, read again at every connection")
	fs.StringVar(&c.tokenCommand, "token-command", "", "shell command that prints the access token, run at every connection (exit 75: try again later)")
	fs.StringVar(&c.state, "state", "", "the client's state folder: outbox, receive checkpoint (default ~/.mssante/bal/ADDRESS)")
	fs.StringVar(&c.nil_, "nil", "", "X-MSS-NIL product reference of the sending software (default "+cliNIL+", this program)")
	c.pollInterval = time.Minute
	c.minBackoff, c.maxBO = 500*time.Millisecond, time.Minute
}

// explicit reports whether the flags name an operator of their own (not "mssante dev").
func (c *connFlags) explicitOperator() bool {
	return c.submission != "" || c.imap != "" || c.whitelistFile != "" || c.cert != "" || c.p12 != ""
}

// sandboxDefault points the flags at the default sandbox folder when they name no operator.
func (c *connFlags) sandboxDefault() {
	if c.dev == "" && !c.explicitOperator() {
		c.dev = defaultDevState()
	}
}

// client builds the bal.Client the flags describe.
func (c *connFlags) client(e *env) (*bal.Client, error) {
	c.sandboxDefault()
	if c.from == "" {
		return nil, exitCode(2, errors.New("--from is required"))
	}
	if c.nil_ == "" {
		c.nil_ = cliNIL
	}
	o := &bal.Options{Address: c.from, NIL: c.nil_, PollInterval: c.pollInterval,
		MinBackoff: c.minBackoff, MaxBackoff: c.maxBO}
	if c.state == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		c.state = filepath.Join(home, ".mssante", "bal", c.from)
	}
	o.StateDir = c.state
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, err
	}
	if c.dev != "" {
		if err := c.fromSandbox(o); err != nil {
			return nil, err
		}
	} else if err := c.explicit(o); err != nil {
		return nil, err
	}
	if c.ownDomain != "" && o.Whitelist != nil {
		o.Whitelist = ownDomainPolicy{o.Whitelist, c.ownDomain}
	}
	switch strings.ToLower(c.auth) {
	case "":
	case "external":
		o.Auth = bal.AuthExternal
	case "plain":
		o.Auth, o.Username, o.Password = bal.AuthPlain, c.user, c.password
		if o.Username == "" {
			o.Username = c.from
		}
	case "xoauth2", "oauthbearer":
		ts, err := c.tokenSource()
		if err != nil {
			return nil, err
		}
		o.Auth, o.Username, o.TokenSource = bal.AuthMechanism(strings.ToUpper(c.auth)), c.user, ts
	case "none":
		o.Submission.Auth = bal.AuthNone
	default:
		return nil, exitCode(2, fmt.Errorf("unknown --auth %q", c.auth))
	}
	return bal.New(o)
}

// fromSandbox fills o for a BAL of "mssante dev", read by bal.OptionsFromSandbox as a
// vendor's program reads it.
func (c *connFlags) fromSandbox(o *bal.Options) error {
	info, err := loadSandbox(c.dev)
	if err != nil {
		return exitCode(1, fmt.Errorf("%w; or, for an operator of your own, give --submission, --whitelist and the BAL's certificate", err))
	}
	if info.BAL(c.from) == nil || info.OperatorOf(c.from) == nil {
		return exitCode(2, fmt.Errorf("%s is not a BAL of the trust space in %s: use one of %s", c.from, c.dev, sandboxBALs(info)))
	}
	so, err := bal.OptionsFromSandbox(c.dev, c.from)
	if err != nil {
		return err
	}
	o.Submission, o.IMAP, o.TLS, o.Whitelist = so.Submission, so.IMAP, so.TLS, so.Whitelist
	if so.Auth == bal.AuthPlain && c.auth == "" {
		c.auth, c.user, c.password = "plain", so.Username, so.Password
	}
	return nil
}

// explicit fills o from the individual flags.
func (c *connFlags) explicit(o *bal.Options) error {
	if c.submission != "" {
		o.Submission = bal.Endpoint{Addr: c.submission}
		if c.submissionTLS {
			o.Submission.Security = bal.ImplicitTLS
		}
	}
	if c.imap != "" {
		o.IMAP = bal.Endpoint{Addr: c.imap}
		if c.imapTLS {
			o.IMAP.Security = bal.ImplicitTLS
		}
	}
	switch {
	case c.p12 != "":
		data, err := os.ReadFile(c.p12)
		if err != nil {
			return err
		}
		cert, err := transport.PKCS12Certificate(data, c.p12Pass)
		if err != nil {
			return fmt.Errorf("%s: %w", c.p12, err)
		}
		o.TLS.Certificates = []tls.Certificate{cert}
	case c.cert != "":
		cert, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return err
		}
		o.TLS.Certificates = []tls.Certificate{cert}
	}
	trust, err := transport.LoadTrustStore(nil, []string{c.trust}, commaList(c.crl))
	if err != nil {
		return err
	}
	o.TLS.Trust = trust
	if c.whitelistFile == "" {
		return exitCode(2, errors.New("--whitelist is required (the signed liste blanche): nothing is sent without it"))
	}
	tf := &trustFlags{pin: c.whitelistPin}
	if c.whitelistPin == "" && c.trust != "" {
		tf.roots, tf.inters = c.trust, c.trust
	}
	vo, err := tf.options()
	if err != nil {
		return err
	}
	wl, err := verifyFile(c.whitelistFile, vo)
	if err != nil {
		return fmt.Errorf("%s: %w", c.whitelistFile, err)
	}
	o.Whitelist = wl
	return nil
}

// commaList splits a comma-separated flag value into its trimmed items.
func commaList(s string) []string {
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

func runSend(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "send", sendUsage)
	var cf connFlags
	cf.register(fs)
	to := fs.String("to", "", "recipients, comma-separated")
	cdaFile := fs.String("cda", "", "CDA R2 document to send (XML)")
	xdmFile := fs.String("xdm", "", "IHE_XDM.ZIP to send as it is (made by \"mssante xdm pack\")")
	asJSON := fs.Bool("json", false, "print one JSON object a line (fields above)")
	pdfFile := fs.String("pdf", "", "PDF copy of --cda, or the document itself (N1) with the patient and author fields")
	mdn := fs.Bool("mdn", false, "ask the recipients for an integration receipt (MDN)")
	wait := fs.Duration("wait", 0, "wait this long for the receipts (DSN, MDN) and print them")
	text := fs.String("text", "", "body of the mail (default: a neutral sentence)")
	var pf patientFlags
	pf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		return exitCode(2, fmt.Errorf("unexpected argument %q: every input is an option (see --help)", fs.Arg(0)))
	}
	switch {
	case *to == "":
		return exitCode(2, errors.New("--to is required: the recipients' addresses, comma-separated"))
	case *cdaFile != "" && *xdmFile != "":
		return exitCode(2, errors.New("--cda and --xdm both given: send either a CDA document or an archive"))
	case *cdaFile != "" && *pdfFile == "":
		return exitCode(2, errors.New("--cda needs --pdf FILE, the PDF copy of the document that travels beside it"))
	case *cdaFile == "" && *xdmFile == "" && *pdfFile == "":
		return exitCode(2, errors.New("nothing to send: give --cda FILE --pdf FILE, --xdm FILE, or --pdf FILE with the patient fields"))
	}
	var rcpts []mssante.Address
	for _, a := range strings.Split(*to, ",") {
		addr, err := mssante.NewAddress("", strings.TrimSpace(a))
		if err != nil {
			return exitCode(2, err)
		}
		rcpts = append(rcpts, addr)
	}
	from, err := mssante.NewAddress("", cf.from)
	if err != nil {
		return exitCode(2, fmt.Errorf("--from: %w", err))
	}
	var pdf []byte
	if *pdfFile != "" {
		if pdf, err = os.ReadFile(*pdfFile); err != nil {
			return err
		}
	}
	var msg *mssante.Message
	switch {
	case *cdaFile != "":
		msg, err = messageFromCDA(from, rcpts, *cdaFile, pdf)
	case *xdmFile != "":
		msg, err = messageFromXDM(from, rcpts, *xdmFile, pdf)
	default:
		var in *cda.Input
		if in, err = pf.input(pdf); err != nil {
			return exitCode(2, err)
		}
		msg, err = bal.NewDocumentMessage(from, rcpts, in, nil)
	}
	if err != nil {
		return err
	}
	msg.WantMDN, msg.NIL = *mdn, cf.nil_
	if *text != "" {
		msg.Text = *text
	}
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.Send(ctx, msg, nil)
	if res != nil {
		printSent(e, res, *asJSON)
	}
	if err != nil {
		return err
	}
	if *wait <= 0 {
		return nil
	}
	return waitReceipts(ctx, e, c, res, *wait, *asJSON)
}

// sentJSON and recipientJSON are the --json lines of "mssante send".
type sentJSON struct {
	Type      string `json:"type"` // "sent"
	MessageID string `json:"message_id"`
}

type recipientJSON struct {
	Type      string `json:"type"` // "recipient"
	MessageID string `json:"message_id"`
	Recipient string `json:"recipient"`
	State     string `json:"state"`
	Code      int    `json:"code"`
	Text      string `json:"text"`
}

func printSent(e *env, res *bal.SendResult, asJSON bool) {
	if asJSON {
		jsonLine(e.stdout, sentJSON{"sent", res.MessageID})
	} else {
		fmt.Fprintf(e.stdout, "Message-ID <%s>\n", res.MessageID)
	}
	for _, r := range res.Recipients {
		state := "accepted"
		switch {
		case r.AlreadySent:
			state = "already sent"
		case !r.Accepted && r.Temporary:
			state = "refused for now"
		case !r.Accepted:
			state = "refused"
		}
		if asJSON {
			jsonLine(e.stdout, recipientJSON{"recipient", res.MessageID, r.Address, state, r.Code, strings.TrimSpace(r.Text)})
		} else {
			fmt.Fprintf(e.stdout, "  %-40s %s (%d %s)\n", r.Address, state, r.Code, strings.TrimSpace(r.Text))
		}
	}
}

// waitReceipts watches the BAL until every recipient of res has its final status or d passes.
func waitReceipts(ctx context.Context, e *env, c *bal.Client, res *bal.SendResult, d time.Duration, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	pending := map[string]bool{}
	for _, r := range res.Recipients {
		if r.Accepted {
			pending[strings.ToLower(r.Address)] = true
		}
	}
	// Receipts only: the other messages are for the watcher that integrates them.
	err := c.Watch(ctx, nil, &bal.WatchOptions{ReceiptsOnly: true, OnReceipt: func(_ context.Context, r bal.Receipt) {
		if r.MessageID != res.MessageID {
			return
		}
		printReceipt(e, r, asJSON)
		if r.Final {
			delete(pending, strings.ToLower(r.Recipient))
			if len(pending) == 0 {
				cancel()
			}
		}
	}})
	if len(pending) == 0 {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return exitCode(1, fmt.Errorf("%d recipient(s) without a final receipt after %s", len(pending), d))
	}
	return err
}

// receiptJSON is the --json line of a receipt (DSN, MDN), in "mssante send" and "receive".
type receiptJSON struct {
	Type      string `json:"type"` // "receipt"
	MessageID string `json:"message_id"`
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	// Code is what scripts read before smtp_code and mdn_code existed: the MDN code when
	// there is one, else the SMTP code.
	Code     int    `json:"code,omitempty"`
	SMTPCode int    `json:"smtp_code,omitempty"`
	MDNCode  int    `json:"mdn_code,omitempty"`
	Detail   string `json:"detail,omitempty"`
	Final    bool   `json:"final"`
}

func printReceipt(e *env, r bal.Receipt, asJSON bool) {
	code := r.SMTPCode
	if r.MDNCode != 0 {
		code = int(r.MDNCode)
	}
	if asJSON {
		jsonLine(e.stdout, receiptJSON{"receipt", r.MessageID, r.Recipient, fmt.Sprint(r.Status), code, r.SMTPCode, int(r.MDNCode), r.Detail, r.Final})
		return
	}
	final := ""
	if r.Final {
		final = " (final)"
	}
	detail := ""
	if code != 0 {
		detail = fmt.Sprintf(" %d %s", code, r.Detail)
	}
	fmt.Fprintf(e.stdout, "receipt <%s> %s: %s%s%s\n", r.MessageID, r.Recipient, r.Status, detail, final)
}

// messageFromCDA packs an existing CDA document and its PDF copy (xdm.Compose).
func messageFromCDA(from mssante.Address, to []mssante.Address, path string, pdf []byte) (*mssante.Message, error) {
	xml, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &mssante.Message{From: from, To: to, Text: "Veuillez trouver ci-joint un document médical.\n"}
	if _, err := xdm.Compose(m, []xdm.MailDocument{{CDA: xml, PDF: pdf}}, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// messageFromXDM sends an existing IHE_XDM.ZIP as it is (bal.NewXDMMessage): its documents
// give the mail's documents, patient and subject; pdf is the copy of a lone structured
// document. What is wrong with the archive or --pdf is a usage error.
func messageFromXDM(from mssante.Address, to []mssante.Address, path string, pdf []byte) (*mssante.Message, error) {
	z, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := bal.NewXDMMessage(from, to, z, pdf, nil)
	if err != nil {
		if strings.Contains(err.Error(), "PDF copy") {
			err = fmt.Errorf("%w (--pdf gives the copy of a lone structured document)", err)
		}
		return nil, exitCode(2, fmt.Errorf("%s: %w", path, err))
	}
	return m, nil
}

// patientFlags are the fields of an N1 lettre de liaison built around a PDF.
type patientFlags struct {
	ins, insOID, birthName, given, birthDate, sex string
	birthPlace                                    string
	authorID, authorFamily, authorGiven           string
	orgID, orgName, title                         string
}

func (p *patientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.ins, "ins", "", "patient's matricule INS (15 characters)")
	fs.StringVar(&p.insOID, "ins-oid", mssante.OIDINSNIR, "OID of the INS (test INS: "+mssante.OIDINSNIRTest+")")
	fs.StringVar(&p.birthName, "birth-name", "", "patient's birth name")
	fs.StringVar(&p.given, "given", "", "patient's first given name")
	fs.StringVar(&p.birthDate, "birth-date", "", "patient's birth date YYYY-MM-DD")
	fs.StringVar(&p.sex, "sex", "", "patient's sex: M, F or U")
	fs.StringVar(&p.birthPlace, "birth-place", "", "patient's birthplace, 5-character COG code (99999 when unknown)")
	fs.StringVar(&p.authorID, "author-id", "", "author's idNat_PS (8 + RPPS)")
	fs.StringVar(&p.authorFamily, "author-family", "", "author's family name")
	fs.StringVar(&p.authorGiven, "author-given", "", "author's given name")
	fs.StringVar(&p.orgID, "org-id", "", "author's structure idNat_Struct (1 + FINESS, 3 + SIRET)")
	fs.StringVar(&p.orgName, "org-name", "", "author's structure name")
	fs.StringVar(&p.title, "title", "Lettre de liaison", "title of the document")
}

// input builds the N1 CDA input: the given fields over the defaults of a lettre de liaison
// (cda.Sample supplies the codes: service event, encounter, practice setting).
func (p *patientFlags) input(pdf []byte) (*cda.Input, error) {
	if p.ins == "" || p.birthName == "" || p.given == "" || p.birthDate == "" || p.sex == "" || p.birthPlace == "" ||
		p.authorID == "" || p.authorFamily == "" || p.authorGiven == "" || p.orgID == "" || p.orgName == "" {
		return nil, errors.New("without --cda, give --ins, --birth-name, --given, --birth-date, --sex, --birth-place, --author-id, --author-family, --author-given, --org-id and --org-name")
	}
	born, err := time.Parse(time.DateOnly, p.birthDate)
	if err != nil {
		return nil, fmt.Errorf("--birth-date: %w", err)
	}
	ins, err := mssante.ParseINS(p.ins, p.insOID)
	if err != nil {
		return nil, err
	}
	in := cda.Sample(cda.KindN1)
	now := time.Now()
	id := uniqueOID()
	in.ID, in.SetID, in.Version, in.Time = cda.OID{Root: id}, cda.OID{Root: id + ".1"}, 1, now
	in.Title, in.PDF = p.title, pdf
	in.Patient = cda.Patient{Patient: mssante.Patient{INS: ins, Traits: mssante.Traits{
		BirthName: p.birthName, FirstGivenName: p.given, GivenNames: []string{p.given}, BirthDate: born, Sex: mssante.Sex(p.sex), BirthPlace: p.birthPlace}}}
	org := in.Custodian
	org.ID, org.Name, org.Address, org.Telecom = p.orgID, p.orgName, nil, ""
	in.Custodian = org
	in.Author = cda.Professional{ID: p.authorID, Family: p.authorFamily, Given: p.authorGiven,
		Specialty: in.Author.Specialty, Organization: &org}
	in.ServiceEvent.Start, in.ServiceEvent.End = now, now
	in.Encounter.Start, in.Encounter.End = now, now
	return in, nil
}

// uniqueOID returns a fresh OID under 2.25 (UUID-derived, ITU-T X.667) for a document id.
func uniqueOID() string {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 122))
	return "2.25." + n.String()
}
