package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// The example against the sample annuaire of "mssante dev" and its liste blanche.
func TestAgainstSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	info := sb.Info
	base := []string{"--extraction", info.Annuaire, "--whitelist", info.WhitelistFile, "--roots", info.CAFile}

	var out bytes.Buffer
	if err := run(ctx, append(base, "--name", "dupont jean"), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "jean.dupont@"+sandbox.Hopital) || !strings.Contains(out.String(), "DUPONT Jean") ||
		!strings.Contains(out.String(), "listed") || strings.Contains(out.String(), "NOT LISTED") {
		t.Fatal(out.String())
	}
	// ORG BALs by type; synthetic entries of other domains are found but not listed.
	out.Reset()
	if err := run(ctx, append(base, "--type", "ORG", "--name", "cabinet medical dev"), &out); err != nil ||
		!strings.Contains(out.String(), "accueil@"+sandbox.Cabinet) {
		t.Fatalf("%v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, append(base, "--name", "durand"), &out); err != nil || !strings.Contains(out.String(), "NOT LISTED") ||
		!strings.Contains(out.String(), "marie.durand@"+sandbox.Cabinet) {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if err := run(ctx, append(base, "--name", "zzzz"), &out); !errors.Is(err, errNotFound) {
		t.Fatal(err)
	}
}
