// Command imapserve runs the connector's IMAP server (transport/imapd over the SQLite mailbox
// store, or with -pg over the PostgreSQL one) with throw-away BALs, for benchmarks and for
// Dovecot's imaptest. Loopback use only: the plain listener allows LOGIN without TLS, like
// the throw-away Dovecot it is compared with.
//
//	go run ./bench/imap/imapserve -dir /tmp/x -addr 127.0.0.1:10144 -tls-addr 127.0.0.1:10994 -users a@b.fr:pw,c@b.fr:pw
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/imapd"
	"github.com/mssante-go/sdk/transport/mailbox"
)

func main() {
	dir := flag.String("dir", "", "store folder (created)")
	addr := flag.String("addr", "127.0.0.1:10144", "plain listener (LOGIN allowed without TLS: loopback only)")
	tlsAddr := flag.String("tls-addr", "", "implicit-TLS listener with a test certificate (optional)")
	users := flag.String("users", "testuser@bench.test:pass,testuser2@bench.test:pass", "BALs to create, address:password,…")
	verbose := flag.Bool("v", false, "log server errors to stderr")
	maxConns := flag.Int("max-conns", 0, "simultaneous connections, in total and from one address (0: the server's defaults)")
	flagSync := flag.String("flag-sync", "full", "durability of flag changes: full (fsynced) or normal")
	pg := flag.String("pg", "", "PostgreSQL DSN: serve the PostgreSQL store instead of the SQLite store in -dir")
	blobs := flag.String("blobs", "", "with -pg, where bodies are kept: postgres (the default) or dir:/path (mailbox.Options.Blobs)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the server, from start to SIGTERM, to this file")
	flag.Parse()
	if *dir == "" && *pg == "" {
		log.Fatal("imapserve: -dir or -pg is required")
	}
	if !strings.HasPrefix(*addr, "127.") && !strings.HasPrefix(*addr, "localhost") {
		log.Fatal("imapserve: loopback addresses only")
	}
	ctx := context.Background()
	sopts := &mailbox.Options{Blobs: *blobs}
	switch *flagSync {
	case "full":
	case "normal":
		sopts.FlagSync = mailbox.FlagSyncNormal
	default:
		log.Fatal("imapserve: -flag-sync is full or normal")
	}
	var store mailbox.Store
	var err error
	if *pg != "" {
		store, err = mailbox.OpenPostgres(ctx, *pg, sopts)
	} else {
		store, err = mailbox.OpenSQLite(ctx, *dir, sopts)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	for _, u := range strings.Split(*users, ",") {
		a, pw, _ := strings.Cut(u, ":")
		if _, err := store.GetBAL(ctx, a); err != nil {
			if err := store.AddBAL(ctx, &mailbox.BAL{Address: a, Type: mailbox.ORG}); err != nil {
				log.Fatal(err)
			}
		}
		if err := store.SetPassword(ctx, a, pw); err != nil {
			log.Fatal(err)
		}
	}
	opts := &imapd.Options{Store: store, InsecureAuth: true, MaxConns: *maxConns, MaxConnsPerAddr: *maxConns}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if *tlsAddr != "" {
		pki, err := testpki.New(nil)
		if err != nil {
			log.Fatal(err)
		}
		leaf, err := pki.Server("localhost", nil)
		if err != nil {
			log.Fatal(err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, MinVersion: tls.VersionTLS12}
	}
	srv, err := imapd.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	if *tlsAddr != "" {
		lt, err := net.Listen("tcp", *tlsAddr)
		if err != nil {
			log.Fatal(err)
		}
		go srv.ServeTLS(lt)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	srv.Close()
}
