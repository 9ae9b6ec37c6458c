// Command mssante runs the MSSanté reference connector and the tools around it: a whole local
// trust space for trying things out (dev), certificate, whitelist, annuaire, CDA and XDM tools,
// and the send, receive, doctor and selftest commands of a BAL.
//
// Every subcommand is built from the public packages of github.com/mssante-go/sdk; run
// "mssante help" for the list and "mssante COMMAND --help" for each one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mssante-go/sdk/bal"
)

// env is what a subcommand may touch: its standard streams. Tests run subcommands in-process
// through run with buffers, exactly as the binary does with the real streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string
	// run executes the subcommand with its arguments (the command name excluded). An error
	// made with exitCode sets the process status; any other error exits 1 after printing it.
	run func(ctx context.Context, e *env, args []string) error
}

// commands lists every subcommand, in the order "mssante help" shows them.
var commands = []command{
	// one line per subcommand, each implemented in cmd_NAME.go
	{"dev", "run a whole local MSSanté trust space on loopback: test PKI, whitelist, two operators, BALs, responder, annuaire", runDev},
	{"doctor", "the integration checklist of a domain: MX, certificates, TLS, liste blanche; ok / warn / fail with the fix", runDoctor},
	{"selftest", "the acceptance checks of a BAL against mssante dev: responder round trip, non-MSSanté recipient refused", runSelftest},
	{"cert", "inspect certificates and check their expiry (PEM, DER, p7b, PKCS#12)", runCert},
	{"whitelist", "verify, look up, fetch and sign the ANS liste blanche", runWhitelist},
	{"cda", "build, validate and print CDA R2 documents (lettre de liaison LDL-SES, N1 PDF)", runCDA},
	{"xdm", "pack and inspect IHE_XDM.ZIP archives", runXDM},
	{"serve", "run the reference connector: relay, submission, durable queue, delivery, audit, HTTP API", runServe},
	{"reload", "make a running serve reload its configuration, certificate, CRLs and whitelist; report the outcome", runReload},
	{"queue", "list, show, hold, release, retry and delete the messages of a connector's queue (mailq, postsuper)", runQueue},
	{"annuaire", "find BALs in the Annuaire Santé (extraction file, LDAP, FHIR); fetch and export the extraction", runAnnuaire},
	{"store", "the PostgreSQL database of a cluster of nodes: migrate and check its schema, copy a SQLite store into it", runStore},
	{"bal", "manage the BALs of the mailbox store: add, list, show, remove, export, purge", runBAL},
	{"send", "send a lettre de liaison from a BAL (CDA or PDF + patient fields), with DSN/MDN receipts", runSend},
	{"hl7", "run the HL7v2 bridge of a BAL applicative: MDM/ORU over MLLP in, MSSanté mail out, ACK and ZAM back", runHL7},
	{"receive", "watch a BAL: print each new message, its documents and INS, and the receipts", runReceive},
	{"version", "print the version, VCS revision and build of this binary (also: mssante --version)", runVersion},
}

// exitError carries a process exit status other than 1 (or 1 without a message).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode returns an error that makes the process exit with code, printing err when it is not nil.
func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the process exit status.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, e)
		}
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintf(e.stderr, "mssante %s: %s\n", c.name, errorLine(c.name, ee.err))
			}
			return ee.code
		}
		fmt.Fprintf(e.stderr, "mssante %s: %s\n", c.name, errorLine(c.name, err))
		return 1
	}
	fmt.Fprintf(e.stderr, "mssante: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

// errorLine is err as one line after "mssante NAME: ". The packages' messages start with the
// package name and wrap each other's, so the same "pkg: " comes back at each level: a package
// name is kept at its first place only, and dropped when it is the command's own name, already
// printed. Joined errors are put on one line.
func errorLine(name string, err error) string {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	var me *bal.TLSModeError
	if errors.As(err, &me) {
		// bal names its own settings; the user of the binary sets the mode with flags.
		msg = tlsModeLine(me)
	}
	seen := map[string]bool{name: true, "mssante": true} // the line starts with "mssante NAME: "
	var b strings.Builder
	for rest := msg; rest != ""; {
		part, tail, found := strings.Cut(rest, ": ")
		if !found {
			b.WriteString(rest)
			break
		}
		rest = tail
		if errorPackages[part] {
			if seen[part] {
				continue
			}
			seen[part] = true
		}
		b.WriteString(part + ": ")
	}
	return b.String()
}

// errorPackages are the prefixes the module's packages put on their errors.
var errorPackages = map[string]bool{"mssante": true, "cda": true, "xdm": true, "whitelist": true, "annuaire": true,
	"transport": true, "bal": true, "sandbox": true, "connector": true, "node": true, "queue": true, "mailbox": true,
	"imapd": true, "responder": true, "testpki": true, "hl7v2": true, "mllp": true, "hl7bridge": true}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: mssante COMMAND [options]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"mssante COMMAND --help\" for the options of a command.\n")
}

// newFlagSet returns a flag set for a subcommand that writes its usage to e.stderr and returns
// errors instead of exiting.
func newFlagSet(e *env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet("mssante "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: mssante %s %s\n", name, usageLine)
		// A command with subcommands has no options of its own: no empty heading.
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(e.stderr, "\nOptions:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// tlsModeLine says what a *bal.TLSModeError says, with the flags of "mssante send" and
// "mssante receive" instead of bal's settings.
func tlsModeLine(e *bal.TLSModeError) string {
	flag, port := "--submission-tls", map[bool]string{true: "587", false: "465"}
	if e.Service == "IMAP" {
		flag, port = "--imap-tls", map[bool]string{true: "143", false: "993"}
	}
	if e.Want == bal.ImplicitTLS {
		return fmt.Sprintf("%v: the %s server %s expects implicit TLS (it answered with TLS, not a greeting): add %s, or use its STARTTLS port (usually %s)",
			bal.ErrTLS, e.Service, e.Addr, flag, port[true])
	}
	return fmt.Sprintf("%v: the %s server %s speaks plain text first (it answered %q…): remove %s to use STARTTLS, or use its implicit-TLS port (usually %s)",
		bal.ErrTLS, e.Service, e.Addr, e.Answered, flag, port[false])
}
