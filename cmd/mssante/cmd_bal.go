package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

const balUsage = `COMMAND [options] [ADDRESS]

Manage the BALs of the connector's mailbox store: the SQLite folder of --store DIR (default
$MSSANTE_MAILBOX or ./mssante-data/mailbox), or with --config serve.toml the store its node
opens, SQLite or the PostgreSQL database of a cluster ([store]).

  add ADDRESS --type PER|ORG|APP [--owner ID] [--description TEXT] [--cert FILE | --cert-dn DN]
              [--quota SIZE] [--retention DAYS] [--password-stdin]
      register a BAL and create its INBOX. An APP BAL needs the certificate that authenticates
      it (SASL EXTERNAL): --cert reads its subject from a PEM file, --cert-dn takes the DN.
      SIZE is bytes or 500M, 2G; DAYS is a number of days (0 keeps mail forever).
  list [--json]              list the BALs with their usage
  show ADDRESS [--json]      print one BAL
  remove ADDRESS             delete a BAL with all its messages
  export [--format annuaire|json]
      the list of BALs as a structure hands it to its operator or publishes it to the
      Annuaire Santé: pipe-separated with a header line (annuaire), or JSON
  purge [--now TIME]         apply the retention of every BAL (audited)
  member add|remove ADDRESS NATIONAL_ID, member list ADDRESS [--json]
      the people (national id: 8 + RPPS, 0 + ADELI) who open an ORG BAL with their own
      Pro Santé Connect token` + balListingUsage

func runBAL(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(context.Context, *env, []string) error{
		"add": balAdd, "list": balList, "show": balShow, "remove": balRemove, "export": balExport, "purge": balPurge,
		"suspend": balSuspend, "resume": balResume, "listing": balListing,
		"member": balMember,
	}
	if len(args) == 0 || subs[args[0]] == nil {
		newFlagSet(e, "bal", balUsage).Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return exitCode(2, nil)
	}
	return subs[args[0]](ctx, e, args[1:])
}

// parseInterleaved parses flags placed before or after the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// storeSel is the mailbox store a command opens: the SQLite folder of --store, or the
// store of an "mssante serve" configuration (--config), SQLite or PostgreSQL.
type storeSel struct {
	dir, config *string
}

func storeFlag(fs *flag.FlagSet) *storeSel {
	def := os.Getenv("MSSANTE_MAILBOX")
	if def == "" {
		def = "mssante-data/mailbox"
	}
	return &storeSel{dir: fs.String("store", def, "mailbox store folder (SQLite)"),
		config: fs.String("config", "", `the configuration of "mssante serve": open the store its node opens, SQLite ([mailbox] dir) or PostgreSQL ([store]), instead of --store`)}
}

// balStore is what the bal and annuaire commands need of a mailbox store.
type balStore interface {
	node.Registry
	Journal(ctx context.Context, a mailbox.PublicationAction, address string) error
	Listing(ctx context.Context, address string) (*mailbox.Listing, error)
	ChangeListing(ctx context.Context, address string, c mailbox.ListingChange) (*mailbox.Listing, error)
	AddMember(ctx context.Context, bal, nationalID string) error
	RemoveMember(ctx context.Context, bal, nationalID string) error
	Members(ctx context.Context, bal string) ([]mailbox.Member, error)
}

var (
	_ balStore = (*mailbox.SQLite)(nil)
	_ balStore = (*mailbox.Postgres)(nil)
)

