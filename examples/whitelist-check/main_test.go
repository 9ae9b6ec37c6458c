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

// The example against the trust space of "mssante dev": the list is fetched over HTTPS,
// verified against the test PKI, and answers for listed and unlisted domains.
func TestAgainstSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	info := sb.Info
	base := []string{"--url", info.WhitelistURL, "--ca", info.CAFile, "--roots", info.CAFile}

	var out bytes.Buffer
	if err := run(ctx, append(base, sandbox.Hopital, sandbox.Cabinet), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), sandbox.Cabinet+": listed; operator certificate: "+info.Operator(sandbox.Cabinet).CertDN) {
		t.Fatal(out.String())
	}
	out.Reset()
	if err := run(ctx, append(base, sandbox.Hopital, "gmail.com"), &out); !errors.Is(err, errNotListed) ||
		!strings.Contains(out.String(), "gmail.com: NOT LISTED") {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Fail closed: the same list is refused when its signer is not trusted (the IGC-Santé root).
	out.Reset()
	if err := run(ctx, []string{"--url", info.WhitelistURL, "--ca", info.CAFile, sandbox.Hopital}, &out); err == nil {
		t.Fatalf("a list signed by the test PKI verified against IGC-Santé:\n%s", out.String())
	}
}
