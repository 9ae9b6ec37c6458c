package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// versionInfo is what "mssante version" prints: where the binary comes from, read from the
// build information the Go toolchain embeds (module version, VCS revision and time).
type versionInfo struct {
	Version  string `json:"version"`            // module version, "(devel)" when built from a checkout
	Revision string `json:"revision,omitempty"` // VCS revision the binary was built from
	Time     string `json:"time,omitempty"`     // commit time of that revision (RFC 3339)
	Modified bool   `json:"modified,omitempty"` // the work tree had uncommitted changes
	Go       string `json:"go"`                 // Go toolchain version
	CGO      bool   `json:"cgo"`                // built with cgo (false: a static binary)
}

func readVersion() versionInfo {
	v := versionInfo{Version: "unknown", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "CGO_ENABLED":
			v.CGO = s.Value == "1"
		}
	}
	return v
}

func (v versionInfo) String() string {
	s := "mssante " + v.Version
	if v.Revision != "" {
		s += " " + v.Revision
		if v.Modified {
			s += "+modified"
		}
	}
	if v.Time != "" {
		s += " " + v.Time
	}
	s += " " + v.Go
	if v.CGO {
		s += " cgo"
	} else {
		s += " static"
	}
	return s
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "[--json]")
	asJSON := fs.Bool("json", false, "print one JSON object: version, revision, time, modified, go, cgo")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() > 0 {
		return exitCode(2, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	v := readVersion()
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(v)
	}
	_, err := fmt.Fprintln(e.stdout, v)
	return err
}
