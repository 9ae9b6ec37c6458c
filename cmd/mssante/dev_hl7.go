package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/node"
)

// startDevHL7 runs, beside the trust space of "mssante dev", the HL7v2 bridge of the hospital's
// BAL applicative on the MLLP ports sandbox.json gives, so that a vendor points a test DPI at
// it on day one. Received documents are left to the BAL's other watchers ("mssante receive",
// selftest): handing them to a DPI is for "mssante hl7 serve". It returns once the bridge
// listens (or failed: the error is printed and dev goes on without it), and a stop function.
func startDevHL7(ctx context.Context, e *env, info *sandbox.Info, log *slog.Logger) (stop func()) {
	if info.HL7 == nil {
		return func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &node.HL7Config{Listen: info.HL7.Listen, DPI: info.HL7.DPI, BAL: info.HL7.BAL,
		Sandbox: info.Dir, StateDir: filepath.Join(info.Dir, "hopital", "hl7")}
	hctx, cancel := context.WithCancel(ctx)
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if err := serveHL7(hctx, e, h, log, false, func() { close(ready) }); err != nil {
			fmt.Fprintf(e.stderr, "mssante dev: the HL7v2 bridge did not start: %v\n", err)
		}
	}()
	select {
	case <-ready:
	case <-done:
	}
	return func() { cancel(); <-done }
}
