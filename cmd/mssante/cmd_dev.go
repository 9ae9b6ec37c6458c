package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/mssante-go/sdk/internal/sandbox"
)

const devUsage = `[--sandbox DIR] [--verbose] [--webhook URL]
       mssante dev revoke [--sandbox DIR] ADDRESS|CERTFILE

Runs a whole local MSSanté trust space on loopback, on embedded defaults, until Ctrl-C:
  - a test PKI shaped like IGC-Santé (created in the state folder on the first run, reloaded
    afterwards), with the server certificate of each operator and the certificate of each
    BAL applicative, the CA chain and a CRL;
  - a liste blanche signed by that PKI and served over HTTPS;
  - two operators, hopital.dev.mssante.fr and cabinet.dev.mssante.fr, each a reference
    connector (SMTP relay and submission, durable queue, delivery over mutual TLS) with its
    mailbox store and IMAP access, and PER, ORG and APP BALs;
  - the test responder reponse.automatique@test.dev.mssante.fr (hosted by the cabinet);
  - the HTTP API of the BAL applicatives (HTTPS, mutual TLS) and the HL7v2 bridge of the
    hospital's;
  - a sample Annuaire Santé extraction file.
It prints the endpoints, the certificate files and passwords of each BAL, and commands to try.
A restart keeps the state (PKI, certificates, passwords, mailboxes, queues) and, when they are
free, the ports. The state folder (the sandbox folder) defaults to $XDG_STATE_HOME/mssante/dev
when XDG_STATE_HOME is set, else ./mssante-dev: the default of --sandbox in selftest, send,
receive and doctor too, so that they run bare in the same folder. One "mssante dev" at a time
uses a folder: a second one is refused (--state is the old name of --sandbox). "mssante dev
revoke" revokes a certificate of the running trust space (see "mssante dev revoke --help"). Everything it
makes is for tests only: never trust the test PKI in production.`

// devProgram is how the printed commands invoke this binary: "mssante" when it is on the PATH,
// else through go run from the module root.
func devProgram() string {
	if _, err := exec.LookPath("mssante"); err == nil {
		return "mssante"
	}
	return "go run ./cmd/mssante"
}

func runDev(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "revoke" {
		return runDevRevoke(ctx, e, args[1:])
	}
	fs := newFlagSet(e, "dev", devUsage)
	state := new(string)
	sandboxFlags(fs, state, "state")
	verbose := fs.Bool("verbose", false, "log the connectors' operations on stderr")
	hook := fs.String("webhook", "", "POST the HTTP API's events to this URL (http allowed), signed with the printed secret")
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
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	if *state == "" {
		*state = defaultDevState()
	}
	unlock, err := lockDevState(*state)
	if err != nil {
		return err
	}
	defer unlock()
	fmt.Fprintf(e.stdout, "mssante dev: starting a local MSSanté trust space in %s ...\n", *state)
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: *state, ReusePorts: true, Logger: logger})
	if err != nil {
		return err
	}
	defer sb.Close()
	stopHL7 := startDevHL7(ctx, e, sb.Info, logger)
	defer stopHL7()
	stopAPI := startDevAPI(ctx, e, sb.Info, *hook, logger)
	defer stopAPI()
	printDev(e.stdout, sb.Info, devProgram(), *hook)
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nmssante dev: stopping (the state folder is kept) ...")
	stopAPI()
	stopHL7()
	if err := sb.Close(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "mssante dev: stopped")
	return nil
}

// devTry returns the commands printed for the user to try, each one a command line of prog.
func devTry(info *sandbox.Info, prog string) []string {
	return []string{
		fmt.Sprintf("%s selftest%s", prog, sandboxArg(info.Dir)),
		fmt.Sprintf("%s send%s --from dpi@%s --to marie.durand@%s --cda %s --pdf %s --state %s --wait 30s",
			prog, sandboxArg(info.Dir), sandbox.Hopital, sandbox.Cabinet, info.SampleCDA, info.SamplePDF, filepath.Join(info.Dir, "hopital", "bal", "dpi-client")),
		fmt.Sprintf("%s annuaire search --source extraction:%s --name durand", prog, info.Annuaire),
	}
}

// sandboxArg is the --sandbox option of the printed commands: none for the default folder.
func sandboxArg(dir string) string {
	if filepath.Clean(dir) == filepath.Clean(defaultDevState()) {
		return ""
	}
	return " --" + sandboxFlag + " " + dir
}

func printDev(w io.Writer, info *sandbox.Info, prog, hookURL string) {
	fmt.Fprintf(w, "\nTest PKI     %s (trust it only in tests)\n", filepath.Join(info.Dir, "pki"))
	fmt.Fprintf(w, "CA chain     %s\nCRL          %s\n", info.CAFile, info.CRLFile)
	if info.CRLURL != "" {
		fmt.Fprintf(w, "CRL (HTTP)   %s (revoke with: mssante dev revoke%s ADDRESS|CERTFILE)\n", info.CRLURL, sandboxArg(info.Dir))
	}
	fmt.Fprintf(w, "Whitelist    %s\n             %s (signed by the test PKI)\n", info.WhitelistURL, info.WhitelistFile)
	fmt.Fprintf(w, "Annuaire     %s\n", info.Annuaire)
	fmt.Fprintf(w, "Sample       %s\n             %s (lettre de liaison, fictitious patient)\n", info.SampleCDA, info.SamplePDF)
	if info.Responder != "" {
		fmt.Fprintf(w, "Responder    %s (answers every message, RFC 3834)\n", info.Responder)
	}
	for _, op := range info.Operators {
		fmt.Fprintf(w, "\nOperator %s (%s): %s\n", op.Name, strings.Join(op.Domains, ", "), op.Hostname)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  relay (25)\t%s\tSTARTTLS, operator certificate listed for the sender's domain\n", op.Relay)
		fmt.Fprintf(tw, "  submission (587)\t%s\tSTARTTLS, SASL EXTERNAL (APP), XOAUTH2/OAUTHBEARER or PLAIN (PER, ORG)\n", op.Submission)
		fmt.Fprintf(tw, "  submission (465)\t%s\timplicit TLS\n", op.SubmissionTLS)
		fmt.Fprintf(tw, "  IMAP (143)\t%s\tSTARTTLS\n", op.IMAP)
		fmt.Fprintf(tw, "  IMAPS (993)\t%s\timplicit TLS\n", op.IMAPS)
		fmt.Fprintf(tw, "  metrics\thttp://%s/metrics\t\n", op.Metrics)
		fmt.Fprintf(tw, "  server cert\t%s\t%s\n", op.CertFile, op.CertDN)
		fmt.Fprintf(tw, "  config\t%s\tas \"mssante serve --config\" reads it\n", op.Config)
		tw.Flush()
		for _, b := range op.BALs {
			if b.CertFile != "" {
				fmt.Fprintf(w, "  BAL %s %s\n      certificate %s\n      key         %s\n", b.Type, b.Address, b.CertFile, b.KeyFile)
			} else {
				fmt.Fprintf(w, "  BAL %s %s\n      login %s  password %s\n", b.Type, b.Address, b.Address, b.Password)
			}
		}
	}
	printDevPSC(w, info)
	printDevAPI(w, info, hookURL)
	fmt.Fprintf(w, "\nTry, in another terminal (from the module root):\n")
	for _, c := range devTry(info, prog) {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "\nReady. Ctrl-C stops the trust space; a restart keeps its state.\n")
}
