package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/bal/hl7bridge"
	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/hl7v2"
	"github.com/mssante-go/sdk/transport/node"
)

const hl7Usage = `usage: mssante hl7 serve --config FILE

Runs the HL7v2 bridge of one BAL applicative, as the [hl7] section of FILE (serve.toml, or a
file with that section alone) describes it: the DPI sends MDM^T02, MDM^T10 (a replacement)
and ORU^R01 over MLLP to hl7.listen; each becomes an MSSanté mail from hl7.bal and is
answered ACK (AA once queued, AE naming the cause when refused; a deletion, MDM^T04, is
refused); the receipts go back to hl7.dpi as ZAM^Z02 and ZAM^Z03; the documents the BAL
receives are handed to hl7.dpi as MDM^T02 (MDM^T10 for a new version), and its ACK becomes
the MDN. With hl7.sandbox, the BAL is one of "mssante dev".`

func runHL7(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(e.stderr, hl7Usage)
		return exitCode(2, nil)
	}
	fs := newFlagSet(e, "hl7 serve", hl7Usage)
	config := fs.String("config", "", "configuration file with an [hl7] section")
	verbose := fs.Bool("verbose", false, "log the bridge's operations on stderr")
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	if *config == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	var file struct {
		HL7 node.HL7Config `toml:"hl7"`
	}
	if _, err := toml.DecodeFile(*config, &file); err != nil {
		return fmt.Errorf("%s: %w", *config, err)
	}
	h := file.HL7
	if h.Listen == "" {
		return exitCode(2, fmt.Errorf("%s: no [hl7] section with a listen address", *config))
	}
	if err := h.Check(); err != nil {
		return exitCode(2, err)
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	return serveHL7(ctx, e, &h, log, h.DPI != "", nil)
}

// serveHL7 runs the bridge until ctx ends; with deliver, the documents the BAL receives are
// handed to h.DPI (else left to the BAL's other watchers); ready, when set, is called once
// the MLLP listener is open.
func serveHL7(ctx context.Context, e *env, h *node.HL7Config, log *slog.Logger, deliver bool, ready func()) error {
	cf := &connFlags{from: h.BAL, dev: h.Sandbox, submission: h.Submission, imap: h.IMAP,
		cert: h.CertFile, key: h.KeyFile, trust: strings.Join(h.TrustFiles, ","),
		crl: strings.Join(h.CRLFiles, ","), whitelistFile: h.WhitelistFile,
		state: filepath.Join(h.StateDir, "bal"), pollInterval: 2 * time.Second}
	if err := os.MkdirAll(h.StateDir, 0o700); err != nil {
		return err
	}
	client, err := cf.client(e)
	if err != nil {
		return err
	}
	defer client.Close()
	from, err := mssante.ParseAddress(h.BAL)
	if err != nil {
		return exitCode(2, err)
	}
	var dpi *mllp.Client
	if h.DPI != "" {
		dpi = mllp.Dial(h.DPI, nil)
		defer dpi.Close()
	}
	br, err := hl7bridge.New(&hl7bridge.Options{Client: client, From: from, DPI: dpi, Logger: log,
		StateDir: filepath.Join(h.StateDir, "bridge"), Limits: &hl7v2.ReadOptions{MaxBytes: h.MaxMessageBytes}})
	if err != nil {
		return err
	}
	srv, err := mllp.NewServer(&mllp.Options{Handler: br.Handle, Oversize: br.Oversize, MaxMessageBytes: h.MaxMessageBytes, Logger: log})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); br.Run(wctx) }()
	go func() {
		defer wg.Done()
		handler := bal.Handler(func(context.Context, *bal.Incoming) error { return bal.ErrLeave })
		if deliver && dpi != nil {
			handler = br.Deliver
		}
		for wctx.Err() == nil {
			err := client.Watch(wctx, handler, &bal.WatchOptions{OnReceipt: br.OnReceipt})
			if wctx.Err() == nil {
				log.Warn("hl7: watching the BAL stopped, restarting", "err", err)
				select {
				case <-wctx.Done():
				case <-time.After(5 * time.Second):
				}
			}
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(e.stdout, "mssante hl7: MLLP on %s for %s", l.Addr(), h.BAL)
	if h.DPI != "" {
		fmt.Fprintf(e.stdout, ", DPI at %s", h.DPI)
	}
	fmt.Fprintln(e.stdout)
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	stop()
	wg.Wait()
	if err != nil && !errors.Is(err, mllp.ErrServerClosed) {
		return err
	}
	return nil
}
