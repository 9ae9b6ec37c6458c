package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mssante-go/sdk/internal/sdnotify"
	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/transport/node"
)

// reloadResultName is the file in the spool where "mssante serve" writes the outcome of each
// reload, for "mssante reload" to read: a signal carries no answer, and ExecReload= needs one
// to report a failed reload (systemd.service(5)).
const reloadResultName = "reload.result"

// reloadResult is the content of reloadResultName.
type reloadResult struct {
	PID     int    `json:"pid"`
	Started int64  `json:"started_unix_nano"` // when the reload began, after the signal came
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// superviseServe runs beside Node.Serve the dialogue with the service manager and the
// operator: READY=1 once the listeners are up, a reload of configPath on each SIGHUP (with
// RELOADING=1 then READY=1 and the outcome in STATUS= and in the spool's reload.result), and
// STOPPING=1 when ctx ends (sd_notify(3)). SIGHUP is caught from the call until the returned
// function is called, after Serve returned, so that a reload asked during start-up or
// shutdown does not kill the process (the default action of SIGHUP).
func superviseServe(ctx context.Context, n *node.Node, configPath, spool string, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	notify := func(states ...string) {
		if err := sdnotify.Notify(states...); err != nil {
			logger.Warn("serve: cannot notify the service manager", "err", err)
		}
	}
	go func() {
		select {
		case <-n.Listening():
			notify(sdnotify.Ready, sdnotify.Status(readyStatus(n)))
		case <-ctx.Done():
		}
		for {
			select {
			case <-ctx.Done():
				notify(sdnotify.Stopping, sdnotify.Status("stopping: letting sessions end"))
				return
			case <-hup:
				started := time.Now()
				notify(sdnotify.Reloading, sdnotify.MonotonicUsec())
				msg, err := reloadServe(n, configPath)
				if err != nil {
					logger.Error("serve: reload failed, previous configuration kept", "err", err)
					msg = "reload failed, previous configuration kept: " + err.Error()
				}
				writeReloadResult(spool, &reloadResult{PID: os.Getpid(), Started: started.UnixNano(), OK: err == nil, Message: msg}, logger)
				notify(sdnotify.Ready, sdnotify.Status(msg))
			}
		}
	}()
	return func() { signal.Stop(hup) }
}

// readyStatus is the STATUS= line once the listeners are up.
func readyStatus(n *node.Node) string {
	if nr := n.NotReady(); len(nr) > 0 {
		return "listening; not ready: " + strings.Join(nr, "; ")
	}
	return "ready"
}

// reloadServe reads the configuration file again and hands it to the node.
func reloadServe(n *node.Node, configPath string) (string, error) {
	cfg, err := node.LoadConfigFile(configPath)
	if err != nil {
		return "", fmt.Errorf("%s: %w", configPath, err)
	}
	res, err := n.ReloadConfig(cfg)
	if err != nil {
		return "", err
	}
	return res.String(), nil
}

// writeReloadResult replaces the spool's reload.result in one rename, so that a reader never
// sees half of it.
func writeReloadResult(spool string, r *reloadResult, logger *slog.Logger) {
	b, _ := json.Marshal(r)
	tmp := filepath.Join(spool, reloadResultName+".tmp")
	err := os.WriteFile(tmp, append(b, '\n'), 0o600)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(spool, reloadResultName))
	}
	if err != nil {
		logger.Warn("serve: cannot write the reload result for \"mssante reload\"", "err", err)
	}
}

// runReload asks the "mssante serve" that holds the spool of a configuration to reload, and
// waits for the outcome: the ExecReload= of the systemd unit.
func runReload(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "reload", "--config FILE")
	configPath := fs.String("config", "", "the TOML configuration `file` of the running serve (required)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the outcome")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2, nil)
	}
	// A file that does not load is refused here, before the running node is disturbed; the
	// node would refuse it too and keep its configuration.
	cfg, err := node.LoadConfigFile(*configPath)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing reloaded", *configPath, err)
	}
	var le *statelock.LockedError
	if err := statelock.Held(cfg.SpoolDir, serveLockName); err != nil && !errors.As(err, &le) {
		return err
	}
	if le == nil || le.PID <= 0 {
		return fmt.Errorf("no \"mssante serve\" is running on the spool %s", cfg.SpoolDir)
	}
	pid := le.PID
	asked := time.Now()
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(syscall.SIGHUP)
	}
	if err != nil {
		return fmt.Errorf("signal process %d: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var r reloadResult
		if b, err := os.ReadFile(filepath.Join(cfg.SpoolDir, reloadResultName)); err == nil &&
			json.Unmarshal(b, &r) == nil && r.PID == pid && r.Started >= asked.UnixNano() {
			if !r.OK {
				return errors.New(r.Message)
			}
			fmt.Fprintf(e.stdout, "process %d %s\n", pid, r.Message)
			return nil
		}
		if statelock.Held(cfg.SpoolDir, serveLockName) == nil {
			return fmt.Errorf("process %d stopped before it reloaded", pid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("process %d did not report a reload within %s (see its log)", pid, *timeout)
		case <-tick.C:
		}
	}
}
