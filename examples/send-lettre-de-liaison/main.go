// Command send-lettre-de-liaison is what a DPI does at a patient's discharge: it builds the
// lettre de liaison (a CDA R2 document, here an N1 wrapping the PDF the DPI already prints),
// packs it in IHE_XDM.ZIP, and sends it from the hospital's applicative BAL (BAL applicative)
// to the patient's doctor, asking for delivery (DSN) and integration (MDN) receipts; then it
// waits for them.
//
// The BAL authenticates with its IGC-Santé certificate (mutual TLS, SASL EXTERNAL); every
// recipient is checked against the signed liste blanche before anything is sent; a second run
// with the same --state after a network error does not send the letter twice.
//
// Against "mssante dev" (files of its state folder mssante-dev):
//
//	go run ./examples/send-lettre-de-liaison --from dpi@hopital.dev.mssante.fr \
//	    --to logiciel@cabinet.dev.mssante.fr --pdf lettre.pdf \
//	    --cert mssante-dev/hopital/bal/dpi.crt.pem --key mssante-dev/hopital/bal/dpi.key.pem \
//	    --ca mssante-dev/ca-chain.pem --crl mssante-dev/crl.der \
//	    --whitelist mssante-dev/whitelist/listeblanchemssante.xml --whitelist-signer "SIGNER DN" \
//	    --submission 127.0.0.1:SUBMISSION_PORT --imap 127.0.0.1:IMAPS_PORT
//
// ("mssante dev" prints the real paths and ports.) The patient and author below are
// fictitious: a DPI fills cda.Input from its own records.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "send-lettre-de-liaison:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("send-lettre-de-liaison", flag.ContinueOnError)
	from := fs.String("from", "", "address of the hospital's BAL applicative")
	to := fs.String("to", "", "address of the recipient")
	pdfFile := fs.String("pdf", "", "the lettre de liaison as PDF")
	certFile := fs.String("cert", "", "the BAL's certificate (PEM, with its chain)")
	keyFile := fs.String("key", "", "the BAL's private key (PEM)")
	caFile := fs.String("ca", "", "IGC-Santé roots and intermediates (PEM); the test PKI for mssante dev")
	crlFile := fs.String("crl", "", "CRL of the operator's CA")
	wlFile := fs.String("whitelist", "", "the signed liste blanche")
	wlSigner := fs.String("whitelist-signer", "", "subject DN of the list's signer (default: the ANS signer)")
	submission := fs.String("submission", "", "submission server host:port (STARTTLS)")
	imapAddr := fs.String("imap", "", "IMAPS server host:port, to wait for the receipts")
	state := fs.String("state", "bal-state", "state folder: outbox and receive checkpoint")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the receipts")
	if err := fs.Parse(args); err != nil {
		return err
	}

	// The trust store: IGC-Santé (here the file given), with the CRL (revocation is checked).
	// The liste blanche is verified against the same CAs and CRL.
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
		Address:    *from,
		Submission: bal.Endpoint{Addr: *submission},
		IMAP:       bal.Endpoint{Addr: *imapAddr, Security: bal.ImplicitTLS},
		TLS:        transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust},
		Whitelist:  list,
		StateDir:   *state,
		NIL:        "DEV000000", // the product reference given at declaration on convergence.esante.gouv.fr
	})
	if err != nil {
		return err
	}
	defer client.Close()

	// The document: a DPI fills cda.Input from its records; cda.Sample gives a fictitious
	// patient (test INS), author and hospital.
	pdf, err := os.ReadFile(*pdfFile)
	if err != nil {
		return err
	}
	in := cda.Sample(cda.KindN1)
	in.PDF = pdf
	sender, err := mssante.NewAddress("DPI", *from)
	if err != nil {
		return err
	}
	rcpt, err := mssante.NewAddress("", *to)
	if err != nil {
		return err
	}
	msg, err := bal.NewDocumentMessage(sender, []mssante.Address{rcpt}, in, &bal.DocumentOptions{WantMDN: true})
	if err != nil {
		return err
	}

	res, err := client.Send(ctx, msg, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "sent <%s>\n", res.MessageID)

	// Wait for one final receipt per recipient: the DSN says it reached the BAL, the MDN that
	// the recipient's software integrated it (or why not).
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	final := errors.New("no final receipt in time")
	err = client.Watch(ctx, nil, &bal.WatchOptions{ReceiptsOnly: true, OnReceipt: func(_ context.Context, r bal.Receipt) {
		if r.MessageID != res.MessageID {
			return
		}
		fmt.Fprintf(out, "%s: %s", r.Recipient, r.Status)
		switch {
		case r.MDNCode != 0:
			fmt.Fprintf(out, " (%d %s)", int(r.MDNCode), r.Detail)
		case r.SMTPCode != 0:
			fmt.Fprintf(out, " (%d %s)", r.SMTPCode, r.Detail)
		}
		fmt.Fprintln(out)
		if r.Final {
			if r.Status == bal.StatusProcessed {
				final = nil
			} else {
				final = fmt.Errorf("%s: %s", r.Recipient, r.Status)
			}
			cancel()
		}
	}})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return final
}