// openStore opens the mailbox store of a bal command, refused run as root on a SQLite store
// that belongs to the service's account (checkStateOwner).
func openStore(ctx context.Context, sel *storeSel) (balStore, error) {
	if *sel.config == "" {
		if err := checkStateOwner("bal …", *sel.dir); err != nil {
			return nil, err
		}
		st, err := mailbox.OpenSQLite(ctx, *sel.dir, nil)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	cfg, err := node.LoadConfigFile(*sel.config)
	if err != nil {
		return nil, err
	}
	if !cfg.Store.Postgres() {
		if err := checkStateOwner("bal …", cfg.Mailbox.Dir); err != nil {
			return nil, err
		}
	}
	st, err := node.OpenStore(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	return st.(balStore), nil
}

// auditDir is the default audit folder of a command that changes the store: that of the
// node with --config, else "audit" beside the store's folder.
func (sel *storeSel) auditDir() (string, error) {
	if *sel.config == "" {
		return filepath.Join(filepath.Dir(filepath.Clean(*sel.dir)), "audit"), nil
	}
	cfg, err := node.LoadConfigFile(*sel.config)
	if err != nil {
		return "", err
	}
	return cfg.Audit.Dir, nil
}

func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return exitCode(2, nil)
}

func balAdd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bal add", "ADDRESS --type PER|ORG|APP [options]")
	dir := storeFlag(fs)
	typ := fs.String("type", "", "BAL type: PER, ORG or APP")
	owner := fs.String("owner", "", "identifier of the holder (RPPS/ADELI) or of the structure (FINESS, SIRET)")
	desc := fs.String("description", "", "functional label (ORG and APP)")
	certFile := fs.String("cert", "", "PEM certificate of an APP BAL (its subject becomes the DN)")
	certDN := fs.String("cert-dn", "", "subject DN of the certificate of an APP BAL")
	quota := fs.String("quota", "0", "quota: bytes, or with a K, M or G suffix (0 = none)")
	retention := fs.Int("retention", 0, "days messages are kept before purge (0 = forever)")
	pwStdin := fs.Bool("password-stdin", false, "read a password for IMAP PLAIN/LOGIN from the first line of stdin")
	var lc lifecycle
	lc.add(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 || *typ == "" {
		fs.Usage()
		return exitCode(2, nil)
	}
	t, err := mailbox.ParseType(*typ)
	if err != nil {
		return exitCode(2, err)
	}
	q, err := parseSize(*quota)
	if err != nil {
		return exitCode(2, fmt.Errorf("--quota: %w", err))
	}
	if *retention < 0 {
		return exitCode(2, errors.New("--retention: negative"))
	}
	dn := *certDN
	if *certFile != "" {
		if dn != "" {
			return exitCode(2, errors.New("--cert and --cert-dn are exclusive"))
		}
		if dn, err = certSubject(*certFile); err != nil {
			return err
		}
	}
	var password string
	if *pwStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return err
		}
		if password = strings.TrimRight(line, "\r\n"); password == "" {
			return exitCode(2, errors.New("--password-stdin: empty password"))
		}
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	alog, err := lc.open()
	if err != nil {
		return err
	}
	defer alog.Close()
	b := &mailbox.BAL{Address: pos[0], Type: t, Owner: *owner, Description: *desc, CertDN: dn,
		QuotaBytes: q, Retention: time.Duration(*retention) * 24 * time.Hour}
	if err := st.AddBAL(ctx, b); err != nil {
		return err
	}
	if err := lc.journal(ctx, st, alog, mailbox.PublishBAL, audit.EventBALCreated, b.Address); err != nil {
		return err
	}
	if password != "" {
		if err := st.SetPassword(ctx, b.Address, password); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "added %s BAL %s\n", t, strings.ToLower(b.Address))
	return nil
}

// certSubject reads the first certificate of a PEM file and returns its subject DN in the
// form of the liste blanche.
func certSubject(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return "", fmt.Errorf("%s: no PEM certificate", path)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return transport.SubjectDN(c), nil
	}
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for suf, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			mult, s = m, strings.TrimSuffix(s, suf)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

// balJSON is the JSON form of a BAL in list, show and export.
type balJSON struct {
	Address       string `json:"address"`
	Type          string `json:"type"`
	Owner         string `json:"owner,omitempty"`
	Description   string `json:"description,omitempty"`
	CertDN        string `json:"cert_dn,omitempty"`
	QuotaBytes    int64  `json:"quota_bytes,omitempty"`
	RetentionDays int64  `json:"retention_days,omitempty"`
	Created       string `json:"created"`
	UsedBytes     int64  `json:"used_bytes"`
	Messages      int64  `json:"messages"`
}

func toJSON(b *mailbox.BAL) balJSON {
	return balJSON{Address: b.Address, Type: string(b.Type), Owner: b.Owner, Description: b.Description, CertDN: b.CertDN,
		QuotaBytes: b.QuotaBytes, RetentionDays: int64(b.Retention / (24 * time.Hour)), Created: b.Created.Format(time.RFC3339),
		UsedBytes: b.UsedBytes, Messages: b.Messages}
}

