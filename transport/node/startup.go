package node

import (
	"cmp"
	"context"
	"log/slog"
	"net/url"
	"runtime/debug"
	"slices"
	"time"
)

// sdkModule is the module path of this SDK, to name its version when another program embeds
// the node.
const sdkModule = "github.com/mssante-go/sdk"

// buildAttrs name the running build from the information the Go toolchain embeds: the main
// module's version and VCS revision, and the SDK's version when the main module is another
// program's (a vendor embedding the node). Reading it here rather than taking it in Options
// gives every program that runs a node the same start-up line without wiring.
func buildAttrs() []slog.Attr {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return []slog.Attr{slog.String("version", "unknown")}
	}
	attrs := []slog.Attr{slog.String("version", bi.Main.Version)}
	if bi.Main.Path != sdkModule {
		attrs = append(attrs, slog.String("module", bi.Main.Path))
		for _, d := range bi.Deps {
			if d.Path == sdkModule {
				attrs = append(attrs, slog.String("sdk_version", d.Version))
			}
		}
	}
	var rev string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		if modified {
			rev += "+modified"
		}
		attrs = append(attrs, slog.String("revision", rev))
	}
	return attrs
}

// logReady writes the one record that says the node is serving and how: build, hostname,
// domains, each listener and its address, the liste blanche held, the CRLs, the mailbox
// store. A node that cannot do its job yet (no liste blanche held, a CRL past its next
// update: NotReady) says so in the same record, as a warning, with the reasons.
func (c *mta) logReady(listeners map[string]string) {
	attrs := buildAttrs()
	attrs = append(attrs, slog.String("hostname", c.cfg.Hostname), slog.Any("domains", c.cfg.Domains))
	names := make([]string, 0, len(listeners))
	for name := range listeners {
		names = append(names, name)
	}
	slices.Sort(names)
	var ls []any
	for _, name := range names {
		ls = append(ls, slog.String(name, listeners[name]))
	}
	attrs = append(attrs, slog.Group("listeners", ls...))

	source := c.cfg.Whitelist.File
	if u, err := url.Parse(c.cfg.Whitelist.URL); source == "" && err == nil {
		source = u.Redacted() // a URL may carry a password
	}
	if l := c.currentList(); l != nil {
		entries, domains := l.Len()
		attrs = append(attrs, slog.Group("whitelist", slog.String("source", source),
			slog.Time("generated", l.Generated().UTC()), slog.Int("entries", entries), slog.Int("domains", domains)))
	} else {
		attrs = append(attrs, slog.Group("whitelist", slog.String("source", source), slog.String("state", "none held")))
	}

	crls := c.trust.CRLs()
	var next time.Time
	for _, crl := range crls {
		if !crl.NextUpdate.IsZero() && (next.IsZero() || crl.NextUpdate.Before(next)) {
			next = crl.NextUpdate
		}
	}
	crl := []any{slog.Int("held", len(crls)), slog.String("revocation", cmp.Or(c.cfg.TLS.Revocation, "required"))}
	if !next.IsZero() {
		crl = append(crl, slog.Time("next_update", next.UTC()))
	}
	attrs = append(attrs, slog.Group("crl", crl...), slog.Bool("mailbox_store", c.cfg.Mailbox.Dir != ""))

	level := slog.LevelInfo
	if problems := c.notReady(); len(problems) > 0 {
		level = slog.LevelWarn
		attrs = append(attrs, slog.Any("not_ready", problems))
	}
	c.logger.LogAttrs(context.Background(), level, "node: ready", attrs...)
}
