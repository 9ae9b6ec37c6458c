// Command receive-and-integrate is the receiving side of a DPI or a practice's software: it
// watches its applicative BAL (IMAP IDLE over mutual TLS, SASL EXTERNAL), and for each new
// message takes the patient's INS from the XDM metadata (Réf. #2 ECO.2.1.2), finds the patient
// in its own records, and files the CDA documents and their PDF copies in --inbox. A message
// about an unknown patient is refused with code 902, one without INS with 903: the sender
// gets an MDN "processed/Error" when it asked for one, else the error mail. Each message is
// handled once, even across restarts (the state folder keeps the checkpoint and journal).
//
// Against "mssante dev":
//
//	go run ./examples/receive-and-integrate --bal logiciel@cabinet.dev.mssante.fr \
//	    --cert mssante-dev/cabinet/bal/logiciel.crt.pem --key mssante-dev/cabinet/bal/logiciel.key.pem \
//	    --ca mssante-dev/ca-chain.pem --crl mssante-dev/crl.der \
//	    --whitelist mssante-dev/whitelist/listeblanchemssante.xml --whitelist-signer "SIGNER DN" \
//	    --submission 127.0.0.1:SUBMISSION_PORT --imap 127.0.0.1:IMAPS_PORT \
//	    --patients patients.csv --inbox inbox
//
// patients.csv holds one "INS,local patient id" per line (the DPI's identity server).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "receive-and-integrate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("receive-and-integrate", flag.ContinueOnError)
	addr := fs.String("bal", "", "address of the BAL applicative")
	certFile := fs.String("cert", "", "the BAL's certificate (PEM, with its chain)")
	keyFile := fs.String("key", "", "the BAL's private key (PEM)")
	caFile := fs.String("ca", "", "IGC-Santé roots and intermediates (PEM); the test PKI for mssante dev")
	crlFile := fs.String("crl", "", "CRL of the operator's CA")
	wlFile := fs.String("whitelist", "", "the signed liste blanche (MDNs go only to listed domains)")
	wlSigner := fs.String("whitelist-signer", "", "subject DN of the list's signer (default: the ANS signer)")
	submission := fs.String("submission", "", "submission server host:port (STARTTLS), for the MDNs")
	imapAddr := fs.String("imap", "", "IMAPS server host:port")
	patientsFile := fs.String("patients", "", "CSV of the known patients: INS,local id")
	inbox := fs.String("inbox", "inbox", "where the documents are filed, one folder per local patient id")
	state := fs.String("state", "bal-state", "state folder: receive checkpoint, journal, outbox")
	dur := fs.Duration("for", 0, "stop after this long (default: until Ctrl-C)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	patients, err := readPatients(*patientsFile)
	if err != nil {
		return err
	}
	trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: *caFile != ""},
		[]string{*caFile}, []string{*crlFile})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	list, err := trust.VerifyWhitelistFile(*wlFile, &whitelist.VerifyOptions{Signer: *wlSigner})
	if err != nil {
		return err
	}
	client, err := bal.New(&bal.Options{
		Address:      *addr,
		Submission:   bal.Endpoint{Addr: *submission},
		IMAP:         bal.Endpoint{Addr: *imapAddr, Security: bal.ImplicitTLS},
		TLS:          transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust},
		Whitelist:    list,
		StateDir:     *state,
		PollInterval: 30 * time.Second,
		ReportingUA:  "receive-and-integrate; mssante-go example",
		NIL:          "DEV000000", // the product reference given at declaration, carried by the MDNs sent
	})
	if err != nil {
		return err
	}
	defer client.Close()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}

	integrate := func(ctx context.Context, m *bal.Incoming) error {
		if m.INS.IsZero() {
			fmt.Fprintf(out, "<%s>: no INS, refused (903)\n", m.MessageID)
			return bal.Reject(mssante.CodeNoINS)
		}
		local, ok := patients[m.INS.Value]
		if !ok {
			fmt.Fprintf(out, "<%s>: unknown patient, refused (902)\n", m.MessageID)
			return bal.Reject(mssante.CodeUnknownPatient)
		}
		dir := filepath.Join(*inbox, local)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err // not a decision: handed again later
		}
		n := 0
		for _, d := range m.Documents() {
			name := fmt.Sprintf("%s-%d.xml", fileSafe(m.MessageID), n)
			if err := os.WriteFile(filepath.Join(dir, name), d.Data, 0o600); err != nil {
				return err
			}
			n++
		}
		for _, d := range m.Message.Documents {
			name := fmt.Sprintf("%s-%d.pdf", fileSafe(m.MessageID), n)
			if err := os.WriteFile(filepath.Join(dir, name), d.PDF, 0o600); err != nil {
				return err
			}
			n++
		}
		fmt.Fprintf(out, "<%s>: %d file(s) filed for patient %s\n", m.MessageID, n, local)
		return nil
	}
	err = client.Watch(ctx, integrate, nil)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// readPatients reads "INS,local id" lines.
func readPatients(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ins, local, ok := strings.Cut(strings.TrimSpace(sc.Text()), ",")
		if ok && ins != "" && fileSafe(local) == local && local != "" {
			m[strings.TrimSpace(ins)] = strings.TrimSpace(local)
		}
	}
	return m, sc.Err()
}

// fileSafe keeps letters, digits, '-', '.', '_' and '@'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '@':
			return r
		case r == '.':
			return '.'
		}
		return '_'
	}, strings.ReplaceAll(s, "..", "__"))
}
