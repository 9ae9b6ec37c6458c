// Command build-your-own-relay is an MSSanté operator's mail path assembled from the packages
// of the SDK, without the TOML configuration of "mssante serve": the trust store and TLS of
// package transport, the liste blanche of package whitelist, the durable queue, the relay and
// submission servers and the outbound delivery of transport/connector, and the mailbox store
// of transport/mailbox for the BALs it hosts. Copy it when the reference connector does not fit
// (another store, another way to authenticate BALs, another scanner).
//
// It receives mail for --domain from the other operators (relay, port 25: STARTTLS, the
// client's IGC-Santé certificate listed for the sender's domain), takes mail from its BALs
// (submission, port 587: STARTTLS and AUTH PLAIN) and delivers it over mutual TLS to the
// recipient's operator, only when the domain and the server's DN are on the list.
//
// Against "mssante dev", with a server certificate of its test PKI and its domain added to the
// sandbox's list (see main_test.go):
//
//	go run ./examples/build-your-own-relay --domain relais.dev.mssante.fr --hostname mx.relais.dev.mssante.fr \
//	    --cert server.crt.pem --key server.key.pem --ca mssante-dev/ca-chain.pem --crl mssante-dev/crl.der \
//	    --whitelist mssante-dev/whitelist/listeblanchemssante.xml --dir relais \
//	    --relay 127.0.0.1:2525 --submission 127.0.0.1:2587 --bal secretariat@relais.dev.mssante.fr:motdepasse \
//	    --route hopital.dev.mssante.fr=127.0.0.1:RELAY_PORT_OF_THE_HOPITAL
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/mailbox/local"
	"github.com/mssante-go/sdk/transport/queue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-your-own-relay:", err)
		os.Exit(1)
	}
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("build-your-own-relay", flag.ContinueOnError)
	domain := fs.String("domain", "", "the mail domain this operator hosts (required)")
	hostname := fs.String("hostname", "", "our host name, as our certificate names it (required)")
	certFile := fs.String("cert", "", "our IGC-Santé SERV certificate chain (PEM, required)")
	keyFile := fs.String("key", "", "its key (PEM, required)")
	caFile := fs.String("ca", "", "trust these CAs (PEM) instead of the embedded IGC-Santé root (test PKIs)")
	crlFile := fs.String("crl", "", "CRL of the CA (DER or PEM); revocation is required")
	wlFile := fs.String("whitelist", "", "the signed liste blanche file (required)")
	dir := fs.String("dir", "", "state folder: queue and mailboxes (required)")
	relayAddr := fs.String("relay", ":25", "relay listen address")
	subAddr := fs.String("submission", ":587", "submission listen address")
	var bals, routes listFlag
	fs.Var(&bals, "bal", "a BAL hosted here, ADDRESS:PASSWORD (repeatable)")
	fs.Var(&routes, "route", "a static route DOMAIN=HOST:PORT instead of the MX (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *domain == "" || *hostname == "" || *certFile == "" || *keyFile == "" || *wlFile == "" || *dir == "" {
		return errors.New("--domain, --hostname, --cert, --key, --whitelist and --dir are required")
	}

	// 1. Trust: IGC-Santé (or the test CA), with CRLs; our certificate.
	trust, err := transport.LoadTrustStore(&transport.TrustOptions{NoIGCSanteRoot: *caFile != ""},
		[]string{*caFile}, []string{*crlFile})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	tlsOpts := &transport.TLSOptions{Trust: trust, Certificates: []tls.Certificate{cert}}

	// 2. The liste blanche, verified against the same CAs and CRLs; ListedOperator also lets the
	// relay accept DSNs (null sender) from a listed operator. A long-running operator uses a
	// whitelist.Store instead.
	list, err := trust.VerifyWhitelistFile(*wlFile, nil)
	if err != nil {
		return err
	}
	policy := connector.ListedOperator(list)

	// 3. The mailbox store and its BALs; local delivery into it.
	store, err := mailbox.OpenSQLite(ctx, filepath.Join(*dir, "mailbox"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	accounts := &connector.StaticAccounts{Passwords: map[string]connector.PasswordAccount{}}
	for _, b := range bals {
		addr, pw, ok := strings.Cut(b, ":")
		if !ok {
			return fmt.Errorf("--bal %q: want ADDRESS:PASSWORD", b)
		}
		if _, err := store.GetBAL(ctx, addr); errors.Is(err, mailbox.ErrNoBAL) {
			if err := store.AddBAL(ctx, &mailbox.BAL{Address: addr, Type: mailbox.ORG, Owner: *domain}); err != nil {
				return err
			}
		}
		accounts.Passwords[strings.ToLower(addr)] = connector.PasswordAccount{Password: pw, BAL: addr}
	}
	deliverLocal := local.New(store)

	// 4. The durable queue: a message is on disk, fsynced, before the 250.
	q, err := queue.Open(&queue.Options{Dir: filepath.Join(*dir, "spool"),
		Schedule: queue.Schedule{First: 5 * time.Second, Max: time.Minute}})
	if err != nil {
		return err
	}
	defer q.Close()

	// 5. The two SMTP servers.
	common := connector.ServerOptions{Hostname: *hostname, TLS: tlsOpts, Policy: policy,
		LocalDomains: []string{*domain}, Local: deliverLocal, Queue: q}
	relayOpts, subOpts := common, common
	relayOpts.Mode = connector.ModeRelay
	subOpts.Mode, subOpts.Accounts, subOpts.AllowPlain = connector.ModeSubmission, accounts, true
	relay, err := connector.NewServer(&relayOpts)
	if err != nil {
		return err
	}
	submission, err := connector.NewServer(&subOpts)
	if err != nil {
		return err
	}

	// 6. Outbound delivery: MX (or static route), mutual TLS, the server's DN listed.
	rt := map[string]string{}
	for _, r := range routes {
		d, hp, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("--route %q: want DOMAIN=HOST:PORT", r)
		}
		rt[d] = hp
	}
	delivery, err := connector.NewDelivery(&connector.DeliveryOptions{Hostname: *hostname, TLS: tlsOpts, Policy: policy,
		LocalDomains: []string{*domain}, Local: deliverLocal, Routes: rt, IdleTimeout: time.Second})
	if err != nil {
		return err
	}
	defer delivery.Close()

	lr, err := net.Listen("tcp", *relayAddr)
	if err != nil {
		return err
	}
	ls, err := net.Listen("tcp", *subAddr)
	if err != nil {
		lr.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); relay.Serve(lr) }()
	go func() { defer wg.Done(); submission.Serve(ls) }()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer wg.Done()
		q.Run(runCtx, delivery, &queue.RunOptions{Workers: 4, Notifier: &connector.DSNNotifier{Queue: q, Hostname: *hostname}})
	}()
	fmt.Fprintf(out, "relay on %s, submission on %s, for %s: ready\n", lr.Addr(), ls.Addr(), *domain)

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	relay.Shutdown(sctx)
	submission.Shutdown(sctx)
	cancel()
	wg.Wait()
	return nil
}