func balList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bal list", "[--json]")
	dir := storeFlag(fs)
	asJSON := fs.Bool("json", false, "JSON output")
	if pos, err := parseInterleaved(fs, args); err != nil || len(pos) != 0 {
		return flagErr(err)
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	bals, err := st.ListBALs(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]balJSON, 0, len(bals))
		for _, b := range bals {
			out = append(out, toJSON(b))
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tADDRESS\tOWNER\tMESSAGES\tUSED\tQUOTA")
	for _, b := range bals {
		quota := "-"
		if b.QuotaBytes > 0 {
			quota = strconv.FormatInt(b.QuotaBytes, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", b.Type, b.Address, b.Owner, b.Messages, b.UsedBytes, quota)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneAddress(ctx context.Context, e *env, name string, args []string, extra func(*flag.FlagSet)) (balStore, string, error) {
	fs := newFlagSet(e, "bal "+name, "ADDRESS")
	dir := storeFlag(fs)
	if extra != nil {
		extra(fs)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, "", flagErr(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return nil, "", exitCode(2, nil)
	}
	st, err := openStore(ctx, dir)
	return st, pos[0], err
}

func balShow(ctx context.Context, e *env, args []string) error {
	var asJSON *bool
	st, addr, err := oneAddress(ctx, e, "show", args, func(fs *flag.FlagSet) { asJSON = fs.Bool("json", false, "JSON output") })
	if err != nil {
		return err
	}
	defer st.Close()
	b, err := st.GetBAL(ctx, addr)
	if err != nil {
		return exitCode(1, fmt.Errorf("%s: %w", addr, err))
	}
	if *asJSON {
		return writeJSON(e.stdout, toJSON(b))
	}
	j := toJSON(b)
	fmt.Fprintf(e.stdout, "address:     %s\ntype:        %s\nowner:       %s\ndescription: %s\ncert DN:     %s\n",
		j.Address, j.Type, j.Owner, j.Description, j.CertDN)
	fmt.Fprintf(e.stdout, "quota:       %d bytes (0 = none)\nretention:   %d days (0 = forever)\ncreated:     %s\nmessages:    %d\nused:        %d bytes\n",
		j.QuotaBytes, j.RetentionDays, j.Created, j.Messages, j.UsedBytes)
	boxes, err := st.ListMailboxes(ctx, b.Address)
	if err != nil {
		return err
	}
	for _, m := range boxes {
		fmt.Fprintf(e.stdout, "folder:      %s (%d messages, %d unseen)\n", m.Name, m.Messages, m.Unseen)
	}
	return nil
}

func balRemove(ctx context.Context, e *env, args []string) error {
	var lc lifecycle
	st, addr, err := oneAddress(ctx, e, "remove", args, lc.add)
	if err != nil {
		return err
	}
	defer st.Close()
	alog, err := lc.open()
	if err != nil {
		return err
	}
	defer alog.Close()
	if err := lc.journal(ctx, st, alog, mailbox.WithdrawBAL, "", addr); err != nil {
		return err
	}
	if err := st.RemoveBAL(ctx, addr); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	lc.record(alog, audit.EventBALDeleted, addr, "done")
	fmt.Fprintf(e.stdout, "removed %s\n", strings.ToLower(addr))
	return nil
}

// annuaireHeader names the columns of the export, after the Annuaire Santé's BAL vocabulary
// (Type de BAL, Adresse BAL, the structure's identifier, the functional label) plus what the
// operator needs to create the BAL (the APP certificate DN, quota, retention).
var annuaireHeader = []string{"Type de BAL", "Adresse BAL", "Identifiant responsable", "Description", "DN certificat", "Quota (octets)", "Retention (jours)"}

func balExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bal export", "[--format annuaire|json]")
	dir := storeFlag(fs)
	format := fs.String("format", "annuaire", "annuaire (pipe-separated with a header) or json")
	if pos, err := parseInterleaved(fs, args); err != nil || len(pos) != 0 {
		return flagErr(err)
	}
	if *format != "annuaire" && *format != "json" {
		return exitCode(2, fmt.Errorf("--format: %q", *format))
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	bals, err := st.ListBALs(ctx)
	if err != nil {
		return err
	}
	if *format == "json" {
		out := make([]balJSON, 0, len(bals))
		for _, b := range bals {
			j := toJSON(b)
			j.UsedBytes, j.Messages = 0, 0
			out = append(out, j)
		}
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintln(e.stdout, strings.Join(annuaireHeader, "|"))
	clean := func(s string) string { return strings.NewReplacer("|", " ", "\r", " ", "\n", " ").Replace(s) }
	for _, b := range bals {
		j := toJSON(b)
		fmt.Fprintf(e.stdout, "%s|%s|%s|%s|%s|%d|%d\n", j.Type, j.Address, clean(j.Owner), clean(j.Description), clean(j.CertDN), j.QuotaBytes, j.RetentionDays)
	}
	return nil
}

func balPurge(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bal purge", "[--now TIME]")
	dir := storeFlag(fs)
	nowFlag := fs.String("now", "", "purge as of this time, RFC 3339 (default: now)")
	if pos, err := parseInterleaved(fs, args); err != nil || len(pos) != 0 {
		return flagErr(err)
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return exitCode(2, fmt.Errorf("--now: %w", err))
		}
		now = t
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := st.Purge(ctx, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "purged %d messages (%d bytes)\n", res.Messages, res.Bytes)
	return nil
}
