package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
)

// runCertCRL is "mssante cert crl refresh --config FILE".
func runCertCRL(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "refresh" {
		fs := newFlagSet(e, "cert crl", "refresh --config FILE")
		fs.Usage()
		return exitCode(2, nil)
	}
	fs := newFlagSet(e, "cert crl refresh", "--config FILE")
	configPath := fs.String("config", "", "the TOML configuration `file` (required)")
	timeout := fs.Duration("timeout", time.Minute, "how long the refresh may take")
	if err := fs.Parse(args[1:]); err != nil {
		return exitCode(2, nil)
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	cfg, err := node.LoadConfigFile(*configPath)
	if err != nil {
		return fmt.Errorf("%s: %w", *configPath, err)
	}
	var le *statelock.LockedError
	if errors.As(statelock.Held(cfg.SpoolDir, serveLockName), &le) && le.PID > 0 {
		// The running node refreshes its CRLs on each reload.
		return runReload(ctx, e, []string{"--config", *configPath, "--timeout", timeout.String()})
	}
	trust, err := cfg.NewTrustStore()
	if err != nil {
		return err
	}
	for _, f := range cfg.TLS.CRLFiles {
		if err := trust.AddCRLFile(f); err != nil && !errors.Is(err, transport.ErrOlderCRL) {
			fmt.Fprintf(e.stderr, "mssante cert crl refresh: %v\n", err)
		}
	}
	f, err := node.NewCRLFetcher(cfg, trust, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if f == nil {
		return errors.New("tls.crl_refresh_interval is 0: CRL fetching is off in this configuration")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ferr := f.Refresh(ctx)
	for _, h := range f.Held() {
		fmt.Fprintf(e.stdout, "%s  number %s  this update %s  next update %s  %d revoked\n", h.CA, h.Number,
			h.ThisUpdate.UTC().Format(time.RFC3339), h.NextUpdate.UTC().Format(time.RFC3339), h.Revoked)
	}
	if ferr != nil {
		return exitCode(1, ferr)
	}
	return nil
}
