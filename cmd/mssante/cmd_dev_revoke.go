package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
)

const devRevokeUsage = `[--sandbox DIR] ADDRESS|CERTFILE

Revokes a certificate of the trust space of "mssante dev": the certificate of the BAL
applicative ADDRESS, or the certificate in CERTFILE (an operator's server.crt.pem, for
example). The test PKI lists it in its CRL, served at the distribution point written in the
sandbox's certificates; the running connectors fetch that CRL every few seconds and refuse the
certificate from then on, without a restart.`

// runDevRevoke is "mssante dev revoke".
func runDevRevoke(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "dev revoke", devRevokeUsage)
	dir := new(string)
	sandboxFlags(fs, dir, "")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return exitCode(2, nil)
	}
	if fs.NArg() != 1 {
		return usageError(fs, "give one ADDRESS or CERTFILE to revoke")
	}
	if *dir == "" {
		*dir = defaultDevState()
	}
	if _, err := loadSandbox(*dir); err != nil {
		return err
	}
	c, err := sandbox.Revoke(*dir, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %s (serial %X); the running connectors refuse it within %s\n",
		transport.SubjectDN(c), c.SerialNumber, sandbox.CRLRefresh)
	return nil
}
