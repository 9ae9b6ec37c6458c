package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/node"
)

// runServe runs an operator node (transport/node): the reference connector (relay and
// submission listeners, durable queue, delivery, audit log and metrics) and, with [mailbox]
// dir set, the mailbox store, IMAP listeners, test responder and retention purge, and with
// [api] enabled the HTTP API of the BALs and its webhooks, as configured in a TOML file (see
// --print-config). SIGHUP (or "mssante reload") reloads the
// configuration file, the certificate, the CRLs and the whitelist (superviseServe); SIGINT and
// SIGTERM stop it gracefully.
func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "--config FILE")
	configPath := fs.String("config", "", "TOML configuration `file` (required)")
	printConfig := fs.Bool("print-config", false, "print the documented default configuration (every table: relay, submission, mailbox, api and its webhooks, …) and exit")
	check := fs.Bool("check", false, "dry run of start-up, creating nothing: configuration, file modes, state folders, certificate, CAs and CRLs, whitelist, ports; one line per check, exit 1 on a problem")
	asJSON := fs.Bool("json", false, "with --check, one JSON object a line per check: {\"status\":\"ok\"|\"info\"|\"warn\"|\"fail\",\"check\":…,\"detail\":…}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *printConfig {
		fmt.Fprint(e.stdout, node.DefaultConfigTOML())
		return nil
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	cfg, err := node.LoadConfigFile(*configPath)
	if err != nil {
		return err
	}
	logger, err := serveLogger(e, cfg)
	if err != nil {
		return err
	}
	var dirs []string
	for _, s := range stateFolders(cfg) {
		dirs = append(dirs, s[1])
	}
	again := "serve --config " + *configPath
	if *check {
		again += " --check"
	}
	if err := checkStateOwner(again, dirs...); err != nil {
		return err
	}
	if *check {
		return runServeCheck(ctx, e, cfg, *configPath, *asJSON)
	}
	// One node per spool: a second one would recover and deliver the same queue files.
	unlock, err := statelock.Lock(cfg.SpoolDir, serveLockName)
	var le *statelock.LockedError
	if errors.As(err, &le) {
		return fmt.Errorf("the spool %s is in use (another \"mssante serve\"%s): stop it first, or give this configuration its own spool_dir",
			cfg.SpoolDir, holderPID(le.PID))
	}
	if err != nil {
		return err
	}
	defer unlock()
	n, err := node.New(ctx, cfg, &node.Options{Logger: logger})
	if err != nil {
		return err
	}
	stopAPI, err := serveAPI(ctx, n, cfg, logger)
	if err != nil {
		n.Close()
		return err
	}
	defer stopAPI()
	defer superviseServe(ctx, n, *configPath, cfg.SpoolDir, logger)()
	return n.Serve(ctx)
}

// serveAPI serves, with [api] enabled, the HTTP API of the node's BALs (httpapi.NodeAPI)
// beside the node until ctx ends or stop is called; stop waits for it.
func serveAPI(ctx context.Context, n *node.Node, cfg *node.Config, logger *slog.Logger) (stop func(), err error) {
	if !cfg.API.Enabled {
		return func() {}, nil
	}
	api, err := httpapi.NewNodeAPI(n, cfg, &httpapi.NodeAPIOptions{Logger: logger.With("component", "api")})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	logger.Info("node: listening", "listener", "api", "addr", l.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := api.Serve(ctx, l, cfg.Limits.ShutdownGrace); err != nil {
			logger.Error("node: listener stopped", "listener", "api", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// serveLockName is the lock file "mssante serve" holds in its spool folder while it runs.
const serveLockName = "serve.lock"

// holderPID says which process holds a lock, when its PID is known.
func holderPID(pid int) string {
	if pid > 0 {
		return fmt.Sprintf(", process %d", pid)
	}
	return ""
}

func serveLogger(e *env, cfg *node.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	o := &slog.HandlerOptions{Level: level}
	switch cfg.Log.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(e.stderr, o)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(e.stderr, o)), nil
	}
	return nil, fmt.Errorf("log.format must be text or json, not %q", cfg.Log.Format)
}
